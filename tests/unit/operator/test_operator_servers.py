"""Model servers: each one's command, port, probes and model path fit the pod around it."""

from __future__ import annotations

from typing import Any

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.workload import build_model_deployment
from modelops_operator.challenge.model import ModelRef
from modelops_operator.challenge.workloads import model_ref, spec_with_model

DIGEST = "sha256:" + "ab" * 32


def make_spec(runtime: dict[str, Any] | None = None, **model: Any) -> ModelDeploymentSpec:
    base = {"name": "fraud", "version": "1.0.0", "uri": "s3://b/fraud/model.joblib",
            "format": "sklearn", "digest": DIGEST}
    return ModelDeploymentSpec.model_validate({"model": {**base, **model},
                                               "runtime": runtime or {}})


def pod(spec: ModelDeploymentSpec) -> dict[str, Any]:
    return build_model_deployment("fraud", "ns", spec)["spec"]["template"]["spec"]


def named(containers: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(c for c in containers if c["name"] == name)


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_our_server_gets_the_options_as_flags() -> None:
    spec = make_spec({"options": {"allowUnsafePickle": True,
                                  "trustedTypes": ["lightgbm.basic.Booster", "a.B"]},
                      "args": ["--inference-threads", "2"]})
    model = named(pod(spec)["containers"], "model")
    assert model["command"] == ["modelops-serve"]
    args = model["args"]
    assert args[args.index("--uri") + 1] == "file:///models/model.joblib"
    assert "--allow-unsafe-pickle" in args
    assert args[args.index("--trusted-types") + 1] == "lightgbm.basic.Booster,a.B"
    assert args[-2:] == ["--inference-threads", "2"]


def test_mlserver_is_configured_by_environment_and_writes_only_to_tmp() -> None:
    spec = make_spec({"server": "mlserver", "image": "modelops.dev/mlserver:1.7.1",
                      "options": {"allowUnsafePickle": True},
                      "env": [{"name": "MLSERVER_PARALLEL_WORKERS", "value": "2"}]})
    template = pod(spec)
    model = named(template["containers"], "model")
    assert model["image"] == "modelops.dev/mlserver:1.7.1"
    assert model["command"][:2] == ["mlserver", "start"]
    variables = env(model)
    assert variables["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_sklearn.SKLearnModel"
    assert variables["MLSERVER_MODEL_URI"] == "/models/model.joblib"
    assert variables["MLSERVER_HTTP_PORT"] == "8080"
    assert variables["MLSERVER_METRICS_DIR"].startswith("/tmp/")
    assert variables["MLSERVER_PARALLEL_WORKERS"] == "2"  # the user's value wins
    assert [e["name"] for e in model["env"]].count("MLSERVER_PARALLEL_WORKERS") == 1
    assert model["workingDir"] == "/tmp"
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/models/fraud/ready"
    # The fetch still runs our image (MLServer's has no modelops-fetch) and verifies the digest.
    fetch = template["initContainers"][0]
    assert fetch["command"] == ["modelops-fetch"] and "--digest" in fetch["args"]
    assert fetch["image"] != model["image"]


def test_triton_gets_a_repository_and_its_ports_clear_of_the_sidecar() -> None:
    spec = make_spec({"server": "triton"}, format="onnx", uri="s3://b/fraud/v3.onnx")
    template = pod(spec)
    model = named(template["containers"], "model")
    assert model["command"] == ["tritonserver"]
    assert "--model-repository=/models" in model["args"]
    assert "--http-port=8080" in model["args"]
    ports = {int(a.split("=")[1]) for a in model["args"] if a.split("=")[0].endswith("-port")}
    assert not ports & {8000, 9090}
    fetch = template["initContainers"][0]
    assert fetch["args"][:2] == ["s3://b/fraud/v3.onnx", "/models/fraud/1/model.onnx"]


def test_a_custom_server_on_its_own_port_is_what_the_sidecar_and_probes_call() -> None:
    spec = make_spec({"server": "custom", "image": "acme/server:2", "port": 7070,
                      "command": ["/srv/run"], "readinessPath": "/healthz"}, format="custom",
                     uri="s3://b/fraud/")
    template = pod(spec)
    model = named(template["containers"], "model")
    assert model["command"] == ["/srv/run"]
    assert model["ports"][0]["containerPort"] == 7070
    assert model["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert env(model)["MODELOPS_MODEL_URI"] == "file:///models/fraud/"
    sidecar = named(template["containers"], "metrics-sidecar")
    assert sidecar["args"][sidecar["args"].index("--upstream") + 1] == "http://127.0.0.1:7070"


def test_placement_identity_and_gpus_reach_the_pod() -> None:
    spec = make_spec({
        "serviceAccountName": "fraud-reader",
        "imagePullSecrets": ["registry"],
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "resources": {"requests": {"cpu": "1"}, "limits": {"nvidia.com/gpu": 1, "memory": "4Gi"}},
    })
    template = pod(spec)
    assert template["serviceAccountName"] == "fraud-reader"
    assert template["automountServiceAccountToken"] is False
    assert template["imagePullSecrets"] == [{"name": "registry"}]
    assert template["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert template["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    term = template["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["a"]
    model = named(template["containers"], "model")
    assert model["resources"] == {"requests": {"cpu": "1"},
                                  "limits": {"nvidia.com/gpu": 1, "memory": "4Gi"}}


def test_a_version_keeps_its_server_when_the_next_one_brings_another() -> None:
    ours = make_spec({"options": {"allowUnsafePickle": True}, "replicas": 2,
                      "imagePullPolicy": "Always"})
    champion = model_ref(ours)
    challenger_spec = make_spec(
        {"server": "mlserver", "image": "m:1", "options": {"allowUnsafePickle": True},
         "replicas": 3, "imagePullPolicy": "Never"}, version="2.0.0",
        uri="s3://b/fraud/v2.joblib")
    # The champion arm is built from the current spec with the champion's version: its server
    # is the one it was promoted with, while replicas follow the current spec.
    champion_spec = spec_with_model(challenger_spec, champion)
    assert champion_spec.runtime.server == "modelops"
    assert champion_spec.runtime.image is None
    assert champion_spec.runtime.image_pull_policy == "Always"  # it goes with the image
    assert champion_spec.runtime.replicas == 3
    assert champion_spec.model.version == "1.0.0"
    assert named(pod(champion_spec)["containers"], "model")["command"] == ["modelops-serve"]
    # A reference without a recorded setup (written before it was recorded) changes the model only.
    legacy = spec_with_model(challenger_spec, ModelRef("1.0.0", "s3://b/m.joblib", DIGEST))
    assert legacy.runtime.server == "mlserver"


def test_every_server_keeps_serving_while_its_pod_leaves_the_endpoints() -> None:
    for runtime in ({}, {"server": "mlserver", "options": {"allowUnsafePickle": True}}):
        template = pod(make_spec(runtime))
        delays = {c["name"]: c["lifecycle"]["preStop"]["sleep"]["seconds"]
                  for c in template["containers"]}
        # The model outlives the sidecar, whose last requests it answers.
        assert 0 < delays["metrics-sidecar"] < delays["model"]
        assert delays["model"] + 10 < template["terminationGracePeriodSeconds"]
