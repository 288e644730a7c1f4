"""The no-code prediction page: a form built from a model's V2 metadata, the V2 request built
from what was typed into it, and the answer as the page shows it.

The form is derived here, not in the browser, and the request is built here from the values
alone, so the dashboard never forwards a body the page made up: every value is checked
against the input's datatype before anything reaches the model.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

INTEGER_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
FLOAT_TYPES = {"FP16", "FP32", "FP64"}
MAX_FIELDS = 256  # a form wider than this is a tensor, not something to type in
MAX_VALUE_CHARS = 4096  # one typed value (a BYTES text, or a comma-separated list)
MAX_LIST_VALUES = 4096
MAX_OUTPUT_VALUES = 64  # values of one output shown; the rest is counted, not sent


class FormError(ValueError):
    """What was typed does not fit the model's inputs; the message names the field."""


def _dims(shape: Any) -> list[int] | None:
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        return None
    return shape


def _input_form(tensor: Mapping[str, Any]) -> dict[str, Any]:
    """One input's fields: `row` (one field per feature of a [-1, N] input), `scalar` (one
    value per row: [-1] or [-1, 1]), `list` (a [-1, -1] input: comma-separated numbers),
    `text` (BYTES), or `unsupported` with the reason."""
    name, datatype = str(tensor.get("name") or ""), str(tensor.get("datatype") or "")
    dims = _dims(tensor.get("shape"))
    form: dict[str, Any] = {"name": name, "datatype": datatype, "shape": dims, "fields": []}
    numeric = datatype in INTEGER_TYPES | FLOAT_TYPES | {"BOOL"}
    # A leading -1 (or a fixed 1) is the batch: the form sends one row.
    per_row = dims[1:] if dims and dims[0] in (-1, 1) else None
    if not name or per_row is None:
        return {**form, "kind": "unsupported", "reason": f"input {name!r}: shape {dims}"}
    if datatype == "BYTES" and per_row in ([], [1]):
        return {**form, "kind": "text", "fields": [name]}
    if not numeric:
        return {**form, "kind": "unsupported", "reason": f"input {name!r}: datatype {datatype}"}
    if per_row in ([], [1]):
        return {**form, "kind": "scalar", "fields": [name]}
    if len(per_row) == 1 and per_row[0] == -1:
        return {**form, "kind": "list", "fields": [f"{name} (comma-separated)"]}
    if len(per_row) == 1 and 0 < per_row[0] <= MAX_FIELDS:
        return {**form, "kind": "row", "fields": [f"{name}[{i}]" for i in range(per_row[0])]}
    return {**form, "kind": "unsupported", "reason": f"input {name!r}: shape {dims}"}


