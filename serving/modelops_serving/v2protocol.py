"""The Open Inference Protocol (KServe V2) REST tensors, as plain functions.

Requests are decoded into numpy arrays and results encoded back; every malformed request raises
``ProtocolError`` with a message naming the offending field and what is allowed, which the HTTP
layer turns into a 400 with the protocol's ``{"error": ...}`` body.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# V2 datatype -> numpy dtype. BYTES is carried as Python strings in an object array.
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
ALLOWED_DATATYPES = ", ".join(DATATYPES)
# A bound on elements per tensor, so a tiny body cannot claim a huge shape. It bounds each
# dimension too: numpy refuses ``[0, 2**62]`` (no elements, but a size beyond its index type).
MAX_ELEMENTS = 10_000_000
MAX_DIMENSIONS = 32
# Request ids are echoed as X-Request-Id and remembered by the sidecar, which takes up to 256.
MAX_ID_LENGTH = 256
# The binary tensor extension, which this server does not implement (its metadata lists none).
BINARY_SIZE_PARAMETER = "binary_data_size"


class ProtocolError(ValueError):
    """A request that does not follow the protocol; the message is safe to return to clients."""


@dataclass(frozen=True)
class InferenceRequest:
    id: str
    inputs: dict[str, np.ndarray]
    input_order: tuple[str, ...]
    requested_outputs: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)


def _field(obj: Mapping[str, Any], name: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise ProtocolError(f"{where}: missing required field '{name}'")
    value = obj[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        kinds = (kind,) if isinstance(kind, type) else kind
        expected = " or ".join(k.__name__ for k in kinds)
        raise ProtocolError(f"{where}.{name}: expected {expected}, got {type(value).__name__}")
    return value


def _flatten(data: Any, where: str) -> list[Any]:
    """Accept the protocol's flat row-major list and the nested lists many clients send."""
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        for item in data:
            if isinstance(item, list | dict):
                raise ProtocolError(f"{where}.data: ragged or non-scalar elements are not allowed")
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, list):
            if len(stack) > 32:
                raise ProtocolError(f"{where}.data: nesting deeper than 32 levels")
            stack.append(iter(item))
        elif isinstance(item, dict):
            raise ProtocolError(f"{where}.data: elements must be scalars, got an object")
        else:
            flat.append(item)
    return flat


def decode_tensor(tensor: Any, index: int) -> tuple[str, np.ndarray]:
    where = f"inputs[{index}]"
    if not isinstance(tensor, dict):
        raise ProtocolError(f"{where}: expected an object with name, shape, datatype and data")
    name = _field(tensor, "name", where, str)
    shape = _field(tensor, "shape", where, list)
    datatype = _field(tensor, "datatype", where, str)
    _refuse_binary_data(tensor.get("parameters"), where)
    if "data" not in tensor:
        raise ProtocolError(f"{where}: missing required field 'data'")
    if datatype not in DATATYPES:
        raise ProtocolError(
            f"{where}.datatype: '{datatype[:40]}' is not one of {ALLOWED_DATATYPES}"
        )
    _check_shape(shape, where)
    expected = math.prod(shape)
    if expected > MAX_ELEMENTS:
        raise ProtocolError(f"{where}.shape: {expected} elements exceed the limit {MAX_ELEMENTS}")
    flat = _flatten(tensor["data"], where)
    if len(flat) != expected:
        raise ProtocolError(
            f"{where}.data: has {len(flat)} elements but shape {shape} needs {expected}"
        )
    return name, _to_array(flat, datatype, shape, where)


def _check_shape(shape: list[Any], where: str) -> None:
    if len(shape) > MAX_DIMENSIONS:
        raise ProtocolError(f"{where}.shape: more than {MAX_DIMENSIONS} dimensions")
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ProtocolError(f"{where}.shape: dimensions must be non-negative integers")
        if dim > MAX_ELEMENTS:
            raise ProtocolError(
                f"{where}.shape: dimension {dim} exceeds the limit {MAX_ELEMENTS}"
            )


def _refuse_binary_data(parameters: Any, where: str) -> None:
    """A tensor whose bytes follow the JSON (binary extension) would otherwise be reported as
    missing its data, which sends the client looking in the wrong place."""
    if isinstance(parameters, dict) and BINARY_SIZE_PARAMETER in parameters:
        raise ProtocolError(
            f"{where}.parameters.{BINARY_SIZE_PARAMETER}: the binary tensor extension is not "
            "supported; send the tensor as JSON 'data'"
        )


