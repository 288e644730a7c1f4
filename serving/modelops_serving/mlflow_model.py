"""MLflow model directories (an ``MLmodel`` file beside the artefacts), read without MLflow.

MLflow's own loader imports the flavor's module and, for many flavors, unpickles. We read the
``MLmodel`` file instead and serve the flavors whose artefact we can load ourselves: ``onnx``,
``xgboost`` and ``lightgbm`` in their native formats, and ``sklearn`` (and sklearn-wrapped
LightGBM) saved with skops, or with pickle when the user allows unsafe pickle. A model that only
has a ``python_function`` flavor with Python code (``python_model.pkl``, a ``loader_module`` of
its own) needs MLflow itself: the error says to serve it with MLServer's MLflow runtime.

The signature, when the model has one, becomes the server's input metadata: the tensor or the
columns (in the model's order) a client must send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .modelfiles import ModelLoadError, TensorSpec

MLMODEL = "MLmodel"
# The flavors we load, in the order we prefer them when a model has several.
SERVED_FLAVORS = ("onnx", "xgboost", "lightgbm", "sklearn")
NATIVE_SUFFIXES = {"xgboost": (".ubj", ".json", ".xgb", ".bst"), "lightgbm": (".lgb", ".txt")}
# MLflow's schema types (column-based signatures) and numpy dtypes (tensor-based ones).
_DATATYPES = {
    "double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32", "boolean": "BOOL",
    "string": "BYTES", "binary": "BYTES", "float64": "FP64", "float32": "FP32",
    "float16": "FP16", "int64": "INT64", "int32": "INT32", "int16": "INT16", "int8": "INT8",
    "uint8": "UINT8", "bool": "BOOL", "str": "BYTES", "object": "BYTES",
}


@dataclass(frozen=True)
class MlflowModel:
    """What to load from an MLflow model directory, and how."""

    flavor: str  # one of SERVED_FLAVORS
    artefact: Path
    serialization: str  # native, skops, pickle or cloudpickle
    inputs: tuple[TensorSpec, ...]  # empty without a signature
    columns: tuple[str, ...]  # a column-based signature's names, in the model's order


def read_mlflow_model(path: Path) -> MlflowModel:
    directory = path.parent if path.name == MLMODEL else path
    mlmodel = directory / MLMODEL
    if not mlmodel.is_file():
        raise ModelLoadError(
            f"{directory} is not an MLflow model directory: it has no {MLMODEL} file"
        )
    try:
        document = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{MLMODEL} is not valid YAML: {str(exc)[:200]}") from exc
    flavors = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavors, dict) or not flavors:
        raise ModelLoadError(f"{MLMODEL} lists no flavors")
    flavor = next((f for f in SERVED_FLAVORS if isinstance(flavors.get(f), dict)), None)
    if flavor is None:
        raise ModelLoadError(
            f"the MLflow model's flavors are {', '.join(sorted(flavors))}; modelops-serve loads "
            f"{', '.join(SERVED_FLAVORS)}. Serve a python_function model with its own code "
            "through MLServer's MLflow runtime (spec.runtime.server: mlserver)"
        )
    settings = flavors[flavor]
    artefact = _artefact(directory, flavor, settings)
    inputs, columns = _signature_inputs(document.get("signature"))
    return MlflowModel(flavor, artefact, _serialization(flavor, settings, artefact), inputs,
                       columns)


def _artefact(directory: Path, flavor: str, settings: dict[str, Any]) -> Path:
    key = "pickled_model" if flavor == "sklearn" else "data"
    name = settings.get(key)
    if not isinstance(name, str) or not name:
        raise ModelLoadError(f"{MLMODEL}: flavors.{flavor}.{key} is missing")
    artefact = (directory / name).resolve()
    # The name comes from the file: it must not lead out of the model directory.
    if directory.resolve() not in artefact.parents or not artefact.is_file():
        raise ModelLoadError(
            f"{MLMODEL}: flavors.{flavor}.{key} '{name[:100]}' is not a file in the model "
            "directory"
        )
    return artefact


def _serialization(flavor: str, settings: dict[str, Any], artefact: Path) -> str:
    if flavor == "onnx":
        return "native"
    if flavor in NATIVE_SUFFIXES and artefact.suffix in NATIVE_SUFFIXES[flavor]:
        return "native"
    declared = str(settings.get("serialization_format") or "cloudpickle")
    if declared not in ("skops", "pickle", "cloudpickle"):
        raise ModelLoadError(
            f"{MLMODEL}: flavors.{flavor}.serialization_format '{declared[:40]}' is not one of "
            "skops, pickle, cloudpickle"
        )
    return declared


def _signature_inputs(signature: Any) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
    if not isinstance(signature, dict) or not signature.get("inputs"):
        return (), ()
    try:
        schema = json.loads(signature["inputs"])
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{MLMODEL}: signature.inputs is not JSON") from exc
    if not isinstance(schema, list):
        raise ModelLoadError(f"{MLMODEL}: signature.inputs is not a list")
    specs, columns = [], []
    for index, item in enumerate(schema):
        if not isinstance(item, dict):
            raise ModelLoadError(f"{MLMODEL}: signature.inputs[{index}] is not an object")
        if item.get("type") == "tensor":
            spec = item.get("tensor-spec") or {}
            shape = tuple(int(d) for d in spec.get("shape") or (-1,))
            name = str(item.get("name") or f"input-{index}")
            specs.append(TensorSpec(name, _DATATYPES.get(str(spec.get("dtype")), "BYTES"), shape))
        else:
            name = str(item.get("name") or index)
            columns.append(name)
            specs.append(TensorSpec(name, _DATATYPES.get(str(item.get("type")), "BYTES"), (-1,)))
    return tuple(specs), tuple(columns)
