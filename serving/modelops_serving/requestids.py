"""Which id a prediction is remembered by, and how it goes back to the client."""

from __future__ import annotations

import re
import uuid
from typing import Any

from .httpkit import JSONDecodeError, loads

UNPARSED: Any = object()  # a response body not read yet (see ``Sidecar.account``)
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_REQUEST_ID_LINE = re.compile(rb"\r\nx-request-id[ \t]*:[^\r\n]*", re.IGNORECASE)


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


def with_request_id(lines: list[bytes], request_id: str) -> list[bytes]:
    """Response header lines with ours as the only X-Request-Id."""
    kept = [line for line in lines if line[:13].lower() != b"x-request-id:"]
    kept.append(b"X-Request-Id: " + header_value(request_id))
    return kept


def replace_request_id(head: bytes, request_id: str) -> bytes:
    """A response head (status line and headers, no final blank line) with ours as the
    only X-Request-Id."""
    return b"%s\r\nX-Request-Id: %s" % (_REQUEST_ID_LINE.sub(b"", head),
                                        header_value(request_id))
