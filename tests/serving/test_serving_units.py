"""Unit tests of the pure parts: protocol decoding, stores, routing, config, signing, CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from modelops_serving.cli import EnvArgumentParser, env_name
from modelops_serving.feedback_store import (
    BoundedTTLMap,
    FeedbackStore,
    MaturingScores,
    Score,
    score,
)
from modelops_serving.metrics import DEFAULT_PREDICTION_BUCKETS, parse_buckets
from modelops_serving.router_config import ConfigError, ConfigWatcher, parse_config
from modelops_serving.routing import agreement, choose_arm, key_position, should_mirror
from modelops_serving.sigv4 import Credentials, sign_headers
from modelops_serving.v2protocol import ProtocolError, decode_request, encode_response

# -- protocol ------------------------------------------------------------------------------


def test_decode_flat_and_nested_data_alike() -> None:
    flat = decode_request({"id": "a", "inputs": [
        {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
    nested = decode_request({"inputs": [
        {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}]}, "hdr")
    assert flat.id == "a" and nested.id == "hdr"
    np.testing.assert_array_equal(flat.inputs["x"], nested.inputs["x"])
    assert flat.inputs["x"].dtype == np.float32 and flat.inputs["x"].shape == (2, 2)


@pytest.mark.parametrize(("body", "fragment"), [
    ({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]}, "non-negative"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}]}, "true or false"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1.5]}]}, "integers"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "UINT8", "data": [-1]}]}, "fit UINT8"),
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [[1], {}]}]}, "scalars"),
    ({"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}, "'name'"),
    ({"inputs": [{"name": "x", "shape": [10**9, 10**9], "datatype": "FP64", "data": []}]},
     "exceeds the limit"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]},
                 {"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}, "duplicate"),
    ({"id": 5, "inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]},
     "request.id"),
    ({"id": "a\r\nSet-Cookie: x", "inputs": [
        {"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}, "control characters"),
])
def test_decode_rejects_with_the_field_named(body: dict, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        decode_request(body)


def test_encode_response_uses_v2_datatypes() -> None:
    response = encode_response("m", "3", "id-1", {
        "label": np.array([1, 0], dtype=np.int64), "p": np.array([[0.5, 0.5]], dtype=np.float32),
        "name": np.array(["cat"], dtype=object)})
    tensors = {t["name"]: t for t in response["outputs"]}
    assert tensors["label"] == {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 0]}
    assert tensors["p"]["datatype"] == "FP32" and tensors["p"]["shape"] == [1, 2]
    assert tensors["name"]["datatype"] == "BYTES" and tensors["name"]["data"] == ["cat"]
    assert response["model_version"] == "3" and response["id"] == "id-1"


# -- bounded stores and scoring ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_store_is_bounded_by_size_and_time() -> None:
    clock = FakeClock()
    store: BoundedTTLMap[str, int] = BoundedTTLMap(capacity=3, ttl=10, clock=clock)
    for i in range(5):
        store.put(f"k{i}", i)
    assert len(store) == 3 and store.evicted == 2 and store.get("k0") is None
    clock.now = 10.5
    store.put("late", 9)
    assert len(store) == 1 and store.expired == 3
    assert store.take("late") == 9 and store.take("late") is None


def test_feedback_store_caps_values_per_entry() -> None:
    store = FeedbackStore(capacity=2, ttl=5, max_values=3)
    store.remember("a", list(range(10)), classification=True)
    remembered = store.take("a")
    assert remembered is not None and remembered.values == (0, 1, 2)


def test_scoring_classification_and_regression() -> None:
    store = FeedbackStore()
    store.remember("c", [1, 0, "cat"], classification=True)
    store.remember("r", [1.0, 2.0], classification=False)
    classes = score(store.take("c"), [1, 1, "cat"])  # type: ignore[arg-type]
    assert (classes.correct, classes.incorrect) == (2, 1)
    regression = score(store.take("r"), [2.0, 0.0])  # type: ignore[arg-type]
    assert regression.scored == 2 and regression.absolute_error == 3.0
    assert regression.squared_error == 5.0
    store.remember("r", [1.0, 2.0, 0.0], classification=False)
    bounded = score(store.take("r"), [2.0, 0.0, 100.0], loss_bound=1.5)  # type: ignore[arg-type]
    # Each error counts up to the bound: 1, then 2 -> 1.5, then 100 -> 1.5.
    assert bounded.absolute_error == 4.0 and bounded.squared_error == 1 + 2.25 + 2.25
    store.remember("bad", [1.0], classification=False)
    with pytest.raises(ValueError, match="truth: has 2 values"):
        score(store.take("bad"), [1.0, 2.0])  # type: ignore[arg-type]


# -- routing -------------------------------------------------------------------------------


def test_weighted_choice_matches_the_weight() -> None:
    import random

    rng = random.Random(4)
    arms = Counter(choose_arm(10, None, rng.random) for _ in range(20_000))
    assert abs(arms["challenger"] / 20_000 - 0.10) < 0.01
    assert choose_arm(0, "anyone") == "champion" and choose_arm(100, None) == "challenger"


def test_sticky_keys_are_stable_and_move_one_way() -> None:
    keys = [f"user-{i}" for i in range(2000)]
    at_20 = {k for k in keys if choose_arm(20, k) == "challenger"}
    at_50 = {k for k in keys if choose_arm(50, k) == "challenger"}
    assert at_20 <= at_50  # raising the weight only moves keys to the challenger
    assert abs(len(at_50) / len(keys) - 0.5) < 0.05
    assert key_position("user-1") == key_position("user-1")  # no per-process salt


def test_mirror_sampling_and_agreement() -> None:
    import random

    rng = random.Random(1)
    mirrored = sum(should_mirror(25, rng.random) for _ in range(10_000))
    assert 2300 < mirrored < 2700
    assert not should_mirror(0) and should_mirror(100)
    assert agreement([1, 0], [1, 0]) == "agree"
    assert agreement([1, 0], [1, 1]) == "disagree"
    assert agreement([0.5], [0.5 + 1e-9]) == "agree"
    assert agreement(None, [1]) == "error"


# -- router configuration ------------------------------------------------------------------

GOOD = {"apiVersion": "router.modelops.io/v1alpha1", "mode": "split",
        "champion": {"url": "http://a:8000"}, "challenger": {"url": "http://b:8000/"},
        "challengerWeight": 5, "stickyHeader": "x-user"}


def test_parse_json_and_yaml() -> None:
    from_json = parse_config(json.dumps(GOOD))
    from_yaml = parse_config("apiVersion: router.modelops.io/v1alpha1\nchampion:\n"
                             "  url: http://a:8000\n")
    assert from_json.challenger is not None and from_json.challenger.url == "http://b:8000"
    assert from_yaml.mode == "split" and from_yaml.challengerWeight == 0


@pytest.mark.parametrize(("change", "fragment"), [
    ({"apiVersion": "v0"}, "apiVersion: 'v0' is not supported"),
    ({"challengerWeight": 150}, "challengerWeight"),
    ({"mode": "blue-green"}, "mode"),
    ({"challenger": None}, "challenger: required"),
    ({"champion": {"url": "ftp://x"}}, "champion.url"),
    ({"stickyHeader": "bad header"}, "stickyHeader"),
    ({"weights": {}}, "weights"),
])
def test_invalid_config_names_the_field(change: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_config(json.dumps({**GOOD, **change}))


def test_watcher_follows_a_configmap_symlink_swap_and_keeps_last_good(tmp_path: Path) -> None:
    # Kubernetes mounts a ConfigMap as file -> ..data/file with ..data a symlink it swaps.
    def publish(name: str, content: str) -> None:
        version = tmp_path / name
        version.mkdir()
        (version / "router.json").write_text(content)
        link = tmp_path / "..data_tmp"
        link.symlink_to(name)
        os.replace(link, tmp_path / "..data")

    publish("v1", json.dumps(GOOD))
    (tmp_path / "router.json").symlink_to("..data/router.json")
    watcher = ConfigWatcher(tmp_path / "router.json")
    assert watcher.load_initial().challengerWeight == 5
    assert watcher.poll() is None
    publish("v2", json.dumps({**GOOD, "challengerWeight": 25}))
    new = watcher.poll()
    assert not isinstance(new, ConfigError) and new is not None and new.challengerWeight == 25
    publish("v3", "{not json")
    assert isinstance(watcher.poll(), ConfigError)
    assert watcher.poll() is None  # nothing changed since the rejection


# -- signing, buckets, CLI -----------------------------------------------------------------


def test_sigv4_matches_the_published_s3_example() -> None:
    headers = sign_headers(
        "GET", "examplebucket.s3.amazonaws.com", "/test.txt", {},
        Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "us-east-1", dt.datetime(2013, 5, 24, tzinfo=dt.UTC), {"Range": "bytes=0-9"})
    assert headers["authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_bucket_parsing() -> None:
    assert parse_buckets(None, DEFAULT_PREDICTION_BUCKETS, "--b") == DEFAULT_PREDICTION_BUCKETS
    assert parse_buckets("-1, 0,1", (), "--b") == (-1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="--b: buckets must be distinct"):
        parse_buckets("1,0", (), "--b")
    with pytest.raises(ValueError, match="--b: expected comma-separated numbers"):
        parse_buckets("a,b", (), "--b")


def test_every_flag_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_name("--metrics-port") == "MODELOPS_METRICS_PORT"
    monkeypatch.setenv("MODELOPS_METRICS_PORT", "9999")
    monkeypatch.setenv("MODELOPS_ALLOW_UNSAFE_PICKLE", "true")
    monkeypatch.setenv("MODELOPS_NAME", "from-env")
    parser = EnvArgumentParser()
    parser.add_flag("--metrics-port", type=int, default=9090)
    parser.add_flag("--allow-unsafe-pickle", action="store_true")
    parser.add_flag("--name", required=True)
    args = parser.parse_args([])
    assert (args.metrics_port, args.allow_unsafe_pickle, args.name) == (9999, True, "from-env")
    assert parser.parse_args(["--name", "flag"]).name == "flag"  # a flag still wins


def test_a_missing_runtime_names_the_extra_to_install() -> None:
    from modelops_serving.runtimes import ModelLoadError, load_runtime, require

    with pytest.raises(ModelLoadError, match=r"pip install modelops\[onnx\]"):
        require("onnxruntime_that_is_not_installed", "onnx")
    with pytest.raises(ModelLoadError, match="--format 'tensorflow' is not one of sklearn"):
        load_runtime("tensorflow", Path("."))


def test_maturing_scores_release_at_the_prediction_age_and_drop_late_ones() -> None:
    now = [100.0]
    held = MaturingScores(60.0, clock=lambda: now[0])
    assert held.add(90.0, Score(correct=1))  # released at 150
    assert held.add(50.0, Score(incorrect=1))  # released at 110
    assert not held.add(30.0, Score(correct=1))  # 70 s old already: late
    assert held.release() == []
    now[0] = 120.0
    assert held.release() == [Score(incorrect=1)]
    now[0] = 150.0
    assert held.release() == [Score(correct=1)] and len(held) == 0
    with pytest.raises(ValueError):
        MaturingScores(0)
    store: FeedbackStore = FeedbackStore(capacity=2, ttl=10, clock=lambda: now[0])
    store.remember("a", [1], True)
    now[0] = 155.0
    found = store.take_dated("a")
    assert found is not None and found[1] == 150.0 and store.take_dated("a") is None
