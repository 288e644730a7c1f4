"""The API server itself rejects invalid manifests (OpenAPI schema + CEL), naming the field.

Each case breaks exactly one rule of a valid manifest and checks that a server-side dry-run
apply fails with the field path and the rule's own words in the message.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .operator_fixtures import *  # noqa: F403  (the crds fixture)

pytestmark = pytest.mark.e2e

DIGEST = "sha256:" + "0f" * 32

VALID_MDEP: dict[str, Any] = {
    "apiVersion": "modelops.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud"},
    "spec": {
        "model": {
            "name": "fraud",
            "version": "1.0.0",
            "uri": "s3://models/fraud/model.skops",
            "format": "sklearn",
            "digest": DIGEST,
        },
        "runtime": {
            "replicas": 2,
            "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": 1}},
        },
        "monitoring": {"predictionBuckets": [0.1, 0.5, 0.9]},
    },
}

VALID_CC: dict[str, Any] = {
    "apiVersion": "modelops.io/v1alpha1",
    "kind": "ChampionChallenger",
    "metadata": {"name": "fraud-canary"},
    "spec": {
        "targetRef": {"name": "fraud"},
        "strategy": {"type": "canary", "steps": [5, 25, 50]},
        "gates": [
            {"name": "errors", "type": "errorRate", "margin": 0.2},
            {"name": "slow", "type": "latency", "latencyThreshold": "250ms"},
        ],
        "decision": {"alpha": 0.05, "interval": "30s", "maxDuration": "2h"},
    },
}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting (or, with value=DELETE, removing) one dotted path."""

    def mutate(manifest: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[leaf]
        elif isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value

    return mutate


DELETE = object()

# (case id, base manifest, mutation, field the message must name, words of the rule)
CASES = [
    (
        "maturity-without-feedback",
        VALID_MDEP,
        _set("spec.monitoring", {"feedback": {"maturity": "30m"}}),
        "spec.monitoring.feedback.maturity",
        "needs spec.monitoring.feedback.enabled",
    ),
    (
        "name-not-dns1035",
        VALID_MDEP,
        _set("metadata.name", "fraud.v2"),
        "metadata.name",
        "DNS-1035",
    ),
    ("name-too-long", VALID_MDEP, _set("metadata.name", "f" * 60), "metadata.name", "at most 52"),
    (
        "uri-scheme",
        VALID_MDEP,
        _set("spec.model.uri", "ftp://host/m.onnx"),
        "spec.model.uri",
        "must start with one of",
    ),
    (
        "pvc-without-path",
        VALID_MDEP,
        _set("spec.model.uri", "pvc://claim"),
        "spec.model.uri",
        "pvc://<claim-name>/<path",
    ),
    (
        "digest-format",
        VALID_MDEP,
        _set("spec.model.digest", "sha256:abc"),
        "spec.model.digest",
        "64 lower-case hex",
    ),
    (
        "digest-required",
        VALID_MDEP,
        _set("spec.model.digest", DELETE),
        "spec.model.digest",
        "Required value",
    ),
    (
        "format-enum",
        VALID_MDEP,
        _set("spec.model.format", "pickle"),
        "spec.model.format",
        "Unsupported value",
    ),
    (
        "version-label-value",
        VALID_MDEP,
        _set("spec.model.version", "1.0 beta"),
        "spec.model.version",
        "should match",
    ),
    (
        "credentials-with-file-uri",
        VALID_MDEP,
        lambda m: m["spec"]["model"].update(uri="file:///m.skops", credentialsSecret="creds"),
        "spec.model.credentialsSecret",
        "only used with s3://",
    ),
    (
        "replicas-range",
        VALID_MDEP,
        _set("spec.runtime.replicas", 101),
        "spec.runtime.replicas",
        "less than or equal to 100",
    ),
    (
        "pull-policy-enum",
        VALID_MDEP,
        _set("spec.runtime.imagePullPolicy", "Sometimes"),
        "spec.runtime.imagePullPolicy",
        "Unsupported value",
    ),
    (
        "requests-above-limits",
        VALID_MDEP,
        _set("spec.runtime.resources.requests.cpu", "2"),
        "spec.runtime.resources.requests.cpu",
        "must not exceed",
    ),
    (
        "memory-not-quantity",
        VALID_MDEP,
        _set("spec.runtime.resources.limits", {"memory": "lots"}),
        "spec.runtime.resources.limits[memory]",
        "Kubernetes quantity",
    ),
    (
        "reserved-env-name",
        VALID_MDEP,
        _set("spec.runtime.env", [{"name": "MODELOPS_PORT", "value": "1"}]),
        "spec.runtime.env[0].name",
        "reserved",
    ),
    (
        "mlserver-sklearn-needs-unsafe-pickle",
        VALID_MDEP,
        _set("spec.runtime.server", "mlserver"),
        "spec.runtime.options.allowUnsafePickle",
        "unpickles the model file",
    ),
    (
        "custom-server-needs-image",
        VALID_MDEP,
        _set("spec.runtime.server", "custom"),
        "spec.runtime.image",
        "required with server custom",
    ),
    (
        "custom-port-taken-by-the-sidecar",
        VALID_MDEP,
        lambda m: m["spec"]["runtime"].update(server="custom", image="x/y:1", port=9090),
        "spec.runtime.port",
        "must not be 8000 or 9090",
    ),
    (
        "triton-serves-onnx",
        VALID_MDEP,
        _set("spec.runtime.server", "triton"),
        "spec.model.format",
        "server triton loads onnx",
    ),
    (
        "mlflow-is-a-directory",
        VALID_MDEP,
        _set("spec.model.format", "mlflow"),
        "spec.model.uri",
        "for format mlflow",
    ),
    (
        "gpu-only-requested",
        VALID_MDEP,
        _set("spec.runtime.resources", {"requests": {"nvidia.com/gpu": 1}}),
        "spec.runtime.resources",
        "must be in limits",
    ),
    (
        "resource-name",
        VALID_MDEP,
        _set("spec.runtime.resources", {"limits": {"gpus": 1}}),
        "spec.runtime.resources.limits",
        "extended resource such as nvidia.com/gpu",
    ),
    (
        "toleration-exists-with-value",
        VALID_MDEP,
        _set("spec.runtime.tolerations", [{"key": "gpu", "operator": "Exists", "value": "x"}]),
        "spec.runtime.tolerations[0].value",
        "must be empty when operator is Exists",
    ),
    (
        "buckets-not-increasing",
        VALID_MDEP,
        _set("spec.monitoring.predictionBuckets", [0.5, 0.1]),
        "spec.monitoring.predictionBuckets",
        "strictly increasing",
    ),
    (
        "sample-rate-zero",
        VALID_MDEP,
        _set("spec.monitoring.sampleRate", 0),
        "spec.monitoring.sampleRate",
        "greater than 0",
    ),
    (
        "canary-needs-steps",
        VALID_CC,
        _set("spec.strategy.steps", DELETE),
        "spec.strategy.steps",
        "required when",
    ),
    (
        "steps-increasing",
        VALID_CC,
        _set("spec.strategy.steps", [25, 5]),
        "spec.strategy.steps",
        "strictly increasing",
    ),
    (
        "steps-in-range",
        VALID_CC,
        _set("spec.strategy.steps", [5, 150]),
        "spec.strategy.steps",
        "1..100",
    ),
    (
        "mirror-only-for-shadow",
        VALID_CC,
        _set("spec.strategy.mirrorPercent", 50),
        "spec.strategy.mirrorPercent",
        "only allowed when",
    ),
    (
        "ab-needs-weight",
        VALID_CC,
        _set("spec.strategy", {"type": "ab"}),
        "spec.strategy.weight",
        "required when",
    ),
    (
        "alpha-below-half",
        VALID_CC,
        _set("spec.decision.alpha", 0.5),
        "spec.decision.alpha",
        "less than 0.5",
    ),
    (
        "alpha-positive",
        VALID_CC,
        _set("spec.decision.alpha", 0),
        "spec.decision.alpha",
        "greater than 0",
    ),
    (
        "interval-at-least-5s",
        VALID_CC,
        _set("spec.decision.interval", "2s"),
        "spec.decision.interval",
        "at least 5s",
    ),
    (
        "max-duration-after-interval",
        VALID_CC,
        lambda m: m["spec"]["decision"].update(interval="2h", maxDuration="1h"),
        "spec.decision.maxDuration",
        "longer than",
    ),
    (
        "latency-needs-threshold",
        VALID_CC,
        _set("spec.gates.1.latencyThreshold", DELETE),
        "spec.gates[1].latencyThreshold",
        "required for a latency gate",
    ),
    (
        "prometheus-needs-query",
        VALID_CC,
        _set("spec.gates.0", {"name": "p", "type": "prometheus"}),
        "spec.gates[0].query",
        "required for a prometheus",
    ),
    (
        "tau-only-for-accuracy",
        VALID_CC,
        _set("spec.gates.0.tau", 0.1),
        "spec.gates[0].tau",
        "only allowed for an accuracy gate",
    ),
    (
        "min-duration-before-max-duration",
        VALID_CC,
        _set("spec.decision.minDuration", "3h"),
        "spec.decision.minDuration",
        "shorter than",
    ),
    (
        "gate-names-unique",
        VALID_CC,
        _set("spec.gates.1.name", "errors"),
        "spec.gates[1]",
        "Duplicate value",
    ),
]


@pytest.fixture(scope="module")
def validation_namespace(devcluster: Any, crds: None) -> Iterator[str]:
    """One namespace for the whole module: dry-runs persist nothing, so cases cannot interfere."""
    name = f"crd-validation-{uuid.uuid4().hex[:8]}"
    devcluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        devcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _dry_run(devcluster: Any, namespace: str, manifest: dict[str, Any]):
    return devcluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(manifest), check=False,
    )  # fmt: skip


