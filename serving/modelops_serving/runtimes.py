"""Model runtimes: turn a model file into something with ``predict(inputs) -> outputs``.

Each runtime imports its library lazily, so a missing optional runtime is reported as a clear
error naming the extra to install instead of an ImportError at start-up of every program.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import boosters
from .mlflow_model import read_mlflow_model
from .modelfiles import ModelLoadError, TensorSpec, find_model_file, require
from .v2protocol import DATATYPES, ProtocolError, datatype_of

FORMATS = ("sklearn", "onnx", "xgboost", "lightgbm", "mlflow", "custom")
SKOPS_SUFFIXES = (".skops",)
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
ONNX_SUFFIXES = (".onnx",)


class Runtime(Protocol):
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def predict(
        self, inputs: dict[str, np.ndarray], order: tuple[str, ...], wanted: tuple[str, ...]
    ) -> dict[str, np.ndarray]: ...


class SklearnRuntime:
    """A scikit-learn estimator; output ``predict`` by default, ``predict_proba`` on request."""

    def __init__(self, estimator: Any, platform: str = "sklearn",
                 inputs: tuple[TensorSpec, ...] = (), columns: tuple[str, ...] = ()):
        """``inputs`` and ``columns`` come from a signature saved with the model, if any."""
        self.estimator = estimator
        self.platform = platform
        # Boosters behind BoosterEstimator do not read scikit-learn's configuration.
        self.is_sklearn = type(estimator).__module__.startswith("sklearn.")
        self.allows_nan = _allows_nan(estimator)
        self.n_features = getattr(estimator, "n_features_in_", None)
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else list(columns)
        self.inputs: tuple[TensorSpec, ...] = inputs or (
            TensorSpec("input-0", "FP64", (-1, self.n_features or -1)),
        )
        outputs = [TensorSpec("predict", "FP64", (-1,))]
        if hasattr(estimator, "predict_proba"):
            outputs.append(TensorSpec("predict_proba", "FP64", (-1, -1)))
        self.outputs = tuple(outputs)

    @classmethod
    def load(
        cls, path: Path, allow_unsafe_pickle: bool, trusted: tuple[str, ...]
    ) -> SklearnRuntime:
        model_file = find_model_file(path, SKOPS_SUFFIXES + PICKLE_SUFFIXES)
        return cls(load_estimator(model_file, allow_unsafe_pickle, trusted))

    def _matrix(self, inputs: dict[str, np.ndarray], order: tuple[str, ...]) -> np.ndarray:
        if len(inputs) == 1:
            x = next(iter(inputs.values()))
            if x.ndim == 1:
                x = x.reshape(1, -1)
        else:
            # Several inputs are feature columns, in the model's own order when it knows names.
            names = self.feature_names if set(self.feature_names) == set(inputs) else list(order)
            columns = [inputs[n].reshape(inputs[n].shape[0], -1) if inputs[n].ndim else
                       inputs[n].reshape(1, 1) for n in names]
            rows = {c.shape[0] for c in columns}
            if len(rows) != 1:
                raise ProtocolError("inputs: every input column must have the same number of rows")
            x = np.hstack(columns)
        if x.ndim != 2:
            raise ProtocolError(
                f"inputs: expected a 2-D tensor [rows, features], got shape {list(x.shape)}"
            )
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise ProtocolError(
                f"inputs: the model expects {self.n_features} features per row, got {x.shape[1]}"
            )
        if x.dtype == object:
            raise ProtocolError("inputs: BYTES tensors are not accepted by this sklearn model")
        if not self.allows_nan and x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ProtocolError("inputs: NaN or infinite values are not accepted by this model")
        return x

    def predict(
        self, inputs: dict[str, np.ndarray], order: tuple[str, ...], wanted: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        x = self._matrix(inputs, order)
        if self.is_sklearn:
            _assume_finite_in_this_thread()
        results: dict[str, np.ndarray] = {}
        for name in wanted or ("predict",):
            if name == "predict":
                results[name] = np.asarray(self.estimator.predict(x))
            elif name == "predict_proba" and hasattr(self.estimator, "predict_proba"):
                results[name] = np.asarray(self.estimator.predict_proba(x))
            else:
                allowed = ", ".join(o.name for o in self.outputs)
                raise ProtocolError(f"outputs: unknown output '{name[:80]}'; allowed: {allowed}")
        return results


def load_estimator(
    model_file: Path, allow_unsafe_pickle: bool, trusted: tuple[str, ...],
    skops: bool | None = None,
) -> Any:
    """A scikit-learn-style estimator from a skops file, or from a pickle when allowed (the
    file's suffix says which unless ``skops`` does)."""
    if skops if skops is not None else model_file.suffix in SKOPS_SUFFIXES:
        sio = require("skops.io", "sklearn")
        untrusted = [t for t in sio.get_untrusted_types(file=model_file) if t not in trusted]
        if untrusted:
            raise ModelLoadError(
                f"{model_file.name} contains types skops does not trust by default: "
                f"{', '.join(untrusted)}; review them and pass --trusted-types to allow"
            )
        return sio.load(model_file, trusted=list(trusted) or None)
    if not allow_unsafe_pickle:
        raise ModelLoadError(
            f"refusing to load {model_file.name}: unpickling runs arbitrary code from the "
            "file. Save the model with skops (.skops) or pass --allow-unsafe-pickle if you "
            "trust its source"
        )
    joblib = require("joblib", "sklearn")
    return joblib.load(model_file)


def _allows_nan(estimator: Any) -> bool:
    """Whether the estimator handles missing values itself (then NaN must reach it)."""
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:
        return True  # unknown: let the estimator decide


_thread_state = threading.local()


def _assume_finite_in_this_thread() -> None:
    """The input is checked in ``_matrix``; skipping scikit-learn's own, slower finiteness scan
    roughly halves the cost of a one-row prediction. scikit-learn's config is per thread, and
    a context manager per call would cost more than it saves, so set it once per thread."""
    if not getattr(_thread_state, "assume_finite", False):
        import sklearn

        sklearn.set_config(assume_finite=True)
        _thread_state.assume_finite = True


_ONNX_TYPES = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(double)": ("FP64", np.float64),
    "tensor(float16)": ("FP16", np.float16),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(int16)": ("INT16", np.int16),
    "tensor(int8)": ("INT8", np.int8),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(bool)": ("BOOL", np.bool_),
    "tensor(string)": ("BYTES", object),
}


