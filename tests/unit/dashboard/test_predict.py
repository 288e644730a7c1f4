"""The prediction form built from V2 metadata, the request built from what was typed, and the
answer as the page shows it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelops_operator.dashboard.predict import (
    MAX_FIELDS,
    MAX_OUTPUT_VALUES,
    FormError,
    infer_request,
    prediction_form,
    prediction_result,
)

from .samples import IRIS_METADATA


def metadata(*inputs: dict[str, Any]) -> dict[str, Any]:
    return {"name": "m", "inputs": list(inputs), "outputs": [{"name": "predict"}]}


def test_a_row_input_gets_one_number_field_per_feature() -> None:
    form = prediction_form(IRIS_METADATA)
    assert form["supported"] and form["model"] == "iris"
    (single,) = form["inputs"]
    assert single["kind"] == "row"
    assert single["fields"] == ["input-0[0]", "input-0[1]", "input-0[2]", "input-0[3]"]
    assert form["outputs"] == ["predict", "predict_proba"]


def test_the_request_is_one_row_of_the_inputs_datatype_asking_for_every_output() -> None:
    form = prediction_form(IRIS_METADATA)
    request = infer_request(form, {"input-0": ["5.1", "3.5", "1.4", " 0.2 "]})
    assert request["inputs"] == [
        {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    ]
    assert request["outputs"] == [{"name": "predict"}, {"name": "predict_proba"}]
    assert request["id"]


def test_columns_as_separate_inputs_and_text_and_integers() -> None:
    form = prediction_form(metadata(
        {"name": "age", "datatype": "INT32", "shape": [-1, 1]},
        {"name": "note", "datatype": "BYTES", "shape": [-1]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1]},
    ))  # fmt: skip
    assert [i["kind"] for i in form["inputs"]] == ["scalar", "text", "scalar"]
    request = infer_request(form, {"age": ["42"], "note": ["hello"], "flag": ["true"]})
    assert [(t["shape"], t["data"]) for t in request["inputs"]] == [
        ([1, 1], [42]), ([1], ["hello"]), ([1], [True]),
    ]


def test_an_input_of_unknown_width_takes_a_comma_separated_list() -> None:
    form = prediction_form(metadata({"name": "x", "datatype": "FP32", "shape": [-1, -1]}))
    assert form["inputs"][0]["kind"] == "list"
    request = infer_request(form, {"x": ["1, 2.5;3"]})
    assert request["inputs"][0]["shape"] == [1, 3]
    assert request["inputs"][0]["data"] == [1.0, 2.5, 3.0]


@pytest.mark.parametrize(("inputs", "why"), [
    ([], "lists no inputs"),
    ([{"name": "image", "datatype": "FP32", "shape": [-1, 3, 224, 224]}], "shape"),
    ([{"name": "x", "datatype": "FP32", "shape": [-1, MAX_FIELDS + 1]}], "shape"),
    ([{"name": "x", "datatype": "COMPLEX", "shape": [-1, 2]}], "datatype COMPLEX"),
    ([{"name": "x", "datatype": "FP32", "shape": "[-1, 4]"}], "shape"),
])  # fmt: skip
def test_inputs_a_form_cannot_hold_say_why(inputs: list[dict[str, Any]], why: str) -> None:
    form = prediction_form(metadata(*inputs))
    assert not form["supported"] and why in form["reason"]
    with pytest.raises(FormError):
        infer_request(form, {})


@pytest.mark.parametrize(("values", "message"), [
    ({"input-0": ["1", "2", "3"]}, "expected 4 value(s)"),
    ({"input-0": ["1", "2", "3", "four"]}, "input-0[3]: 'four' is not a number"),
    ({"input-0": ["1", "2", "3", "nan"]}, "not a finite number"),
    ({"input-0": ["1", "2", "3", "inf"]}, "not a finite number"),
    ({"input-0": [1, 2, 3, 4]}, "each value is a string"),
    ({}, "missing input 'input-0'"),
    ({"input-0": ["1"] * 4, "extra": ["1"]}, "unknown input 'extra'"),
    (["1", "2"], "expected an object"),
    ({"input-0": ["1", "2", "3", "9" * 5000]}, "at most 4096 characters"),
])  # fmt: skip
def test_values_that_do_not_fit_are_refused_naming_the_field(values: Any, message: str) -> None:
    with pytest.raises(FormError, match=re.escape(message)):
        infer_request(prediction_form(IRIS_METADATA), values)


def test_integer_inputs_refuse_fractions_and_unsigned_ones_negatives() -> None:
    form = prediction_form(metadata({"name": "n", "datatype": "UINT8", "shape": [-1]}))
    with pytest.raises(FormError, match="whole numbers"):
        infer_request(form, {"n": ["1.5"]})
    with pytest.raises(FormError, match="no negative"):
        infer_request(form, {"n": ["-1"]})


def test_the_answer_shows_the_version_that_answered_and_bounds_long_outputs() -> None:
    answer = {
        "model_name": "iris", "model_version": "1.1.0", "id": "r-1",
        "outputs": [
            {"name": "predict", "datatype": "FP64", "shape": [1], "data": [2.0]},
            {"name": "big", "datatype": "FP32", "shape": [1, 100], "data": list(range(100))},
        ],
    }  # fmt: skip
    result = prediction_result(answer, 12.345)
    assert result["modelVersion"] == "1.1.0" and result["latencyMs"] == 12.3
    assert result["outputs"][0]["data"] == [2.0]
    assert len(result["outputs"][1]["data"]) == MAX_OUTPUT_VALUES
    assert result["outputs"][1]["more"] == 100 - MAX_OUTPUT_VALUES