def prediction_form(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The form for a model's V2 metadata (`GET /v2/models/<name>`)."""
    inputs = [_input_form(t) for t in metadata.get("inputs") or () if isinstance(t, Mapping)]
    unsupported = [i["reason"] for i in inputs if i["kind"] == "unsupported"]
    fields = sum(len(i["fields"]) for i in inputs)
    reason = ""
    if not inputs:
        reason = "the model's metadata lists no inputs"
    elif unsupported:
        reason = "the form cannot take " + "; ".join(unsupported)
    elif fields > MAX_FIELDS:
        reason = f"{fields} fields are more than a form holds ({MAX_FIELDS})"
    outputs = [str(o.get("name")) for o in metadata.get("outputs") or ()
               if isinstance(o, Mapping) and o.get("name")]  # fmt: skip
    return {
        "model": str(metadata.get("name") or ""),
        "platform": str(metadata.get("platform") or ""),
        "versions": [str(v) for v in metadata.get("versions") or ()],
        "inputs": inputs,
        "outputs": outputs,
        "supported": not reason,
        "reason": reason,
    }


def _number(text: str, datatype: str, field: str) -> float | int | bool:
    text = text.strip()
    if datatype == "BOOL":
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise FormError(f"{field}: {text[:40]!r} is not true or false")
    try:
        value = float(text)
    except ValueError:
        raise FormError(f"{field}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise FormError(f"{field}: {text[:40]!r} is not a finite number")
    if datatype in INTEGER_TYPES:
        if not value.is_integer():
            raise FormError(f"{field}: {datatype} takes whole numbers, not {text[:40]!r}")
        if datatype.startswith("UINT") and value < 0:
            raise FormError(f"{field}: {datatype} takes no negative number")
        return int(value)
    return value


def _typed(values: Any, field: str, count: int) -> list[str]:
    if not isinstance(values, list) or len(values) != count:
        raise FormError(f"{field}: expected {count} value(s)")
    if not all(isinstance(v, str) and len(v) <= MAX_VALUE_CHARS for v in values):
        raise FormError(f"{field}: each value is a string of at most {MAX_VALUE_CHARS} characters")
    return values


def _tensor(form: Mapping[str, Any], values: Any) -> dict[str, Any]:
    name, datatype, kind = form["name"], form["datatype"], form["kind"]
    typed = _typed(values, name, len(form["fields"]))
    if kind == "text":
        data: list[Any] = [typed[0]]
    elif kind == "list":
        parts = [p for p in typed[0].replace(";", ",").split(",") if p.strip()]
        if not parts or len(parts) > MAX_LIST_VALUES:
            raise FormError(f"{name}: give 1 to {MAX_LIST_VALUES} comma-separated numbers")
        data = [_number(p, datatype, f"{name}[{i}]") for i, p in enumerate(parts)]
    else:
        data = [_number(v, datatype, label) for v, label in zip(typed, form["fields"], strict=True)]
    per_row = form["shape"][1:]
    shape = [1, len(data)] if kind in ("row", "list") else [1, *per_row]
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def infer_request(form: Mapping[str, Any], values: Any) -> dict[str, Any]:
    """The V2 request for one row: `values` maps each input's name to its typed strings (one
    per field). Every output the metadata lists is asked for, so a classifier shows its class
    probabilities beside the class."""
    if not form.get("supported"):
        raise FormError(form.get("reason") or "this model's inputs cannot be typed in a form")
    if not isinstance(values, Mapping):
        raise FormError("values: expected an object mapping each input to its values")
    unknown = set(values) - {i["name"] for i in form["inputs"]}
    if unknown:
        raise FormError(f"values: unknown input {sorted(unknown)[0][:80]!r}")
    missing = [i["name"] for i in form["inputs"] if i["name"] not in values]
    if missing:
        raise FormError(f"values: missing input {missing[0]!r}")
    request: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "inputs": [_tensor(i, values[i["name"]]) for i in form["inputs"]],
    }
    if form.get("outputs"):
        request["outputs"] = [{"name": name} for name in form["outputs"]]
    return request


def prediction_result(answer: Mapping[str, Any], latency_ms: float) -> dict[str, Any]:
    """The model's V2 answer as the page shows it: which version answered, the outputs (the
    first values of each) and the round trip's time through the API server."""
    outputs = []
    for output in answer.get("outputs") or ():
        if not isinstance(output, Mapping):
            continue
        data = output.get("data")
        data = data if isinstance(data, list) else []
        outputs.append({
            "name": str(output.get("name") or ""),
            "datatype": str(output.get("datatype") or ""),
            "shape": output.get("shape") if isinstance(output.get("shape"), list) else [],
            "data": data[:MAX_OUTPUT_VALUES],
            "more": max(len(data) - MAX_OUTPUT_VALUES, 0),
        })  # fmt: skip
    return {
        "modelName": str(answer.get("model_name") or ""),
        "modelVersion": str(answer.get("model_version") or ""),
        "id": str(answer.get("id") or ""),
        "outputs": outputs,
        "latencyMs": round(latency_ms, 1),
    }
