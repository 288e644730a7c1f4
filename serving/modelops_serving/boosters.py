"""Gradient-boosted trees in their native formats: XGBoost (.ubj, .json) and LightGBM (.txt).

A native model file holds a Booster, not the scikit-learn wrapper it may have been trained
with, so :class:`BoosterEstimator` gives it the wrapper's face (``predict`` and, for
classifiers, ``predict_proba``) and the model is then served like any scikit-learn estimator.
The objective stored in the file says what ``predict`` means: the class index for a
classifier (as XGBoost's and LightGBM's wrappers return it when classes are 0..k-1), the value
for a regressor. Loading a native file runs no code from it, so neither format needs
``--allow-unsafe-pickle``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .modelfiles import ModelLoadError, require

XGBOOST_SUFFIXES = (".ubj", ".json")
LIGHTGBM_SUFFIXES = (".txt", ".lgb", ".model")


class BoosterEstimator:
    """A Booster behind the scikit-learn estimator interface that SklearnRuntime serves."""

    def __init__(
        self,
        raw_predict: Callable[[np.ndarray], np.ndarray],
        n_features: int,
        classes: int,
        feature_names: list[str] | None = None,
    ):
        """``raw_predict`` returns probabilities (classifiers: ``classes`` >= 2) or values."""
        self._raw_predict = raw_predict
        self.n_features_in_ = n_features
        self.classes = classes
        if feature_names:
            self.feature_names_in_ = np.asarray(feature_names, dtype=object)
        if classes >= 2:
            self.predict_proba = self._predict_proba

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        raw = np.asarray(self._raw_predict(x), dtype=np.float64)
        if raw.ndim == 1:  # binary: the probability of class 1
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.classes >= 2:
            return np.argmax(self._predict_proba(x), axis=1)
        return np.asarray(self._raw_predict(x))


def _xgboost_classes(objective: str, config: dict[str, Any]) -> int:
    if objective in ("binary:logistic", "binary:hinge"):
        return 2
    if objective == "multi:softprob":
        return int(config["learner"]["learner_model_param"]["num_class"])
    return 0  # regression, ranking, multi:softmax (already a class), raw margins: as given


def load_xgboost(model_file: Path) -> BoosterEstimator:
    xgb = require("xgboost", "xgboost")
    try:
        booster = xgb.Booster(model_file=str(model_file))
        config = json.loads(booster.save_config())
    except Exception as exc:  # xgboost raises XGBoostError for any unreadable file
        raise ModelLoadError(f"xgboost cannot load {model_file.name}: {exc}") from exc
    # One thread per prediction: the server answers many small requests, not one big one.
    booster.set_param({"nthread": 1})
    objective = str(config["learner"]["objective"]["name"])
    classes = _xgboost_classes(objective, config)

    def raw_predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(booster.inplace_predict(x, validate_features=False))

    return BoosterEstimator(raw_predict, booster.num_features(), classes,
                            booster.feature_names)


def _lightgbm_classes(objective: str, num_class: int) -> int:
    kind = objective.split()[0] if objective else ""
    if kind in ("binary", "cross_entropy", "xentropy"):
        return 2
    if kind in ("multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"):
        return num_class
    return 0


def load_lightgbm(model_file: Path) -> BoosterEstimator:
    lgb = require("lightgbm", "lightgbm")
    try:
        booster = lgb.Booster(model_file=str(model_file))
    except Exception as exc:  # lightgbm raises LightGBMError for any unreadable file
        raise ModelLoadError(f"lightgbm cannot load {model_file.name}: {exc}") from exc
    dump = booster.dump_model(num_iteration=0)
    classes = _lightgbm_classes(str(dump.get("objective", "")), int(dump.get("num_class", 1)))

    def raw_predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(x, num_threads=1, validate_features=False))

    names = [n for n in booster.feature_name() if not n.startswith("Column_")]
    return BoosterEstimator(raw_predict, booster.num_feature(), classes, names or None)
