"""The operator benchmark's arithmetic: nodes, percentiles, write breakdowns, the ratio line."""

from __future__ import annotations

import os

import pytest

from benchmarks.bench_operator import (
    FLOOR_NAMESPACE,
    counter_delta,
    floor_manifests,
    modeldeployment,
    nodes_for,
    object_path,
    operator_writes,
    per_object,
    percentile,
    ratio,
    ratio_line,
    resync_runs,
)
from tests.harness.operator_process import cpu_seconds_of_stat


@pytest.mark.parametrize(("objects", "nodes"), [(0, 1), (1, 2), (100, 2), (101, 3), (1000, 11)])
def test_one_node_per_hundred_objects_plus_a_spare(objects: int, nodes: int) -> None:
    assert nodes_for(objects) == nodes


def test_percentile_is_nearest_rank() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.0
    assert percentile(values, 95) == 4.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_counter_delta_keeps_only_what_changed() -> None:
    before = {"PATCH deployments": 3.0, "POST secrets": 2.0}
    after = {"PATCH deployments": 5.0, "POST secrets": 2.0, "POST lineagerecords": 1.0}
    assert counter_delta(before, after) == {"PATCH deployments": 2.0, "POST lineagerecords": 1.0}


def test_operator_writes_add_kopf_patches_and_events_largest_first() -> None:
    own = {"PATCH deployments": 100.0, "PATCH modeldeployments/status": 200.0, "POST x": 0.0}
    writes = operator_writes(own, apiserver_mdep_patches=200.0, kopf_events=300.0)
    assert list(writes.items()) == [
        ("POST events (kopf)", 300.0),
        ("PATCH modeldeployments (kopf)", 200.0),
        ("PATCH modeldeployments/status", 200.0),
        ("PATCH deployments", 100.0),
    ]


def test_kopf_patches_exclude_those_the_operator_client_counted() -> None:
    own = {"PATCH modeldeployments": 50.0}
    writes = operator_writes(own, apiserver_mdep_patches=80.0, kopf_events=0.0)
    assert writes == {"PATCH modeldeployments": 50.0, "PATCH modeldeployments (kopf)": 30.0}


def test_nothing_written_is_an_empty_breakdown() -> None:
    assert operator_writes({}, 0.0, 0.0) == {}


def test_per_object_divides_and_rounds() -> None:
    assert per_object({"POST secrets": 1000.0, "POST events (kopf)": 2001.0}, 1000) == {
        "POST secrets": 1.0,
        "POST events (kopf)": 2.0,
    }


def test_ratio_and_its_line() -> None:
    assert ratio(30.0, 20.0) == 1.5
    assert ratio(None, 20.0) is None
    assert ratio(30.0, None) is None
    assert ratio_line(30.0, 20.0).startswith("operator / floor: 1.50x")
    assert "30.0 s" in ratio_line(30.0, 20.0) and "20.0 s" in ratio_line(30.0, 20.0)
    assert ratio_line(None, 20.0) == "operator / floor: n/a (a phase did not finish)"


def test_resync_runs_are_reconcile_lines_of_the_namespace() -> None:
    log = "\n".join([
        "[t] modelops.fleet [INFO    ] [bench/model-001] reconciled generation 1: applied nothing",
        "[t] kopf.objects [INFO    ] [bench/model-002] Handler 'event' succeeded.",
        "[t] modelops.fleet [INFO    ] [bench/model-002] reconciled generation 1: applied nothing",
        "[t] modelops.fleet [INFO    ] [floor/model-003] reconciled generation 1: applied nothing",
        "[t] modelops.fleet [INFO    ] [bench/model-001] reconciled generation 1: applied nothing",
    ])  # fmt: skip
    assert resync_runs(log, "bench") == ["model-001", "model-002", "model-001"]


def test_object_paths_of_core_and_grouped_kinds() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m", "namespace": "n"}}
    deployment = {**service, "apiVersion": "apps/v1", "kind": "Deployment"}
    assert object_path(service) == "/api/v1/namespaces/n/services/m"
    assert object_path(deployment) == "/apis/apps/v1/namespaces/n/deployments/m"


def test_floor_writes_the_operators_children_without_an_owner() -> None:
    manifests = floor_manifests(modeldeployment(7))
    # As the operator: no keys Secret for a deployment without feedback or challenge.
    assert [m["kind"] for m in manifests] == ["Deployment", "Service"]
    keyed = modeldeployment(8)
    keyed["spec"]["monitoring"] = {"feedback": {"enabled": True}}
    manifests += floor_manifests(keyed)
    assert [m["kind"] for m in manifests[2:]] == ["Secret", "Deployment", "Service"]
    for manifest in manifests:
        assert manifest["metadata"]["namespace"] == FLOOR_NAMESPACE
        assert "ownerReferences" not in manifest["metadata"]


def test_cpu_seconds_read_past_a_command_name_with_spaces() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S"] + ["0"] * 10 + [str(3 * ticks), str(ticks)] + ["0"] * 30
    stat = "42 (kopf (run) x) " + " ".join(fields)
    assert cpu_seconds_of_stat(stat) == pytest.approx(4.0)