def _to_array(flat: list[Any], datatype: str, shape: list[int], where: str) -> np.ndarray:
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(f"{where}.data: BYTES elements must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return _reshape(array, shape, where)
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise ProtocolError(f"{where}.data: BOOL elements must be true or false")
    else:
        for v in flat:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ProtocolError(f"{where}.data: {datatype} elements must be numbers")
        if datatype[0] in "UI" and not all(isinstance(v, int) for v in flat):
            raise ProtocolError(f"{where}.data: {datatype} elements must be integers")
    try:
        with np.errstate(over="raise", invalid="raise"):
            array = np.asarray(flat, dtype=DATATYPES[datatype])
    except (OverflowError, FloatingPointError, ValueError, TypeError) as exc:
        raise ProtocolError(f"{where}.data: values do not fit {datatype}") from exc
    if datatype[0] in "UI" and array.size:
        # numpy may wrap out-of-range integers silently on some versions; check the round trip.
        info = np.iinfo(array.dtype)
        if min(flat) < info.min or max(flat) > info.max:
            raise ProtocolError(f"{where}.data: values do not fit {datatype}")
    return _reshape(array, shape, where)


def _reshape(array: np.ndarray, shape: list[int], where: str) -> np.ndarray:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # an empty tensor whose other dimensions overflow numpy's index
        raise ProtocolError(f"{where}.shape: {shape} is too big for numpy ({exc})") from exc


def decode_request(body: Any, fallback_id: str | None = None) -> InferenceRequest:
    """Decode a parsed JSON request body into arrays, or raise ProtocolError."""
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object with an 'inputs' list")
    inputs = _field(body, "inputs", "request", list)
    if not inputs:
        raise ProtocolError("request.inputs: at least one input tensor is required")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("request.id: expected a string")
    if request_id:
        check_request_id(request_id, "request.id")
    else:
        check_request_id(fallback_id, "the X-Request-Id header")
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(inputs):
        name, array = decode_tensor(tensor, index)
        if name in arrays:
            raise ProtocolError(f"inputs[{index}].name: duplicate input '{name[:80]}'")
        arrays[name] = array
    requested: list[str] = []
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise ProtocolError("request.outputs: expected a list of {'name': ...} objects")
        for index, out in enumerate(outputs):
            requested.append(_field(out, "name", f"outputs[{index}]", str) if isinstance(
                out, dict) else _bad_output(index))
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("request.parameters: expected an object")
    return InferenceRequest(
        id=request_id or fallback_id or str(uuid.uuid4()),
        inputs=arrays,
        input_order=tuple(arrays),
        requested_outputs=tuple(requested),
        parameters=parameters,
    )


def check_request_id(request_id: str | None, where: str) -> None:
    """Ids are echoed as the X-Request-Id header: CR/LF would split it, text that is not UTF-8
    (a header's raw bytes) cannot be written back, and a very long one breaks proxies."""
    if not request_id:
        return
    if len(request_id) > MAX_ID_LENGTH:
        raise ProtocolError(f"{where}: longer than {MAX_ID_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in request_id):
        raise ProtocolError(f"{where}: must not contain control characters")
    try:
        request_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"{where}: must be UTF-8 text") from exc


def _bad_output(index: int) -> str:
    raise ProtocolError(f"outputs[{index}]: expected an object with a 'name'")


def datatype_of(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "OUS":
        return "BYTES"
    for name, dtype in DATATYPES.items():
        if dtype is not object and array.dtype == np.dtype(dtype):
            return name
    return "FP64"


def encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    datatype = datatype_of(array)
    data: list[Any]
    if datatype == "BYTES":
        data = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
    elif datatype == "FP64" and array.dtype != np.float64:
        data = array.astype(np.float64).ravel().tolist()
    else:
        data = array.ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def encode_response(
    model_name: str, model_version: str | None, request_id: str, outputs: dict[str, np.ndarray]
) -> dict[str, Any]:
    response: dict[str, Any] = {"model_name": model_name, "id": request_id}
    if model_version:
        response["model_version"] = model_version
    response["outputs"] = [encode_tensor(name, value) for name, value in outputs.items()]
    return response
