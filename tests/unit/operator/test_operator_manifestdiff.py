"""Desired-vs-observed comparison: what the API server adds or rewrites is not drift."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelops_operator.manifestdiff import differences, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("0.5", Decimal("0.5")),
        (2, Decimal(2)),
        ("1Gi", Decimal(2**30)),
        ("64Mi", Decimal(64 * 2**20)),
        ("1k", Decimal(1000)),
    ],
)
def test_parse_quantity(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["abc", "1Xi", "", None, True, [1]])
def test_non_quantities(text: object) -> None:
    assert parse_quantity(text) is None


def test_server_defaults_are_not_drift() -> None:
    desired = {"spec": {"ports": [{"name": "http", "port": 80}], "type": "ClusterIP"}}
    observed = {
        "spec": {
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}],
            "type": "ClusterIP",
            "clusterIP": "10.0.0.7",
        }
    }
    assert differences(desired, observed) == []


def test_canonicalised_quantities_and_dropped_zero_values_are_not_drift() -> None:
    desired = {
        "resources": {"limits": {"cpu": 1, "memory": "0.5Gi"}},
        "env": [{"name": "A", "value": ""}],
    }
    observed = {"resources": {"limits": {"cpu": "1", "memory": "512Mi"}}, "env": [{"name": "A"}]}
    assert differences(desired, observed) == []


def test_changed_values_are_reported_with_their_path() -> None:
    desired = {"spec": {"template": {"spec": {"containers": [{"name": "model", "image": "a:2"}]}}}}
    observed = {"spec": {"template": {"spec": {"containers": [{"name": "model", "image": "a:1"}]}}}}
    assert differences(desired, observed) == [".spec.template.spec.containers[model].image"]


def test_named_lists_match_by_name_and_detect_extra_or_missing_items() -> None:
    desired = {"c": [{"name": "a", "x": 1}, {"name": "b", "x": 2}]}
    assert differences(desired, {"c": [{"name": "b", "x": 2}, {"name": "a", "x": 1}]}) == []
    assert differences(desired, {"c": [{"name": "a", "x": 1}]}) == [".c"]
    assert differences(desired, {"c": [{"name": "a", "x": 1}, {"name": "z", "x": 2}]}) == [".c[b]"]


def test_positional_lists_and_missing_keys() -> None:
    assert differences({"args": ["--a", "1"]}, {"args": ["--a", "2"]}) == [".args[1]"]
    assert differences({"args": ["--a"]}, {"args": ["--a", "x"]}) == [".args"]
    assert differences({"labels": {"k": "v"}}, {}) == [".labels"]
    assert differences({"n": 0, "flag": False}, {}) == []
    assert differences({"replicas": 3}, {"replicas": 2}) == [".replicas"]
    assert differences({"enabled": True}, {"enabled": 1}) == [".enabled"]
