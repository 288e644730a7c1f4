"""Which id a prediction is remembered by, and how it goes back to the client."""

from __future__ import annotations

import re
import uuid
from typing import Any

from .httpkit import JSONDecodeError, loads
from .servedby import without_served_by

UNPARSED: Any = object()  # a response body not read yet (see ``Sidecar.account``)
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# The lines the sidecar writes itself (an upstream's own are dropped).
_OUR_LINES = re.compile(rb"\r\n(?:x-request-id|x-modelops-served-by)[ \t]*:[^\r\n]*",
                        re.IGNORECASE)


def parse_response(body: bytes) -> Any:
    """The JSON of a model server's answer, or None when it is not JSON."""
    try:
        return loads(body)
    except (JSONDecodeError, ValueError):
        return None


def response_key(request_id: str | None, response: Any) -> str:
    """The id feedback names: the client's X-Request-Id, else the response's id, else new."""
    if request_id:
        return request_id
    response_id = response.get("id") if isinstance(response, dict) else None
    return response_id if isinstance(response_id, str) and response_id else str(uuid.uuid4())


def header_value(request_id: str) -> bytes:
    """The X-Request-Id value; control characters (CR/LF injection) become spaces."""
    return _CONTROL.sub(b" ", request_id.encode("utf-8", "surrogateescape"))


def with_request_id(lines: list[bytes], request_id: str, served_by: bytes = b"") -> list[bytes]:
    """Response header lines with ours as the only X-Request-Id and X-Modelops-Served-By
    (``served_by``: the connection's ``"\r\nX-Modelops-Served-By: …"`` line, or b"")."""
    kept = [line for line in without_served_by(lines) if line[:13].lower() != b"x-request-id:"]
    kept.append(b"X-Request-Id: " + header_value(request_id))
    if served_by:
        kept.append(served_by[2:])
    return kept


def replace_request_id(head: bytes, request_id: str, served_by: bytes = b"") -> bytes:
    """A response head (status line and headers, no final blank line) with ours as the
    only X-Request-Id and X-Modelops-Served-By (``served_by`` as for ``with_request_id``)."""
    return b"%s\r\nX-Request-Id: %s%s" % (_OUR_LINES.sub(b"", head), header_value(request_id),
                                          served_by)
