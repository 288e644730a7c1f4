"""spec.model.profile in the model pod: fetched and verified beside the model, counted by the
sidecar, kept with its version while a challenger runs."""

from __future__ import annotations

from typing import Any

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.workload import build_model_deployment
from modelops_operator.challenge.workloads import model_ref, spec_with_model

PROFILE_DIGEST = "sha256:" + "1" * 64


def _spec(
    profile_uri: str | None = "s3://models/fraud/profile.json", **model: Any
) -> ModelDeploymentSpec:
    source: dict[str, Any] = {
        "name": "fraud",
        "version": "2.0.0",
        "uri": "s3://models/fraud/model.skops",
        "format": "sklearn",
        "digest": "sha256:" + "0" * 64,
        **model,
    }
    if profile_uri:
        source["profile"] = {"uri": profile_uri, "digest": PROFILE_DIGEST}
    return ModelDeploymentSpec.model_validate({"model": source})


def _pod(spec: ModelDeploymentSpec) -> dict[str, Any]:
    return build_model_deployment("fraud", "ml", spec, "champion")["spec"]["template"]["spec"]


def test_the_profile_is_fetched_verified_and_given_to_the_sidecar() -> None:
    pod = _pod(_spec(credentialsSecret="s3-creds"))
    fetches = {c["name"]: c for c in pod["initContainers"]}
    profile = fetches["profile-fetch"]
    assert profile["args"] == [
        "s3://models/fraud/profile.json",
        "/profile/",
        "--digest",
        PROFILE_DIGEST,
    ]
    assert profile["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    sidecar = next(c for c in pod["containers"] if c["name"] == "metrics-sidecar")
    flag = sidecar["args"].index("--profile-file")
    assert sidecar["args"][flag + 1] == "/profile/profile.json"
    assert {"name": "profile", "mountPath": "/profile", "readOnly": True} in sidecar["volumeMounts"]
    assert {"name": "profile", "emptyDir": {"sizeLimit": "4Mi"}} in pod["volumes"]


def test_a_pvc_profile_gets_its_own_read_only_claim() -> None:
    pod = _pod(_spec("pvc://profiles/fraud/p.json"))
    profile = next(c for c in pod["initContainers"] if c["name"] == "profile-fetch")
    assert profile["args"][0] == "file:///mnt/profile-source/fraud/p.json"
    assert {
        "name": "profile-source",
        "persistentVolumeClaim": {"claimName": "profiles", "readOnly": True},
    } in pod["volumes"]


def test_without_a_profile_nothing_is_added() -> None:
    pod = _pod(_spec(None))
    assert [c["name"] for c in pod["initContainers"]] == ["model-fetch"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "metrics-sidecar")
    assert "--profile-file" not in sidecar["args"]


def test_a_version_keeps_its_own_profile_when_another_is_specified() -> None:
    """The champion's pods, rebuilt while a challenger runs, count against the champion's
    profile, not the new version's."""
    champion = model_ref(_spec("s3://models/fraud/profile-1.json", version="1.0.0"))
    current = _spec("s3://models/fraud/profile-2.json")
    rebuilt = spec_with_model(current, champion)
    assert rebuilt.model.version == "1.0.0"
    assert rebuilt.model.profile is not None
    assert rebuilt.model.profile.uri == "s3://models/fraud/profile-1.json"
    without = spec_with_model(current, model_ref(_spec(None, version="0.9.0")))
    assert without.model.profile is None
