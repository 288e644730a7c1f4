"""The data plane's keys Secret and where the router finds it."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.keys import (
    KEYS_DIR,
    RECEIPT_CLOCK_SKEW_SECONDS,
    RECEIPT_KEYS_ITEM,
    STICKY_KEY_ITEM,
    ReceiptKeyPolicy,
    build_keys_secret,
    encode_receipt_keys,
    keys_secret_name,
    receipt_keys_of,
    rotated_receipt_keys,
)
from modelops_operator.builders.workload import build_model_deployment
from modelops_operator.challenge.workloads import build_router_deployment

DAY = 86400.0
T0 = 1_800_000_000.0
POLICY = ReceiptKeyPolicy(rotate_every=7 * DAY, propagation=300, max_delay=7 * DAY)


def test_each_deployment_gets_its_own_random_key() -> None:
    first = build_keys_secret("fraud", "ns", T0, POLICY)
    second = build_keys_secret("fraud", "ns", T0, POLICY)
    assert first["metadata"]["name"] == keys_secret_name("fraud") == "fraud-dataplane-keys"
    assert first["metadata"]["labels"]["modelops.io/deployment"] == "fraud"
    key = base64.b64decode(first["data"][STICKY_KEY_ITEM])
    assert len(key) == 32
    assert key != base64.b64decode(second["data"][STICKY_KEY_ITEM])
    # The first receipt key signs at once: no pod has signed anything yet.
    ring = receipt_keys_of(first)
    assert ring is not None
    (only,) = ring["keys"]
    assert only["activeFrom"] == T0 and len(base64.b64decode(only["secret"])) == 32


def test_receipt_keys_rotate_ahead_of_use_and_retire_after_their_last_label() -> None:
    ring = receipt_keys_of(build_keys_secret("fraud", "ns", T0, POLICY))
    assert rotated_receipt_keys(ring, T0 + 6 * DAY, POLICY) is None  # not due: nothing to write
    ring = rotated_receipt_keys(ring, T0 + 7 * DAY, POLICY)
    assert ring is not None
    first, second = ring["keys"]
    # The new key is in every pod's ring for `propagation` before any pod signs with it.
    assert second["activeFrom"] == T0 + 7 * DAY + 300 and second["id"] != first["id"]
    assert second["secret"] != first["secret"]
    # The old key still verifies every label that can still come (maxDelay after it stopped
    # signing, plus the receipts' clock skew), and no longer.
    last_label = second["activeFrom"] + POLICY.max_delay + RECEIPT_CLOCK_SKEW_SECONDS
    kept = rotated_receipt_keys(ring, last_label, POLICY)
    assert kept is not None  # due to rotate again, old key kept
    assert [k["id"] for k in kept["keys"]][:2] == [first["id"], second["id"]]
    gone = rotated_receipt_keys(ring, last_label + 1, POLICY)
    assert gone is not None and first["id"] not in [k["id"] for k in gone["keys"]]


def test_an_unreadable_ring_is_replaced() -> None:
    assert receipt_keys_of({"data": {RECEIPT_KEYS_ITEM: "not base64 json"}}) is None
    assert receipt_keys_of({"data": {}}) is None
    ring = {"keys": [{"id": "k1", "secret": "c2VjcmV0", "activeFrom": 5}]}
    assert receipt_keys_of({"data": {RECEIPT_KEYS_ITEM: encode_receipt_keys(ring)}}) == ring


def test_the_router_reads_the_key_from_the_mounted_secret() -> None:
    pod = build_router_deployment("fraud", "ns")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    path = args[args.index("--sticky-key-file") + 1]
    assert path == f"{KEYS_DIR}/{STICKY_KEY_ITEM}"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == KEYS_DIR)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "fraud-dataplane-keys"
    assert volume["secret"]["items"] == [{"key": STICKY_KEY_ITEM, "path": STICKY_KEY_ITEM},
                                         {"key": RECEIPT_KEYS_ITEM, "path": RECEIPT_KEYS_ITEM}]
    # It checks receipts for their arm and replica; the longest maxDelay any spec may set,
    # since the sidecar that scores the label holds it to the deployment's own.
    assert args[args.index("--receipt-keys-file") + 1] == f"{KEYS_DIR}/{RECEIPT_KEYS_ITEM}"
    assert args[args.index("--feedback-max-delay") + 1] == "2.592e+06"
    # The pod's fsGroup reads it; nobody else in the container's user namespace does.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def model_spec(feedback: dict[str, object]) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "fraud", "version": "1.0.0", "format": "sklearn",
                  "uri": "https://models.example.com/fraud/model.skops",
                  "digest": "sha256:" + "0" * 64},
        "monitoring": {"feedback": feedback}})


def model_pod(feedback: dict[str, object]) -> dict[str, object]:
    spec = model_spec(feedback)
    pod: dict[str, object] = build_model_deployment("fraud", "ns", spec)["spec"]["template"]["spec"]
    return pod


def test_the_sidecar_signs_and_checks_receipts_with_the_ring_alone() -> None:
    pod = model_pod({"enabled": True, "maxDelay": "24h"})
    sidecar = next(c for c in pod["containers"] if c["name"] == "metrics-sidecar")  # type: ignore[index]
    args = sidecar["args"]
    assert args[args.index("--receipt-keys-file") + 1] == f"{KEYS_DIR}/{RECEIPT_KEYS_ITEM}"
    assert args[args.index("--feedback-max-delay") + 1] == "86400"
    (mount,) = sidecar["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])  # type: ignore[attr-defined]
    assert volume["secret"]["secretName"] == "fraud-dataplane-keys"
    # Never the sticky key: a model pod could otherwise tell which arm a sticky value gets.
    assert volume["secret"]["items"] == [{"key": RECEIPT_KEYS_ITEM, "path": RECEIPT_KEYS_ITEM}]
    # No other container of the pod mounts it.
    others = [c for c in pod["containers"] if c is not sidecar]  # type: ignore[attr-defined]
    assert all(m["name"] != mount["name"] for c in others for m in c.get("volumeMounts", []))


def test_without_feedback_there_is_no_key_to_mount() -> None:
    pod = model_pod({"enabled": False})
    sidecar = next(c for c in pod["containers"] if c["name"] == "metrics-sidecar")  # type: ignore[index]
    assert "--receipt-keys-file" not in sidecar["args"]
    assert all("secret" not in v for v in pod["volumes"])  # type: ignore[attr-defined]


def test_the_keys_secret_is_written_only_for_pods_that_mount_it() -> None:
    from modelops_operator.challenge.view import ChallengeView
    from modelops_operator.reconcile import needs_keys

    def spec(feedback: bool) -> ModelDeploymentSpec:
        return model_spec({"enabled": feedback})

    # No feedback and no challenge: no pod mounts it (above), so no Secret, no read of one.
    assert not needs_keys(spec(False), None)
    # Receipts for the sidecars; the sticky and receipt keys for a challenge's router.
    assert needs_keys(spec(True), None)
    assert needs_keys(spec(False), ChallengeView("fraud-canary"))


def test_the_router_runs_two_spread_replicas_under_a_disruption_budget() -> None:
    from modelops_operator.challenge.workloads import build_router_disruption_budget

    router = build_router_deployment("fraud", "ns")
    assert router["spec"]["replicas"] == 2
    spread = router["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname",
                                                  "topology.kubernetes.io/zone"}
    # A one-node cluster still runs both.
    assert {c["whenUnsatisfiable"] for c in spread} == {"ScheduleAnyway"}
    budget = build_router_disruption_budget("fraud", "ns")
    assert budget["spec"]["maxUnavailable"] == 1
    pods = router["spec"]["template"]["metadata"]["labels"]
    assert all(pods[k] == v for k, v in budget["spec"]["selector"]["matchLabels"].items())
    for constraint in spread:
        assert constraint["labelSelector"] == budget["spec"]["selector"]


def test_a_challenge_makes_its_targets_keys_secret_once_before_its_router_and_never_rotates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    import kopf

    from modelops_operator import reconcile
    from modelops_operator.handlers import championchallenger

    existing: dict[str, Any] = {}
    calls: list[str] = []

    async def read_object(_: Any, api_version: str, kind: str, namespace: str, name: str) -> Any:
        calls.append(f"get {kind} {namespace}/{name}")
        return existing.get(name)

    async def create_once(_: Any, manifest: Mapping[str, Any]) -> bool:
        calls.append(f"create {manifest['metadata']['name']}")
        (owner,) = manifest["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("ModelDeployment", "fraud", "u-1")
        existing[manifest["metadata"]["name"]] = manifest
        return True

    async def patch_secret_item(*_: Any) -> None:
        calls.append("patch")  # a rotation: the ModelDeployment's reconcile alone rotates

    monkeypatch.setattr(reconcile, "read_object", read_object)
    monkeypatch.setattr(reconcile, "create_once", create_once)
    monkeypatch.setattr(reconcile, "patch_secret_item", patch_secret_item)
    memo = kopf.Memo(k8s=None, applied={})
    target = {"metadata": {"uid": "u-1"}}
    spec = model_spec({"enabled": False})

    async def ticks() -> None:
        await championchallenger._ensure_keys(memo, "ns", "fraud", target, spec)
        await championchallenger._ensure_keys(memo, "ns", "fraud", target, spec)  # next tick
        memo.applied.clear()  # the replica stopped leading, and leads again: the ring is old
        ring = {"keys": [{"id": "old", "secret": "c2VjcmV0", "activeFrom": 0}]}
        existing["fraud-dataplane-keys"]["data"][RECEIPT_KEYS_ITEM] = encode_receipt_keys(ring)
        await championchallenger._ensure_keys(memo, "ns", "fraud", target, spec)

    asyncio.run(ticks())
    assert calls == ["get Secret ns/fraud-dataplane-keys", "create fraud-dataplane-keys",
                     "get Secret ns/fraud-dataplane-keys"]