def test_valid_manifests_and_examples_are_accepted(
    devcluster: Any, crds: None, namespace: str
) -> None:
    for manifest in (VALID_MDEP, VALID_CC):
        result = _dry_run(devcluster, namespace, manifest)
        assert result.returncode == 0, result.stderr
    result = devcluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "examples/", check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("base", "mutate", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_manifest_is_rejected_naming_the_field(
    devcluster: Any,
    validation_namespace: str,
    base: dict,
    mutate: Callable,
    field: str,
    words: str,
) -> None:
    manifest = copy.deepcopy(base)
    mutate(manifest)
    result = _dry_run(devcluster, validation_namespace, manifest)
    assert result.returncode != 0, f"accepted: {manifest}"
    assert field in result.stderr, result.stderr
    assert words in result.stderr, result.stderr


def test_target_ref_is_immutable(devcluster: Any, crds: None, namespace: str) -> None:
    devcluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(VALID_CC))
    changed = copy.deepcopy(VALID_CC)
    changed["spec"]["targetRef"]["name"] = "other"
    result = devcluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(changed), check=False
    )
    assert result.returncode != 0
    assert "spec.targetRef" in result.stderr and "immutable" in result.stderr, result.stderr


def test_defaults_are_filled_by_the_api_server(devcluster: Any, crds: None, namespace: str) -> None:
    minimal = copy.deepcopy(VALID_MDEP)
    minimal["spec"].pop("runtime")
    minimal["spec"].pop("monitoring")
    out = devcluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-o", "yaml", "-f", "-",
        input=yaml.safe_dump(minimal),
    ).stdout  # fmt: skip
    spec = yaml.safe_load(out)["spec"]
    assert spec["runtime"] == {
        "replicas": 1, "imagePullPolicy": "IfNotPresent", "server": "modelops", "port": 8080,
        "readinessPath": "/v2/health/ready", "options": {"allowUnsafePickle": False},
    }
    assert spec["monitoring"]["sampleRate"] == 1.0
    assert spec["monitoring"]["feedback"] == {"enabled": False}


