"""Pure builders: spec in, Deployment/Service manifests out."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.pod import build_sidecar_container, plan_model_fetch
from modelops_operator.builders.workload import (
    build_model_deployment,
    build_service,
    selector_string,
)
from modelops_operator.constants import DEFAULT_SERVING_IMAGE
from modelops_operator.reconcile import plan_children

DIGEST = "sha256:" + "ab" * 32


def make_spec(**model: Any) -> ModelDeploymentSpec:
    base = {
        "name": "fraud",
        "version": "1.0.0",
        "uri": "https://models.example.com/fraud/model.skops",
        "format": "sklearn",
        "digest": DIGEST,
    }
    return ModelDeploymentSpec.model_validate({"model": {**base, **model}})


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return pod["initContainers"] + pod["containers"]


def test_every_container_is_locked_down() -> None:
    deployment = build_model_deployment("fraud", "ns", make_spec())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert [c["name"] for c in containers(deployment)] == [
        "model-fetch",
        "model",
        "metrics-sidecar",
    ]
    for container in containers(deployment):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["runAsNonRoot"] is True, container["name"]
        assert security["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]


def test_fetch_verifies_the_digest_into_the_shared_empty_dir() -> None:
    deployment = build_model_deployment("fraud", "ns", make_spec())
    fetch, model, sidecar = containers(deployment)
    assert fetch["command"] == ["modelops-fetch"]
    assert fetch["args"] == [
        "https://models.example.com/fraud/model.skops",
        "/models/",
        "--digest",
        DIGEST,
    ]
    assert model["command"] == ["modelops-serve"]
    args = model["args"]
    assert args[args.index("--uri") + 1] == "file:///models/model.skops"
    assert args[args.index("--digest") + 1] == DIGEST
    assert args[args.index("--port") + 1] == "8080"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model"] == {"name": "model", "emptyDir": {}}
    model_mount = next(m for m in model["volumeMounts"] if m["name"] == "model")
    assert model_mount["readOnly"] is True  # only the fetch may write the model
    assert sidecar["command"] == ["modelops-sidecar"]
    sidecar_args = sidecar["args"]
    for flag, value in [
        ("--upstream", "http://127.0.0.1:8080"),
        ("--port", "8000"),
        ("--metrics-port", "9090"),
        ("--model", "fraud"),
        ("--version", "1.0.0"),
        ("--role", "champion"),
        ("--deployment", "fraud"),
    ]:
        assert sidecar_args[sidecar_args.index(flag) + 1] == value


def test_labels_and_selector_follow_the_design_names() -> None:
    deployment = build_model_deployment("fraud", "ns", make_spec())
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "modelops-model",
        "app.kubernetes.io/instance": "fraud",
        "app.kubernetes.io/managed-by": "modelops",
        "modelops.io/deployment": "fraud",
        "modelops.io/role": "champion",
        "modelops.io/model-version": "1.0.0",
    }
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert "modelops.io/model-version" not in selector  # selectors are immutable
    assert all(labels[k] == v for k, v in selector.items())
    assert (
        selector_string("fraud", "champion")
        == "modelops.io/deployment=fraud,modelops.io/role=champion"
    )
    assert deployment["metadata"]["name"] == "fraud-champion"


def test_a_new_version_changes_the_pod_template_only() -> None:
    old = build_model_deployment("fraud", "ns", make_spec())
    new = build_model_deployment("fraud", "ns", make_spec(version="2.0.0"))
    assert old["spec"]["selector"] == new["spec"]["selector"]
    assert old["spec"]["template"] != new["spec"]["template"]
    assert new["spec"]["template"]["metadata"]["labels"]["modelops.io/model-version"] == "2.0.0"


def test_pvc_uri_mounts_the_claim_read_only_for_the_fetch() -> None:
    deployment = build_model_deployment(
        "fraud", "ns", make_spec(uri="pvc://models/fraud/v1/model.onnx")
    )
    fetch = containers(deployment)[0]
    assert fetch["args"][0] == "file:///mnt/model-source/fraud/v1/model.onnx"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-source"]["persistentVolumeClaim"] == {
        "claimName": "models",
        "readOnly": True,
    }
    assert {"name": "model-source", "mountPath": "/mnt/model-source", "readOnly": True} in fetch[
        "volumeMounts"
    ]


def test_credentials_secret_reaches_only_the_fetch_container() -> None:
    spec = make_spec(uri="s3://bucket/fraud/model.skops", credentialsSecret="s3-creds")
    fetch, model, sidecar = containers(build_model_deployment("fraud", "ns", spec))
    assert fetch["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert "envFrom" not in model and "envFrom" not in sidecar


def test_custom_image_keeps_its_entry_point_and_file_uri_fetches_from_it() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": make_spec(uri="file:///opt/model.onnx", format="onnx").model.to_wire(),
            "runtime": {"image": "registry.local/my-server:1", "replicas": 3},
        }
    )
    deployment = build_model_deployment("fraud", "ns", spec)
    fetch, model, sidecar = containers(deployment)
    assert model["image"] == "registry.local/my-server:1" and "command" not in model
    assert fetch["image"] == "registry.local/my-server:1"
    assert sidecar["image"] == DEFAULT_SERVING_IMAGE
    assert deployment["spec"]["replicas"] == 3


def test_service_targets_the_sidecar_of_champion_pods() -> None:
    service = build_service("fraud", "ns")
    assert service["spec"]["selector"] == {
        "modelops.io/deployment": "fraud",
        "modelops.io/role": "champion",
    }
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert http == {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}


def test_children_are_owned_by_the_model_deployment() -> None:
    children = plan_children("fraud", "ns", "uid-123", make_spec())
    assert [c["kind"] for c in children] == ["Deployment", "Service"]
    for child in children:
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == "uid-123" and ref["kind"] == "ModelDeployment"
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
        assert child["metadata"]["namespace"] == "ns"


@pytest.mark.parametrize(
    ("uri", "fetched", "served", "claim"),
    [
        ("https://h/x/m.onnx", "https://h/x/m.onnx", "/models/m.onnx", None),
        ("s3://b/k/model.skops", "s3://b/k/model.skops", "/models/model.skops", None),
        ("pvc://claim/a/b.onnx", "file:///mnt/model-source/a/b.onnx", "/models/b.onnx", "claim"),
        # Directories and archives land as a directory named after them (modelops-fetch).
        ("s3://b/models/fraud/", "s3://b/models/fraud/", "/models/fraud/", None),
        ("gs://b/m/mlflow-model/", "gs://b/m/mlflow-model/", "/models/mlflow-model/", None),
        ("https://h/x/fraud-2.tar.gz", "https://h/x/fraud-2.tar.gz", "/models/fraud-2/", None),
        ("pvc://claim/dir/", "file:///mnt/model-source/dir/", "/models/dir/", "claim"),
    ],
)
def test_model_fetch_plan(uri: str, fetched: str, served: str, claim: str | None) -> None:
    plan = plan_model_fetch(uri)
    assert (plan.fetch_uri, plan.fetch_dest, plan.served_path, plan.pvc_claim) == (
        fetched, "/models/", served, claim
    )


def test_triton_gets_a_model_repository() -> None:
    plan = plan_model_fetch("s3://b/k/fraud.onnx", "triton", "fraud")
    assert (plan.fetch_dest, plan.served_path) == ("/models/fraud/1/model.onnx", "/models")


def test_label_maturity_reaches_the_sidecar_with_a_store_that_remembers_long_enough() -> None:
    plain = make_spec()
    matured = ModelDeploymentSpec.model_validate(
        {**plain.to_wire(), "monitoring": {"feedback": {"enabled": True, "maturity": "90m"}}}
    )
    args = build_sidecar_container("iris", matured, "challenger")["args"]
    assert args[args.index("--label-maturity") + 1] == "5400"
    assert args[args.index("--feedback-ttl") + 1] == "5400"
    assert "--feedback" not in args
    plain_args = build_sidecar_container("iris", plain, "champion")["args"]
    assert "--label-maturity" not in plain_args
    bounded = ModelDeploymentSpec.model_validate(
        {**plain.to_wire(), "monitoring": {"feedback": {"enabled": True, "lossBound": 0.1 + 0.2}}}
    )
    bounded_args = build_sidecar_container("iris", bounded, "challenger")["args"]
    # Exactly the number the gate divides by (0.30000000000000004, not 0.3).
    assert float(bounded_args[bounded_args.index("--loss-bound") + 1]) == 0.1 + 0.2
    # Feedback off (the default): the sidecar refuses labels.
    assert plain_args[plain_args.index("--feedback") + 1] == "off"


def with_resources(resources: dict[str, Any], **spec: Any) -> ModelDeploymentSpec:
    wire = make_spec().to_wire()
    return ModelDeploymentSpec.model_validate(
        {**wire, **spec, "runtime": {**wire.get("runtime", {}), "resources": resources}}
    )


def cpu_and_memory(amounts: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (amounts or {}).items() if k in ("cpu", "memory")}


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        {"limits": {"cpu": "1", "memory": "512Mi"}},  # requests default to the limits
        {"requests": {"cpu": "1000m"}, "limits": {"cpu": 1, "memory": "1Gi"}},
    ],
)
def test_a_guaranteed_model_container_makes_every_container_guaranteed(
    resources: dict[str, Any],
) -> None:
    # With a training profile, so that both init containers are there.
    spec = with_resources(resources, model={
        **make_spec().model.to_wire(),
        "profile": {"uri": "https://models.example.com/fraud/profile.json", "digest": DIGEST}})
    deployment = build_model_deployment("fraud", "ns", spec)
    helpers = [c for c in containers(deployment) if c["name"] != "model"]
    assert [c["name"] for c in helpers] == ["model-fetch", "profile-fetch", "metrics-sidecar"]
    for container in helpers:
        amounts = container["resources"]
        assert set(amounts["limits"]) >= {"cpu", "memory"}, container["name"]
        assert amounts["requests"] == amounts["limits"], container["name"]


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        {"limits": {"cpu": "1"}},  # no memory limit
        {"requests": {"cpu": "1", "memory": "1Gi"}},  # no limits
    ],
)
def test_a_burstable_model_container_leaves_the_helpers_without_a_cpu_limit(
    resources: dict[str, Any],
) -> None:
    deployment = build_model_deployment("fraud", "ns", with_resources(resources))
    for container in containers(deployment):
        if container["name"] == "model":
            assert container["resources"] == resources
            continue
        amounts = container["resources"]
        assert "cpu" not in amounts["limits"], container["name"]
        assert cpu_and_memory(amounts["requests"]) == {"cpu": "50m", "memory": "64Mi"}
