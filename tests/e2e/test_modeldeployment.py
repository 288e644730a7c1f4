"""The ModelDeployment controller on a real API server, run as the chart's ServiceAccount.

kwok marks pods Ready on paper, so these tests check objects and statuses, not traffic.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.chart import helm_template
from tests.harness.operator_process import SYSTEM_NAMESPACE, OperatorProcess

from .operator_fixtures import *  # noqa: F403  (crds, operator_identity, operator)
from .operator_fixtures import get_json, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "modeldeployment-sklearn.yaml"
DIGEST_2 = "sha256:" + "2b" * 32


def manifest(name: str, **model: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "name": "fraud",
                "version": "1.0.0",
                "uri": "https://models.example.com/fraud/1.0.0/model.onnx",
                "format": "onnx",
                "digest": "sha256:" + "1a" * 32,
                **model,
            },
            "runtime": {"replicas": 1},
        },
    }


def apply(devcluster: Any, namespace: str, body: dict[str, Any]) -> None:
    devcluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))


def wait_ready(devcluster: Any, namespace: str, name: str, timeout: int = 90) -> dict[str, Any]:
    result = devcluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"mdep/{name}", f"--timeout={timeout}s",
        check=False, timeout=timeout + 30,
    )  # fmt: skip
    if result.returncode != 0:
        status = get_json(devcluster, "-n", namespace, f"mdep/{name}").get("status")
        pytest.fail(
            f"mdep/{name} not Ready: {result.stderr}\nstatus: {json.dumps(status, indent=1)}"
        )
    return get_json(devcluster, "-n", namespace, f"mdep/{name}")


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in body.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def event_reasons(devcluster: Any, namespace: str, name: str) -> list[str]:
    """The reasons of the ModelDeployment's Events, oldest first, one per posting.

    Only the ModelDeployment's: its Service has the same name, and the apiserver's ClusterIP
    repair loop sometimes warns about a Service created while it ran (ClusterIPNotAllocated, a
    known upstream race that the loop repairs itself; it failed one CI run)."""
    found = get_json(devcluster, "events", "-n", namespace, "--field-selector",
                     f"involvedObject.name={name},involvedObject.kind=ModelDeployment")  # fmt: skip
    events = sorted(found["items"], key=lambda e: e.get("firstTimestamp") or e["eventTime"])
    return [e["reason"] for e in events for _ in range(e.get("count") or 1)]


def settled(devcluster: Any, namespace: str, name: str, version: str) -> dict[str, Any] | None:
    """The object once status caught up with the spec and the rollout of `version` finished."""
    body = get_json(devcluster, "-n", namespace, f"mdep/{name}")
    status = body.get("status", {})
    done = (
        status.get("observedGeneration") == body["metadata"]["generation"]
        and condition(body, "Ready").get("status") == "True"
        and status.get("champion", {}).get("version") == version
    )
    return body if done else None


def test_example_becomes_ready_with_owned_children_and_delete_cascades(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    status_writes = operator.writes().get("PATCH modeldeployments/status", 0)
    devcluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    # From its first read the object says it is on its way (the CRD's pending default, or
    # already Ready), never nothing: kstatus reads no status at all as Current.
    first = get_json(devcluster, "-n", namespace, "mdep/iris").get("status") or {}
    assert condition({"status": first}, "Ready").get("status") in ("Unknown", "True"), first
    if condition({"status": first}, "Ready")["status"] == "Unknown":
        assert condition({"status": first}, "Reconciling")["status"] == "True"
        assert condition({"status": first}, "Ready")["reason"] == "Pending"
    body = wait_ready(devcluster, namespace, "iris")
    # A first rollout going well is reported once, when it serves.
    assert operator.writes()["PATCH modeldeployments/status"] - status_writes == 1
    uid = body["metadata"]["uid"]
    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    for type_ in ("Ready", "Reconciling", "Stalled"):
        assert condition(body, type_)["observedGeneration"] == body["metadata"]["generation"]
    assert condition(body, "Stalled")["status"] == "False"
    assert status["endpoint"] == f"http://iris.{namespace}.svc.cluster.local"
    assert status["champion"]["version"] == "1.0.0"
    assert status["readyReplicas"] == 2

    deployment = get_json(
        devcluster, "-n", namespace, "deployment/iris-champion", "--show-managed-fields"
    )
    service = get_json(devcluster, "-n", namespace, "service/iris")
    for child in (deployment, service):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("ModelDeployment", "iris", uid)
        assert owner["controller"] is True
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
    assert "modelops" in managers  # server-side apply with the stable field manager
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["model-fetch"]
    assert [c["name"] for c in pod["containers"]] == ["model", "metrics-sidecar"]

    # A new object is announced by no Event: its status says it is Ready, and its children
    # are announced only when re-created (issue 17: Events only for what a person needs).
    assert event_reasons(devcluster, namespace, "iris") == []

    devcluster.kubectl("delete", "-n", namespace, "mdep/iris", "--timeout=60s")
    wait_until(
        lambda: not devcluster.kubectl(
            "get", "-n", namespace, "deployment,service", "-l", "modelops.io/deployment=iris",
            "-o", "name",
        ).stdout.strip(),
        timeout=60,
        what="the garbage collector to delete the Deployment and Service",
    )  # fmt: skip


def test_version_and_uri_changes_roll_the_deployment(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    apply(devcluster, namespace, manifest("fraud"))
    first = wait_ready(devcluster, namespace, "fraud")
    before = get_json(devcluster, "-n", namespace, "deployment/fraud-champion")

    apply(devcluster, namespace, manifest("fraud", version="2.0.0", digest=DIGEST_2))
    second = wait_until(
        lambda: settled(devcluster, namespace, "fraud", "2.0.0"), timeout=90, what="2.0.0 live"
    )
    assert second["metadata"]["generation"] > first["metadata"]["generation"]
    rolled = get_json(devcluster, "-n", namespace, "deployment/fraud-champion")
    assert rolled["metadata"]["generation"] > before["metadata"]["generation"]
    labels = rolled["spec"]["template"]["metadata"]["labels"]
    assert labels["modelops.io/model-version"] == "2.0.0"
    (entry,) = second["status"]["history"]
    assert (entry["fromVersion"], entry["toVersion"], entry["action"]) == (
        "1.0.0",
        "2.0.0",
        "RolledOut",
    )
    # A new version is news: its rollout starting and finishing, once each (Events are posted
    # after the status write, so they may arrive a moment later).
    # One of each; their order cannot be checked: an Event's firstTimestamp has whole seconds,
    # and on a fast cluster both fall in the same one.
    rollout = ["RollingOut", "RolloutComplete"]
    wait_until(
        lambda: sorted(r for r in event_reasons(devcluster, namespace, "fraud") if r in rollout)
        == sorted(rollout),
        timeout=30,
        what="one RollingOut and one RolloutComplete Event",
    )

    new_uri = "https://models.example.com/fraud/2.0.0/model-b.onnx"
    apply(devcluster, namespace, manifest("fraud", version="2.0.0", digest=DIGEST_2, uri=new_uri))
    third = wait_until(
        lambda: (
            (b := settled(devcluster, namespace, "fraud", "2.0.0"))
            and b["metadata"]["generation"] > second["metadata"]["generation"]
            and b
        ),
        timeout=90,
        what="the uri change to be observed",
    )
    assert third["status"]["observedGeneration"] == third["metadata"]["generation"]
    again = get_json(devcluster, "-n", namespace, "deployment/fraud-champion")
    assert again["metadata"]["generation"] > rolled["metadata"]["generation"]
    fetch = again["spec"]["template"]["spec"]["initContainers"][0]
    assert fetch["args"][0] == new_uri


def test_scale_subresource(devcluster: Any, namespace: str, operator: OperatorProcess) -> None:
    apply(devcluster, namespace, manifest("scaled"))
    wait_ready(devcluster, namespace, "scaled")
    devcluster.kubectl("scale", "-n", namespace, "mdep/scaled", "--replicas=3")
    body = wait_until(
        lambda: (
            (b := get_json(devcluster, "-n", namespace, "mdep/scaled"))
            and b["status"].get("readyReplicas") == 3
            and condition(b, "Ready").get("status") == "True"
            and b
        ),
        timeout=90,
        what="3 ready replicas",
    )
    assert body["spec"]["runtime"]["replicas"] == 3
    deployment = get_json(devcluster, "-n", namespace, "deployment/scaled-champion")
    assert deployment["spec"]["replicas"] == 3
    scale = json.loads(
        devcluster.kubectl(
            "get", "--raw",
            f"/apis/modelops.io/v1alpha1/namespaces/{namespace}/modeldeployments/scaled/scale",
        ).stdout
    )  # fmt: skip
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "modelops.io/deployment=scaled,modelops.io/role=champion"


def test_a_guaranteed_model_container_gets_a_guaranteed_pod(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    """The API server, not our code, classes the pods: requests equal to limits for the model
    make every container's so (the static CPU manager pins only a Guaranteed pod's CPUs)."""
    shapes = {
        "pinned": {"limits": {"cpu": "1", "memory": "512Mi"}},
        "shared": {"requests": {"cpu": "100m", "memory": "256Mi"},
                   "limits": {"cpu": "1", "memory": "512Mi"}},
    }
    for name, resources in shapes.items():
        body = manifest(name)
        body["spec"]["runtime"]["resources"] = resources
        apply(devcluster, namespace, body)

    def qos_classes() -> dict[str, str] | None:
        pods = get_json(devcluster, "pods", "-n", namespace)["items"]
        found = {p["metadata"]["labels"]["modelops.io/deployment"]: p["status"].get("qosClass")
                 for p in pods}
        return found if set(found) == set(shapes) else None

    assert wait_until(qos_classes, timeout=90, what="a pod of each ModelDeployment") == {
        "pinned": "Guaranteed", "shared": "Burstable"}


def test_missing_credentials_secret_stalls_naming_the_field(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    body = manifest("private", uri="s3://models/fraud/model.onnx", credentialsSecret="s3-creds")
    apply(devcluster, namespace, body)
    devcluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Stalled", "mdep/private", "--timeout=60s"
    )
    stalled = condition(get_json(devcluster, "-n", namespace, "mdep/private"), "Stalled")
    assert stalled["reason"] == "SecretNotFound"
    assert "spec.model.credentialsSecret" in stalled["message"]
    assert "s3-creds" in stalled["message"]
    missing = devcluster.kubectl("get", "-n", namespace, "deployment/private-champion", check=False)
    assert missing.returncode != 0  # nothing is started that cannot work

    # Fixing the cause is enough: the next resync notices and rolls out.
    devcluster.kubectl(
        "create", "secret", "generic", "s3-creds", "-n", namespace,
        "--from-literal=AWS_ACCESS_KEY_ID=x", "--from-literal=AWS_SECRET_ACCESS_KEY=y",
    )  # fmt: skip
    recovered = wait_ready(devcluster, namespace, "private")
    assert condition(recovered, "Stalled")["status"] == "False"
    deployment = get_json(devcluster, "-n", namespace, "deployment/private-champion")
    fetch = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert fetch["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]


def test_a_deleted_child_is_recreated(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    apply(devcluster, namespace, manifest("healing"))
    wait_ready(devcluster, namespace, "healing")
    devcluster.kubectl("delete", "-n", namespace, "service/healing", "deployment/healing-champion")
    for kind in ("service/healing", "deployment/healing-champion"):
        wait_until(
            lambda kind=kind: devcluster.kubectl(
                "get", "-n", namespace, kind, check=False
            ).returncode == 0,
            timeout=60,
            what=f"{kind} to be re-created",
        )  # fmt: skip
    wait_ready(devcluster, namespace, "healing")
    # Re-created on the deletion event itself, not only by the periodic resync.
    assert f"[{namespace}/healing] re-applying children (a child was deleted" in operator.log()
    events = devcluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=healing",
        "-o", "jsonpath={.items[*].message}",
    ).stdout  # fmt: skip
    assert "re-created" in events


def test_a_failing_model_pod_stalls_with_its_termination_message(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    """kwok runs no containers, so the failure a real kubelet would report is written into the
    pod status by hand; the node is cordoned so that kwok leaves the pod alone."""
    node = devcluster.kubectl("get", "nodes", "-o", "name").stdout.split()[0]
    devcluster.kubectl("cordon", node)
    try:
        apply(devcluster, namespace, manifest("broken"))
        pod = wait_until(
            lambda: devcluster.kubectl(
                "get", "pods", "-n", namespace, "-l", "modelops.io/deployment=broken",
                "-o", "jsonpath={.items[0].metadata.name}", check=False,
            ).stdout.strip(),
            timeout=60,
            what="the model pod to be created",
        )  # fmt: skip
        mismatch = (
            "digest mismatch for https://…/model.onnx: expected sha256:1a1a…, got sha256:9f9f…"
        )
        terminated = {"exitCode": 1, "reason": "Error", "message": mismatch}
        status = {
            "initContainerStatuses": [
                {
                    "name": "model-fetch",
                    "image": "modelops/modelops-serving:0.1.0",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": terminated},
                }
            ]
        }
        devcluster.kubectl(
            "patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}),
        )  # fmt: skip
        devcluster.kubectl(
            "wait", "-n", namespace, "--for=condition=Stalled", "mdep/broken", "--timeout=60s"
        )
        stalled = condition(get_json(devcluster, "-n", namespace, "mdep/broken"), "Stalled")
        assert stalled["reason"] == "ModelFetchFailed"
        assert "digest mismatch" in stalled["message"]
        assert "spec.model.digest" in stalled["message"]
        assert pod in stalled["message"]
    finally:
        devcluster.kubectl("uncordon", node)


def test_operator_is_not_admin(devcluster: Any, operator_identity: tuple[Path, str]) -> None:
    kubeconfig, user = operator_identity
    assert user.startswith("system:serviceaccount:")
    result = devcluster.kubectl(
        "--kubeconfig", str(kubeconfig), "get", "secrets", "-A", check=False
    )
    assert result.returncode != 0 and "forbidden" in result.stderr.lower()
    as_operator = ("--kubeconfig", str(kubeconfig), "auth", "can-i")
    # `delete deployments` is granted: a challenger Deployment is removed after a challenge.
    for verb, resource in [("delete", "services"), ("list", "configmaps"), ("create", "pods")]:
        result = devcluster.kubectl(*as_operator, verb, resource, "-A", check=False)
        assert result.stdout.strip() == "no", (verb, resource)
    assert devcluster.kubectl(*as_operator, "patch", "deployments", "-A").stdout.strip() == "yes"


def test_the_dataplane_keys_secret_is_created_once_and_only_its_receipt_keys_change(
    devcluster: Any, namespace: str, operator: OperatorProcess,
    operator_identity: tuple[Path, str],
) -> None:
    """The operator creates `<md>-dataplane-keys` (owned by the ModelDeployment) for a
    deployment whose pods mount it (feedback on; a challenge's router), not for one without,
    and the chart's policy lets the operator's ServiceAccount patch nothing else of a Secret
    than that Secret's receipt keys."""
    kubeconfig, _ = operator_identity
    policy = [d for d in helm_template(devcluster.bin_dir / "helm", SYSTEM_NAMESPACE)
              if d["metadata"]["name"] == "modelops-dataplane-keys"]
    assert [d["kind"] for d in policy] == ["ValidatingAdmissionPolicy",
                                           "ValidatingAdmissionPolicyBinding"]
    devcluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                       input=yaml.safe_dump_all(policy))
    keyed = manifest("keyed")
    keyed["spec"]["monitoring"] = {"feedback": {"enabled": True}}
    apply(devcluster, namespace, keyed)
    apply(devcluster, namespace, manifest("unkeyed"))
    wait_ready(devcluster, namespace, "keyed")
    wait_ready(devcluster, namespace, "unkeyed")
    unkeyed = devcluster.kubectl("get", "-n", namespace, "secret/unkeyed-dataplane-keys",
                                 check=False)
    assert unkeyed.returncode != 0 and "NotFound" in unkeyed.stderr
    secret = get_json(devcluster, "-n", namespace, "secret/keyed-dataplane-keys")
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("ModelDeployment", "keyed")
    assert set(secret["data"]) == {"sticky.key", "receipt-keys.json"}
    sticky = secret["data"]["sticky.key"]
    # Another reconcile (a spec change) leaves it as it is: no rotation is due.
    devcluster.kubectl("patch", "-n", namespace, "mdep/keyed", "--type=merge",
                       "-p", '{"spec": {"runtime": {"replicas": 2}}}')
    wait_until(lambda: (get_json(devcluster, "-n", namespace, "mdep/keyed").get("status") or {})
               .get("readyReplicas") == 2, timeout=60, what="the second replica")
    assert get_json(devcluster, "-n", namespace, "secret/keyed-dataplane-keys")["data"] == \
        secret["data"]
    assert "PATCH secrets" not in operator.writes()

    as_operator = ("--kubeconfig", str(kubeconfig), "-n", namespace)
    ring = base64.b64encode(b'{"keys": []}').decode()

    def patch(name: str, data: dict[str, str]) -> Any:
        return devcluster.kubectl(*as_operator, "patch", "secret", name, "--type=merge",
                                  "-p", json.dumps({"data": data}), check=False)

    # The policy is loaded by the API server a moment after it is created.
    wait_until(lambda: "sticky key" in patch("keyed-dataplane-keys", {"sticky.key": ring}).stderr,
               timeout=30, what="the modelops-dataplane-keys policy to refuse a new sticky key")
    devcluster.kubectl("create", "secret", "generic", "someone-elses", "-n", namespace,
                       "--from-literal=password=hunter2")
    refused = patch("someone-elses", {"password": ring})
    assert refused.returncode != 0 and "only updates the" in refused.stderr
    allowed = patch("keyed-dataplane-keys", {"receipt-keys.json": ring})
    assert allowed.returncode == 0, allowed.stderr
    assert get_json(devcluster, "-n", namespace, "secret/keyed-dataplane-keys")["data"][
        "sticky.key"] == sticky
