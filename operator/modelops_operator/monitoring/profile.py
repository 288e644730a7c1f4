"""A model version's training profile: what its inputs, predictions and accuracy looked like on
a training or holdout table, in the form the sidecar counts and the monitors compare against.

``modelops profile TABLE --model DIR --format sklearn --label y -o profile.json`` writes it and
prints its digest; it ships beside the model as ``spec.model.profile: {uri, digest}``.

What it holds, per feature (at most :data:`MAX_FEATURES`, in the model's input order):

* numeric: bin edges at the table's quantiles (at most :data:`MAX_BINS` bins; ties merge bins),
  each bin's share of rows, the smallest and largest value seen (inputs outside are
  "out of range"), and the share of missing values;
* categorical (any column that is not all numbers): the most frequent categories (at most
  ``MAX_BINS - 1``) and their shares, everything else in one "other" bin.

Then the prediction distribution (class shares, or bins for a regression), the confidence
distribution (the largest class probability, when the model gives probabilities) and, when a
label column is given, the holdout's accuracy (classification) or mean absolute error, with
the number of rows each figure comes from: the monitors widen their null by the sampling error
of a profile built from few rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

API_VERSION = "modelops.io/v1alpha1"
KIND = "TrainingProfile"
#: Features the sidecar counts per model (and so a profile may hold): bounded series.
MAX_FEATURES = 50
#: Bins per feature (categorical: categories + "other").
MAX_BINS = 20
DEFAULT_BINS = 10
OTHER = "__other__"


class ProfileError(ValueError):
    """The table or the model cannot be profiled; the message says which column or value."""


def read_table(path: Path) -> dict[str, list[Any]]:
    """Columns of a CSV file (header row first) or a Parquet file, by name, in file order."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as parquet  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ProfileError("reading Parquet needs pyarrow: pip install pyarrow") from exc
        table = parquet.read_table(path)
        return {name: table.column(name).to_pylist() for name in table.column_names}
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ProfileError(f"{path}: the table is empty") from None
        columns: dict[str, list[Any]] = {name: [] for name in header}
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ProfileError(
                    f"{path}: line {line} has {len(row)} values, the header {len(header)}"
                )
            for name, value in zip(header, row, strict=True):
                columns[name].append(value)
    return columns


def _as_numbers(values: Sequence[Any]) -> np.ndarray | None:
    """Floats (NaN for empty or missing) when every present value is a number, else None."""
    out = np.empty(len(values))
    for i, value in enumerate(values):
        if value is None or value == "":
            out[i] = math.nan
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            return None
    return out


def numeric_feature(name: str, values: np.ndarray, bins: int) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    if present.size == 0:
        raise ProfileError(f"feature {name!r}: no values")
    inner = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
    # A bin is (edge[i-1], edge[i]]: the sidecar counts x into the first edge >= x.
    counts = np.bincount(np.searchsorted(inner, present, side="left"), minlength=inner.size + 1)
    return {
        "name": name,
        "type": "numeric",
        "edges": [float(e) for e in inner],
        "frequencies": [float(c) / present.size for c in counts],
        "min": float(present.min()),
        "max": float(present.max()),
        "missing": float(1 - present.size / values.size),
    }


def categorical_feature(name: str, values: Sequence[Any], bins: int) -> dict[str, Any]:
    texts = [str(v) for v in values if v is not None and v != ""]
    if not texts:
        raise ProfileError(f"feature {name!r}: no values")
    common = Counter(texts).most_common(bins - 1)
    kept = {category for category, _ in common}
    other = sum(1 for t in texts if t not in kept)
    return {
        "name": name,
        "type": "categorical",
        "categories": [category for category, _ in common],
        "frequencies": [count / len(texts) for _, count in common] + [other / len(texts)],
        "missing": float(1 - len(texts) / len(values)),
    }


