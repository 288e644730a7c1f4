"""Bounded fuzzing of the HTTP endpoints: no input may cause a 5xx or take a process down."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
DATATYPES = ["BOOL", "UINT8", "UINT64", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=25)
numbers = st.one_of(st.integers(min_value=-300, max_value=300),
                    st.floats(allow_nan=False, allow_infinity=False, width=32))
tensors = st.fixed_dictionaries(
    {"name": st.one_of(st.just("input-0"), st.text(max_size=6)),
     "shape": st.lists(st.integers(min_value=-2, max_value=6), max_size=3),
     "datatype": st.one_of(st.sampled_from(DATATYPES), st.text(max_size=5)),
     "data": st.one_of(st.lists(numbers, max_size=30),
                       st.lists(st.lists(numbers, max_size=5), max_size=6),
                       st.lists(st.text(max_size=3), max_size=5), json_values)},
    optional={"parameters": json_values})


@st.composite
def consistent_tensors(draw: st.DrawFn) -> dict:
    """Tensors whose data fits their shape, so decoding succeeds and the models are reached."""
    shape = draw(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=3))
    datatype = draw(st.sampled_from(DATATYPES))
    size = 1
    for dim in shape:
        size *= dim
    element = {"BOOL": st.booleans(), "BYTES": st.text(max_size=3)}.get(
        datatype, st.integers(min_value=-130, max_value=130) if datatype[0] in "UI"
        else st.floats(allow_nan=False, allow_infinity=False, width=32))
    return {"name": draw(st.sampled_from(["input-0", "float_input", "x"])), "shape": shape,
            "datatype": datatype, "data": draw(st.lists(element, min_size=size, max_size=size))}


requests = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(consistent_tensors(), min_size=1, max_size=2),
                         st.lists(tensors, max_size=3))},
    optional={"id": st.one_of(st.text(max_size=10), json_values),
              "outputs": st.one_of(st.lists(st.fixed_dictionaries({"name": st.sampled_from(
                  ["predict", "predict_proba", "label", "probabilities", "nope"])}),
                  max_size=2), json_values),
              "parameters": json_values})
header_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=20)


def targets(stack) -> list[str]:
    return [stack.champion_server.url, stack.challenger_server.url, stack.champion.url,
            stack.router.url]


def assert_no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    # (A HEAD answer has the error's headers but no body.)
    if response.status_code >= 400 and response.content and response.headers.get(
            "content-type", "").startswith("application/json"):
        assert "error" in response.json()


CLIENT = httpx.Client(timeout=10)  # keep-alive: the fuzzing, not connecting, should take the time


@pytest.fixture(scope="module")
def fuzz_stack(stack):
    stack.configure(mode="split", challengerWeight=50)
    yield stack
    for program in (stack.champion_server, stack.challenger_server, stack.champion,
                    stack.challenger, stack.router):
        assert program.alive(), program.log()[-2000:]


@FUZZ
@given(body=requests, target=st.integers(min_value=0, max_value=3))
def test_structured_inference_requests(fuzz_stack, body: dict, target: int) -> None:
    url = targets(fuzz_stack)[target] + "/v2/models/fraud/infer"
    assert_no_server_error(CLIENT.post(url, content=json.dumps(body)))


@FUZZ
@given(body=st.one_of(json_values.map(json.dumps).map(str.encode), st.binary(max_size=200)),
       target=st.integers(min_value=0, max_value=3))
def test_arbitrary_bodies(fuzz_stack, body: bytes, target: int) -> None:
    url = targets(fuzz_stack)[target] + "/v2/models/fraud/infer"
    assert_no_server_error(CLIENT.post(url, content=body))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]),
       path=st.lists(st.sampled_from(["v2", "models", "fraud", "versions", "v1", "infer", "ready",
                                      "health", "live", "feedback", "x%20y", ".."]), max_size=6),
       request_id=header_text, target=st.integers(min_value=0, max_value=3))
def test_paths_and_methods(fuzz_stack, method: str, path: list[str], request_id: str,
                           target: int) -> None:
    url = targets(fuzz_stack)[target] + "/" + "/".join(path)
    headers = {"X-Request-Id": request_id} if request_id else {}
    assert_no_server_error(CLIENT.request(method, url, headers=headers, content=b"{}"))


@FUZZ
@given(body=st.one_of(json_values, st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=10), json_values), "truth": json_values})),
       target=st.sampled_from(["sidecar", "router"]))
def test_feedback_bodies(fuzz_stack, body: object, target: str) -> None:
    base = fuzz_stack.champion.url if target == "sidecar" else fuzz_stack.router.url
    assert_no_server_error(CLIENT.post(base + "/v2/feedback", content=json.dumps(body)))
