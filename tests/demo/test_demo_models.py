"""The demo's models: reproducible files, accuracies in the intended order, served as classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelops_demo.models import (
    DemoStream,
    DriftingStream,
    build_demo_models,
    build_miscalibrated_model,
    draw_rows,
    feature_columns,
    file_digest,
    write_profile,
)
from modelops_serving.runtimes import SklearnRuntime
from modelops_serving.v2protocol import encode_tensor


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    return build_demo_models(tmp_path_factory.mktemp("models"))


def test_three_models_with_versions_digests_and_ordered_accuracy(models):
    assert list(models) == ["champion", "better", "worse"]
    assert [m.version for m in models.values()] == ["1.0.0", "1.1.0", "1.2.0"]
    for model in models.values():
        assert model.path.suffix == ".skops" and model.path.is_file()
        assert model.digest == file_digest(model.path)
        assert model.digest.startswith("sha256:") and len(model.digest) == 7 + 64
    assert models["better"].accuracy > 0.9
    assert 0.7 < models["champion"].accuracy < 0.8
    assert 0.5 < models["worse"].accuracy < 0.6


def test_building_again_gives_the_same_bytes(models, tmp_path: Path):
    again = build_demo_models(tmp_path)
    assert {n: m.digest for n, m in again.items()} == {n: m.digest for n, m in models.items()}


def test_served_predictions_are_integer_classes_ordered_on_the_stream(models):
    rows = DemoStream().take(3000)
    features = np.array([row for row, _ in rows])
    labels = np.array([label for _, label in rows])
    accuracy = {}
    for name, model in models.items():
        # Loaded the way modelops-serve loads it: skops, no extra trusted types.
        runtime = SklearnRuntime.load(model.path.parent, allow_unsafe_pickle=False, trusted=())
        predicted = runtime.predict({"input-0": features}, ("input-0",), ())["predict"]
        # INT64 outputs are what the sidecar scores as classes against integer feedback.
        assert encode_tensor("predict", predicted)["datatype"] == "INT64"
        accuracy[name] = float(np.mean(predicted == labels))
        assert accuracy[name] == pytest.approx(model.accuracy, abs=0.03)
    assert accuracy["better"] - accuracy["champion"] > 0.1
    assert accuracy["champion"] - accuracy["worse"] > 0.1


def test_a_miscalibrated_champion_is_five_points_worse_served_as_well(models, tmp_path: Path):
    worse = build_miscalibrated_model(tmp_path, 0.05)
    assert (worse.name, worse.version) == ("miscalibrated", "1.3.0")
    assert worse.digest == file_digest(worse.path)
    assert models["champion"].accuracy - worse.accuracy == pytest.approx(0.05, abs=0.001)
    assert build_miscalibrated_model(tmp_path / "again", 0.05).digest == worse.digest
    rows = DemoStream().take(5000)
    features = np.array([row for row, _ in rows])
    labels = np.array([label for _, label in rows])
    served = {}
    for model in (models["champion"], worse):
        runtime = SklearnRuntime.load(model.path.parent, allow_unsafe_pickle=False, trusted=())
        predicted = runtime.predict({"input-0": features}, ("input-0",), ())["predict"]
        served[model.name] = float(np.mean(predicted == labels))
    assert served["champion"] - served["miscalibrated"] == pytest.approx(0.05, abs=0.02)


def test_stream_is_deterministic_and_endless():
    first, second = DemoStream(seed=3, batch_size=16), DemoStream(seed=3, batch_size=16)
    a, b = first.take(50), second.take(50)  # crosses several batches
    assert a == b
    assert a != DemoStream(seed=4, batch_size=16).take(50)
    row, label = a[0]
    assert len(row) == 6 and all(type(v) is float for v in row)
    assert type(label) is int and label in (0, 1)
    assert 0.35 < np.mean([label for _, label in first.take(2000)]) < 0.65


def test_after_the_drift_the_best_model_decays_and_retraining_on_fresh_rows_restores_it(
        models, tmp_path: Path):
    """The demo's drift act in numbers: the promoted model loses accuracy on the drifted
    world, and the retraining Job's own program, on 3,000 fresh rows, wins it back."""
    from modelops_demo import retrain_job

    stream = DriftingStream(keep=3_000)
    healthy = stream.take(5)
    assert healthy == DemoStream().take(5)
    stream.drifted = True
    rows = stream.take(3_000)
    features = np.array([row for row, _ in rows])
    labels = np.array([label for _, label in rows])
    assert abs(features[:, 4].mean() - 1.0) < 0.1  # x4 moved one standard deviation
    better = SklearnRuntime.load(models["better"].path.parent, allow_unsafe_pickle=False,
                                 trusted=())
    decayed = float(np.mean(better.estimator.predict(features) == labels))
    assert decayed < models["better"].accuracy - 0.1
    names, table, truth = retrain_job.read_table(stream.recent_csv().encode())
    assert names == [f"x{i}" for i in range(6)] and len(truth) == 3_000
    assert np.allclose(table, features) and (truth == labels).all()
    model, accuracy, split = retrain_job.train(table, truth)
    assert model.coef_[0][4] > 1.0  # it learnt the new pattern
    assert split == 2_400 and accuracy > decayed + 0.1
    holdout = retrain_job.holdout_csv(names, table[split:], truth[split:])
    assert retrain_job.read_table(holdout)[1].shape == (600, 6)


def test_a_profile_is_written_beside_the_model(models):
    columns = feature_columns(*draw_rows(2_000, 7))
    profiled = write_profile(models["champion"], columns)
    assert profiled.profile == models["champion"].path.parent / "profile.json"
    assert profiled.profile_digest == file_digest(profiled.profile)
    profile = json.loads(profiled.profile.read_text())
    assert [f["name"] for f in profile["features"]] == [f"x{i}" for i in range(6)]
    assert profile["holdout"]["metric"] == "accuracy"
    assert abs(profile["holdout"]["value"] - models["champion"].accuracy) < 0.03