def test_gate_margins_are_left_to_each_gate_type(
    devcluster: Any, crds: None, namespace: str
) -> None:
    # The operator gives a gate without margin its type's default (an accuracy gate one point);
    # a default stored by the API server would be the same number for every type.
    out = devcluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-o", "yaml", "-f", "-",
        input=yaml.safe_dump(VALID_CC),
    ).stdout  # fmt: skip
    gates = yaml.safe_load(out)["spec"]["gates"]
    assert gates[1] == {"name": "slow", "type": "latency", "latencyThreshold": "250ms",
                        "test": "nonInferiority"}  # fmt: skip


def _contains(stored: Any, sent: Any) -> bool:
    """Everything sent is stored as sent (the server may add defaults beside it)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(
            k in stored and _contains(stored[k], v) for k, v in sent.items()
        )
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(
            _contains(a, b) for a, b in zip(stored, sent, strict=True)
        )
    return bool(stored == sent)


def test_the_documented_championchallenger_is_accepted_field_for_field(
    devcluster: Any, crds: None, namespace: str
) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = text.split("\n## ChampionChallenger\n", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    manifest = yaml.safe_load(block.group(1))
    out = devcluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-o", "yaml",
        "-f", "-", input=yaml.safe_dump(manifest),
    ).stdout  # fmt: skip
    stored = yaml.safe_load(out)["spec"]
    assert _contains(stored, manifest["spec"]), (stored, manifest["spec"])