def _distribution(values: np.ndarray, bins: int) -> dict[str, Any]:
    """Class shares when the values are few distinct ones, else quantile bins."""
    distinct = np.unique(values)
    if distinct.size <= MAX_BINS and np.all(np.equal(np.mod(distinct, 1), 0)):
        return {
            "type": "classification",
            "classes": [float(c) for c in distinct],
            "frequencies": [float(np.mean(values == c)) for c in distinct],
        }
    feature = numeric_feature("prediction", values.astype(float), bins)
    return {"type": "regression", "edges": feature["edges"], "frequencies": feature["frequencies"]}


def build_profile(
    columns: dict[str, list[Any]],
    *,
    label: str | None = None,
    features: Sequence[str] | None = None,
    predict: Any = None,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The profile document. ``predict(matrix) -> (predictions, probabilities or None)`` is the
    model, called once on the numeric feature matrix (rows by features, in order)."""
    if not 2 <= bins <= MAX_BINS:
        raise ProfileError(f"bins must be in [2, {MAX_BINS}]")
    if label is not None and label not in columns:
        raise ProfileError(f"label column {label!r} is not in the table")
    names = list(features) if features else [n for n in columns if n != label]
    missing = [n for n in names if n not in columns]
    if missing:
        raise ProfileError(f"feature columns not in the table: {', '.join(missing[:5])}")
    if not names:
        raise ProfileError("no feature columns")
    if len(names) > MAX_FEATURES:
        raise ProfileError(f"{len(names)} features; the sidecar counts at most {MAX_FEATURES}")
    rows = len(columns[names[0]])
    if rows < 2:
        raise ProfileError("the table needs at least two rows")
    profile: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "rows": rows,
        "features": [],
    }
    numeric: list[np.ndarray] = []
    for name in names:
        values = _as_numbers(columns[name])
        if values is None:
            profile["features"].append(categorical_feature(name, columns[name], bins))
        else:
            numeric.append(values)
            profile["features"].append(numeric_feature(name, values, bins))
    if predict is not None:
        if len(numeric) != len(names):
            raise ProfileError(
                "the model is given numeric features only; this table has text columns"
            )
        matrix = np.column_stack(numeric)
        complete = ~np.isnan(matrix).any(axis=1)
        predictions, probabilities = predict(matrix[complete])
        predictions = np.asarray(predictions, dtype=float).reshape(-1)
        profile["prediction"] = _distribution(predictions, bins)
        if probabilities is not None:
            confidence = np.max(np.asarray(probabilities, dtype=float), axis=1)
            quantiles = np.linspace(0, 1, bins + 1)
            profile["confidence"] = {
                "quantiles": [float(q) for q in np.quantile(confidence, quantiles)]
            }
        if label is not None:
            truth = _as_numbers(np.asarray(columns[label], dtype=object)[complete].tolist())
            if truth is None:
                raise ProfileError(f"label column {label!r}: every label must be a number")
            known = ~np.isnan(truth)
            if profile["prediction"]["type"] == "classification":
                value = float(np.mean(predictions[known] == truth[known]))
                profile["holdout"] = {
                    "metric": "accuracy",
                    "value": value,
                    "rows": int(known.sum()),
                }
            else:
                value = float(np.mean(np.abs(predictions[known] - truth[known])))
                profile["holdout"] = {
                    "metric": "meanAbsoluteError",
                    "value": value,
                    "rows": int(known.sum()),
                }
    return profile


def encode(profile: dict[str, Any]) -> bytes:
    """The profile's bytes as written (the digest is over these)."""
    return (json.dumps(profile, indent=1, sort_keys=True) + "\n").encode()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def model_predictor(model_format: str, path: Path, allow_unsafe_pickle: bool = False) -> Any:
    """``predict(matrix)`` for :func:`build_profile`, through the model server's own loader."""
    from modelops_serving.runtimes import load_runtime  # the serving package, same wheel

    runtime = load_runtime(model_format, path, allow_unsafe_pickle=allow_unsafe_pickle)
    names = {o.name for o in runtime.outputs}
    first_input = runtime.inputs[0].name

    def predict(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        wanted = ("predict", "predict_proba") if "predict_proba" in names else ()
        outputs = runtime.predict({first_input: matrix}, (first_input,), wanted)
        values = list(outputs.values())
        return values[0], outputs.get("predict_proba")

    return predict