def _onnx_spec(node: Any) -> TensorSpec:
    datatype = _ONNX_TYPES.get(node.type, ("BYTES", object))[0]
    shape = tuple(d if isinstance(d, int) else -1 for d in (node.shape or []))
    return TensorSpec(node.name, datatype, shape)


class OnnxRuntime:
    """An ONNX graph run by onnxruntime on CPU; inputs are matched by name."""

    platform = "onnxruntime_onnx"

    def __init__(self, session: Any):
        self.session = session
        self._input_nodes = {node.name: node for node in session.get_inputs()}
        self.inputs = tuple(_onnx_spec(n) for n in session.get_inputs())
        self.outputs = tuple(_onnx_spec(n) for n in session.get_outputs())

    @classmethod
    def load(cls, path: Path, threads: int = 1) -> OnnxRuntime:
        ort = require("onnxruntime", "onnx")
        model_file = find_model_file(path, ONNX_SUFFIXES)
        options = ort.SessionOptions()
        # One intra-op thread: the server runs many small requests, not one big one.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot load {model_file.name}: {exc}") from exc
        return cls(session)

    def predict(
        self, inputs: dict[str, np.ndarray], order: tuple[str, ...], wanted: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        if len(inputs) == 1 and len(self._input_nodes) == 1:
            # A lone input may carry any name: clients rarely know the graph's input name.
            node = next(iter(self._input_nodes.values()))
            feeds[node.name] = self._cast(node, next(iter(inputs.values())))
        else:
            for name, node in self._input_nodes.items():
                if name not in inputs:
                    raise ProtocolError(f"inputs: missing input '{name}' required by the model")
                feeds[name] = self._cast(node, inputs[name])
        names = [o.name for o in self.outputs]
        for name in wanted:
            if name not in names:
                raise ProtocolError(
                    f"outputs: unknown output '{name[:80]}'; allowed: {', '.join(names)}"
                )
        try:
            values = self.session.run(list(wanted) or names, feeds)
        except Exception as exc:  # shape/type mismatches surface as onnxruntime errors
            raise ProtocolError(f"the model rejected the input: {str(exc)[:300]}") from exc
        return {n: _as_tensor(v) for n, v in zip(list(wanted) or names, values, strict=True)}

    @staticmethod
    def _cast(node: Any, array: np.ndarray) -> np.ndarray:
        datatype, dtype = _ONNX_TYPES.get(node.type, (None, None))
        if dtype is None or array.dtype == np.dtype(dtype):
            return array
        if (array.dtype == object) != (dtype is object):
            raise ProtocolError(
                f"inputs: '{node.name}' must be {datatype}, got {datatype_of(array)}"
            )
        return array.astype(dtype)


def _as_tensor(value: Any) -> np.ndarray:
    """onnxruntime returns a list of dicts for ZipMap outputs; make it a 2-D tensor."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = sorted(value[0])
        return np.asarray([[row[k] for k in keys] for row in value], dtype=np.float64)
    return np.asarray(value)


class CustomRuntime:
    """A user class with ``load(path)`` and ``predict(inputs: dict[str, ndarray])``."""

    platform = "custom"

    def __init__(self, model: Any):
        self.model = model
        self.inputs = tuple(getattr(model, "inputs", ()) or ())
        self.outputs = tuple(getattr(model, "outputs", ()) or ())

    @classmethod
    def load(cls, path: Path, class_path: str) -> CustomRuntime:
        if ":" not in class_path:
            raise ModelLoadError(
                f"--custom-class must look like 'module:Class', got '{class_path}'"
            )
        module_name, _, class_name = class_path.partition(":")
        # Code shipped next to the model artefacts is importable.
        directory = path if path.is_dir() else path.parent
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
        try:
            module = importlib.import_module(module_name)
            model_class = getattr(module, class_name)
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(f"cannot import custom model class {class_path}: {exc}") from exc
        model = model_class()
        for method in ("load", "predict"):
            if not callable(getattr(model, method, None)):
                raise ModelLoadError(f"custom model class {class_path} has no {method}() method")
        model.load(str(path))
        return cls(model)

    def predict(
        self, inputs: dict[str, np.ndarray], order: tuple[str, ...], wanted: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        result = self.model.predict(inputs)
        if not isinstance(result, dict):
            result = {"predict": result}
        outputs = {str(k): np.asarray(v) for k, v in result.items()}
        if wanted:
            missing = [w for w in wanted if w not in outputs]
            if missing:
                raise ProtocolError(f"outputs: unknown output '{missing[0][:80]}'")
            outputs = {w: outputs[w] for w in wanted}
        return outputs


def _load_mlflow(path: Path, allow_unsafe_pickle: bool, trusted: tuple[str, ...]) -> Runtime:
    model = read_mlflow_model(path)
    platform = f"mlflow_{model.flavor}"
    if model.flavor == "onnx":
        runtime = OnnxRuntime.load(model.artefact)
        runtime.platform = platform
        return runtime
    if model.serialization == "native":
        load = boosters.load_xgboost if model.flavor == "xgboost" else boosters.load_lightgbm
        estimator = load(model.artefact)
    else:
        skops = model.serialization == "skops"
        estimator = load_estimator(model.artefact, allow_unsafe_pickle, trusted, skops)
    return SklearnRuntime(estimator, platform, model.inputs, model.columns)


def load_runtime(
    model_format: str,
    path: Path,
    *,
    allow_unsafe_pickle: bool = False,
    trusted_types: tuple[str, ...] = (),
    custom_class: str | None = None,
) -> Runtime:
    if model_format == "sklearn":
        return SklearnRuntime.load(path, allow_unsafe_pickle, trusted_types)
    if model_format == "onnx":
        return OnnxRuntime.load(path)
    if model_format == "xgboost":
        model_file = find_model_file(path, boosters.XGBOOST_SUFFIXES)
        return SklearnRuntime(boosters.load_xgboost(model_file), "xgboost")
    if model_format == "lightgbm":
        model_file = find_model_file(path, boosters.LIGHTGBM_SUFFIXES)
        return SklearnRuntime(boosters.load_lightgbm(model_file), "lightgbm")
    if model_format == "mlflow":
        return _load_mlflow(path, allow_unsafe_pickle, trusted_types)
    if model_format == "custom":
        if not custom_class:
            raise ModelLoadError("the custom format needs --custom-class module:Class")
        return CustomRuntime.load(path, custom_class)
    raise ModelLoadError(f"--format '{model_format}' is not one of {', '.join(FORMATS)}")


__all__ = ["DATATYPES", "FORMATS", "ModelLoadError", "Runtime", "TensorSpec", "load_runtime"]
