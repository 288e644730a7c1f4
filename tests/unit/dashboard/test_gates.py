"""The interval bar: where a gate's estimate, interval and reference lines sit on its axis."""

from __future__ import annotations

import math

import pytest

from modelops_operator.dashboard.gates import finite, gate_reference, gate_view, interval_bar


def test_an_accuracy_gate_is_judged_against_no_difference_and_minus_its_margin() -> None:
    reference = gate_reference({"type": "accuracy", "margin": 0.02})
    assert (reference.unit, reference.better) == ("difference", "higher")
    assert [(line.value, line.kind) for line in reference.lines] == [
        (0.0, "neutral"), (-0.02, "margin"),
    ]


def test_rate_gates_are_ratios_around_one_and_superiority_has_no_margin_line() -> None:
    reference = gate_reference({"type": "errorRate", "margin": 0.2})
    assert reference.unit == "ratio" and reference.better == "lower"
    assert [line.value for line in reference.lines] == [1.0, pytest.approx(1.2)]
    superior = gate_reference({"type": "latency", "test": "superiority"})
    assert [line.kind for line in superior.lines] == ["neutral"]


def test_a_gate_without_margin_takes_its_types_default() -> None:
    # The CRD's defaults table (api/championchallenger.GATE_DEFAULTS): accuracy 0.01.
    lines = gate_reference({"type": "accuracy"}).lines
    assert lines[1].value == pytest.approx(-0.01)


def test_prometheus_gates_show_their_threshold_range() -> None:
    reference = gate_reference({"type": "prometheus", "thresholdRange": {"max": 500}})
    assert [(line.value, line.label) for line in reference.lines] == [(500.0, "max 500")]


def test_the_bar_places_every_value_inside_the_axis_in_order() -> None:
    bar = interval_bar({"estimate": 0.01, "lower": -0.03, "upper": 0.05},
                       gate_reference({"type": "accuracy", "margin": 0.02}))
    assert bar is not None
    lines = {line["kind"]: line["at"] for line in bar["lines"]}
    assert 0 < bar["lower"] < lines["neutral"] < bar["estimate"] < bar["upper"] < 1
    # The margin line (-0.02) lies inside the interval [-0.03, 0.05]: not passed yet.
    assert bar["lower"] < lines["margin"] < lines["neutral"]
    assert not bar["openLower"] and not bar["openUpper"]


def test_an_interval_with_an_open_end_runs_to_that_edge() -> None:
    bar = interval_bar({"estimate": 1.0, "lower": 0.2},
                       gate_reference({"type": "errorRate", "margin": 0.2}))
    assert bar is not None and bar["openUpper"] and bar["upper"] == 1.0
    assert 0 < bar["lower"] < bar["estimate"] < 1


def test_nothing_to_draw_before_the_first_evaluation() -> None:
    assert interval_bar({"verdict": "NoData"}, gate_reference({"type": "accuracy"})) is None


def test_a_single_value_still_gets_an_axis_of_some_width() -> None:
    bar = interval_bar({"estimate": 0.0}, gate_reference({"type": "prometheus"}))
    assert bar is not None and bar["max"] > bar["min"] and bar["estimate"] == 0.5


@pytest.mark.parametrize("value", [None, math.inf, -math.inf, math.nan, "0.1", True])
def test_only_finite_numbers_are_drawn(value: object) -> None:
    assert finite(value) is None


def test_gate_view_reads_a_modeldeployment_history_entry_whose_name_is_under_gate() -> None:
    view = gate_view({"gate": "accuracy", "verdict": "Pass", "estimate": 0.02, "lower": 0.001,
                      "upper": 0.04}, {"type": "accuracy", "margin": 0.01})
    assert view["name"] == "accuracy" and view["verdict"] == "Pass"
    assert view["samples"] == {"champion": 0, "challenger": 0}
    assert view["bar"] is not None
