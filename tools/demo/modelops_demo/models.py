"""Three deterministic classifiers for one synthetic task, and the request stream they answer.

The task: six standard-normal features; the label is 1 when a fixed linear score plus noise is
positive. The three models are the same estimator (logistic regression) trained on the same rows
with different feature columns zeroed out, so each accepts all six features (the server checks
the width) while using only some of them; the coefficient of a constant-zero training column is
exactly zero, so the model ignores that feature at serving time:

* ``champion`` was trained without the strongest feature: mediocre (~75% accuracy).
* ``better`` uses every feature: ~93%.
* ``worse`` sees only the weak features, as after a feature-pipeline bug: ~55%.

``build_miscalibrated_model`` adds one on demand: the champion with its decision threshold moved
until it is a given number of points less accurate (an e2e test needs one 5 points worse).

Labels are ``int64``, so ``predict`` returns integers, the server encodes them as ``INT64`` and
the sidecar (``--task auto``) scores feedback as classification: send the true label as a JSON
integer (0 or 1).
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

# Weights of the true score; the last two features carry no signal at all.
TRUE_WEIGHTS = np.array([2.0, 1.9, 0.5, 0.5, 0.0, 0.0])
NOISE_SCALE = 0.6
N_FEATURES = len(TRUE_WEIGHTS)
TRAIN_ROWS = 4_000
HOLDOUT_ROWS = 20_000
TRAIN_SEED = 20240501
HOLDOUT_SEED = 20240502
# The stream draws from the holdout distribution but not the holdout rows themselves.
STREAM_SEED = 20240503

# The world after the demo's drift: a pattern none of the models has seen (a new fraud scheme).
# Feature 4, silent so far, moves up by one standard deviation and starts to decide the label
# as strongly as the best feature did; a model that ignores it loses about 20 points.
DRIFTED_SHIFT = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
DRIFTED_WEIGHTS = np.array([2.0, 1.9, 0.5, 0.5, 2.5, 0.0])

# name -> (version, feature columns the model was allowed to learn from)
MODEL_PLAN: dict[str, tuple[str, tuple[int, ...]]] = {
    "champion": ("1.0.0", (1, 2, 3)),
    "better": ("1.1.0", (0, 1, 2, 3, 4, 5)),
    "worse": ("1.2.0", (3, 4, 5)),
}


@dataclass(frozen=True)
class DemoModel:
    name: str  # role in the demo: champion, better, worse
    version: str
    path: Path  # the .skops file
    digest: str  # "sha256:<hex>" of the file, for spec.model.digest
    accuracy: float  # measured on the fixed holdout set
    profile: Path | None = None  # its training profile (`modelops profile`), for monitoring
    profile_digest: str = ""


def draw_rows(count: int, seed: int, *, drifted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``count`` rows of features (float64) and true labels (int64) from the task, or from
    the world after the drift (``drifted``)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, N_FEATURES))
    weights = TRUE_WEIGHTS
    if drifted:
        features += DRIFTED_SHIFT
        weights = DRIFTED_WEIGHTS
    score = features @ weights + rng.normal(scale=NOISE_SCALE, size=count)
    return features, (score > 0).astype(np.int64)


def _train(columns: tuple[int, ...], features: np.ndarray, labels: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    visible = np.zeros_like(features)
    visible[:, columns] = features[:, columns]
    # lbfgs on a fixed dataset is deterministic; no random_state is involved.
    return LogisticRegression(max_iter=200).fit(visible, labels)


# skops names array members and "__id__" fields after Python object ids, and stamps the zip
# entries with the current time, so two dumps of one model differ byte for byte.
_OBJECT_ID = re.compile(r'("__id__": |"file": ")(\d+)')
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def canonical_skops_bytes(data: bytes) -> bytes:
    """The same model file with object ids renumbered in order and fixed timestamps.

    The digest in a manifest is then reproducible: one training run, one digest, on every
    machine. Renumbering keeps the references intact (one mapping for ids and file names)."""
    renumbered: dict[str, str] = {}

    def stable(number: str) -> str:
        return renumbered.setdefault(number, str(len(renumbered) + 1))

    source = zipfile.ZipFile(io.BytesIO(data))
    schema = source.read("schema.json").decode()
    schema = _OBJECT_ID.sub(lambda m: m.group(1) + stable(m.group(2)), schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            name = info.filename
            content = schema.encode() if name == "schema.json" else source.read(name)
            if name.endswith(".npy"):
                name = stable(name.removesuffix(".npy")) + ".npy"
            target.writestr(zipfile.ZipInfo(name, _FIXED_ZIP_TIME), content)
    return out.getvalue()


def file_digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def build_demo_models(directory: Path) -> dict[str, DemoModel]:
    """Train, measure and write ``champion``, ``better`` and ``worse`` as .skops files.

    Each model gets its own subdirectory (``<directory>/<name>/model.skops``). Point
    ``spec.model.uri`` at the file itself (``path.as_uri()``): with ``--digest`` the server
    verifies one file and refuses a directory.
    """
    features, labels = draw_rows(TRAIN_ROWS, TRAIN_SEED)
    holdout = draw_rows(HOLDOUT_ROWS, HOLDOUT_SEED)
    models: dict[str, DemoModel] = {}
    for name, (version, columns) in MODEL_PLAN.items():
        estimator = _train(columns, features, labels)
        models[name] = _write(directory, name, version, estimator, _accuracy(estimator, holdout))
    return models


def build_miscalibrated_model(
    directory: Path, drop: float, *, base: str = "champion", version: str = "1.3.0"
) -> DemoModel:
    """``base`` with its decision threshold moved until it is ``drop`` less accurate on the
    holdout set, as after a recalibration on a skewed sample (it answers 1 too often).

    For a challenger a few points worse than the champion, which no subset of the features
    gives: the champion's subsets step from ~74% to ~72% and then to ~58%. Written like the
    others, to ``<directory>/miscalibrated/model.skops``.
    """
    features, labels = draw_rows(TRAIN_ROWS, TRAIN_SEED)
    holdout = draw_rows(HOLDOUT_ROWS, HOLDOUT_SEED)
    estimator = _train(MODEL_PLAN[base][1], features, labels)
    wanted = _accuracy(estimator, holdout) - drop
    intercept = estimator.intercept_.copy()
    # Raising the intercept from the fitted one only loses accuracy: bisect for `wanted`.
    low, high = 0.0, 10.0
    for _ in range(40):
        estimator.intercept_ = intercept + (low + high) / 2
        if _accuracy(estimator, holdout) > wanted:
            low = (low + high) / 2
        else:
            high = (low + high) / 2
    estimator.intercept_ = intercept + high
    accuracy = _accuracy(estimator, holdout)
    return _write(directory, "miscalibrated", version, estimator, accuracy)


def feature_columns(features: np.ndarray, labels: np.ndarray | None = None) -> dict[str, list[Any]]:
    """A table as ``modelops profile`` reads it: x0..x5 (and ``label``)."""
    columns: dict[str, list[Any]] = {f"x{i}": features[:, i].tolist()
                                     for i in range(features.shape[1])}
    if labels is not None:
        columns["label"] = labels.tolist()
    return columns


def write_profile(model: DemoModel, columns: dict[str, list[Any]]) -> DemoModel:
    """``model`` with its training profile written beside it (``profile.json``), built from
    ``columns`` (with a ``label`` column: the holdout accuracy) as `modelops profile` does."""
    from modelops_operator.monitoring.profile import build_profile, digest, encode, model_predictor

    profile = encode(build_profile(columns, label="label",
                                   predict=model_predictor("sklearn", model.path)))
    path = model.path.parent / "profile.json"
    path.write_bytes(profile)
    return replace(model, profile=path, profile_digest=digest(profile))


def _accuracy(estimator: Any, holdout: tuple[np.ndarray, np.ndarray]) -> float:
    features, labels = holdout
    return float(np.mean(estimator.predict(features) == labels))


def _write(directory: Path, name: str, version: str, estimator: Any, accuracy: float) -> DemoModel:
    import skops.io as sio

    path = Path(directory) / name / "model.skops"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(canonical_skops_bytes(sio.dumps(estimator)))
    return DemoModel(name, version, path, file_digest(path), accuracy)


class DriftingStream:
    """The demo's stream until ``drifted`` is set, then rows of the world after the drift
    (:data:`DRIFTED_WEIGHTS`), of which the last ``keep`` (with their labels) stay for a
    retraining: the fresh data a pipeline would pull from its feature store."""

    def __init__(self, seed: int = STREAM_SEED, keep: int = 6_000) -> None:
        self.healthy = DemoStream(seed)
        self.drifted = False
        self._seed = np.random.SeedSequence(seed + 1)
        self._rows: list[tuple[list[float], int]] = []
        self.recent: deque[tuple[list[float], int]] = deque(maxlen=keep)

    def __iter__(self) -> Iterator[tuple[list[float], int]]:
        return self

    def __next__(self) -> tuple[list[float], int]:
        if not self.drifted:
            return next(self.healthy)
        if not self._rows:
            (child,) = self._seed.spawn(1)
            features, labels = draw_rows(1024, int(child.generate_state(1)[0]), drifted=True)
            self._rows = list(zip(features.tolist(), labels.tolist(), strict=True))[::-1]
        row = self._rows.pop()
        self.recent.append(row)
        return row

    def take(self, count: int) -> list[tuple[list[float], int]]:
        return [next(self) for _ in range(count)]

    def recent_csv(self) -> str:
        """The kept drifted rows as CSV (x0..x5, label), oldest first."""
        lines = [",".join([*(f"x{i}" for i in range(N_FEATURES)), "label"])]
        lines += [",".join([*(repr(v) for v in row), str(label)]) for row, label in self.recent]
        return "\n".join(lines) + "\n"


class DemoStream:
    """An endless, deterministic stream of ``(features row, true label)`` for the load generator.

    Rows come from the same distribution as the holdout set (another seed), in batches so that
    drawing one row costs next to nothing. Two streams with the same seed yield the same rows.
    """

    def __init__(self, seed: int = STREAM_SEED, batch_size: int = 1024):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._rng_seed = np.random.SeedSequence(seed)
        self._batch_size = batch_size
        self._features: list[list[float]] = []
        self._labels: list[int] = []
        self._next = 0

    def _refill(self) -> None:
        # One child seed per batch keeps the stream reproducible however far it is read.
        (child,) = self._rng_seed.spawn(1)
        features, labels = draw_rows(self._batch_size, int(child.generate_state(1)[0]))
        self._features = features.tolist()
        self._labels = labels.tolist()
        self._next = 0

    def __iter__(self) -> Iterator[tuple[list[float], int]]:
        return self

    def __next__(self) -> tuple[list[float], int]:
        if self._next >= len(self._labels):
            self._refill()
        row, label = self._features[self._next], self._labels[self._next]
        self._next += 1
        return row, label

    def take(self, count: int) -> list[tuple[list[float], int]]:
        return [next(self) for _ in range(count)]
