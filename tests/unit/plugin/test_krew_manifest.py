"""The krew manifest has what krew requires, and names the archive the script last built."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
MANIFEST = REPO / "plugins" / "krew" / "modelops.yaml"


def test_manifest_shape() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "modelops"
    spec = manifest["spec"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert spec["version"] == f"v{project['version']}"
    assert spec["homepage"].startswith("https://") and spec["shortDescription"]
    assert len(spec["shortDescription"]) <= 255
    (platform,) = spec["platforms"]
    assert platform["selector"]["matchLabels"] == {"os": "linux", "arch": "amd64"}
    assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
    assert platform["uri"].endswith(f"/kubectl-modelops_{spec['version']}_linux_amd64.tar.gz")
    assert platform["bin"] == "kubectl-modelops/kubectl-modelops"


def test_manifest_matches_a_local_build() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    (platform,) = manifest["spec"]["platforms"]
    archive = REPO / "dist" / "krew" / platform["uri"].rsplit("/", 1)[1]
    if archive.exists():  # only after scripts/build-krew-archive.sh ran here
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == platform["sha256"]
