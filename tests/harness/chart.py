"""The Helm chart's manifests, rendered with `helm template` (no cluster needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "modelops"
RELEASE = "modelops"
# `helm template` checks Chart.yaml's kubeVersion against a version it makes up unless told
# (v1.20 for a helm built without its release ldflags): render for the oldest supported one.
HELM_KUBE_VERSION = "1.30.0"


def helm_template(helm: Path, namespace: str, *extra: str) -> list[dict[str, Any]]:
    """The chart's manifests as dicts."""
    command = [str(helm), "template", RELEASE, str(CHART), "--namespace", namespace]
    out = subprocess.run(
        [*command, "--kube-version", HELM_KUBE_VERSION, *extra],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_template(helm: Path, template: str, namespace: str = "default") -> str:
    """One of the chart's templates as YAML, e.g. "approval-policy.yaml": the admission
    policies carry the release's name, so tests apply them rendered, as helm would."""
    command = [str(helm), "template", RELEASE, str(CHART), "--namespace", namespace]
    return subprocess.run(
        [*command, "--kube-version", HELM_KUBE_VERSION, "--show-only", f"templates/{template}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
