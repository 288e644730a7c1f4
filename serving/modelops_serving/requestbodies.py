"""Request bodies as the model server takes them: bounded before and after decompression.

aiohttp's own decompression is switched off for the model server (``auto_decompress=False``):
it inflates a body to the end even after the handler stopped reading (to keep the connection),
so a gzip bomb of one megabyte costs a gigabyte of inflating. Here a gzip or deflate body is
inflated in steps of at most what is left of the limit, and refused as soon as its output
passes the limit, so the work done is bounded by the limit, not by the bomb.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from aiohttp import web

# wbits for zlib: a gzip member, a zlib stream (HTTP's "deflate"), a raw deflate stream (what
# some clients send as "deflate" all the same).
GZIP, ZLIB, RAW_DEFLATE = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS
CODINGS = {"gzip": GZIP, "x-gzip": GZIP, "deflate": ZLIB}
# Header of the binary tensor extension: the JSON is followed by raw tensor bytes.
BINARY_HEADER = "Inference-Header-Content-Length"


class BodyError(Exception):
    """A body the server refuses; ``status`` is the HTTP status, the message is for clients."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def too_large(limit: int, what: str = "request body is") -> BodyError:
    return BodyError(413, f"{what} more than the limit of {limit} bytes (--max-body-bytes)")


def content_coding(header: str | None) -> str | None:
    """The request's one content coding (None for none or ``identity``)."""
    codings = [c.strip().lower() for c in (header or "").split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return None
    if len(codings) > 1:
        raise BodyError(415, f"Content-Encoding '{header}': only one content coding is "
                        "supported (gzip or deflate)")
    if codings[0] not in CODINGS:
        raise BodyError(415, f"Content-Encoding '{codings[0][:40]}' is not supported; use "
                        "gzip, deflate or none")
    return codings[0]


def refuse_binary_extension(headers: Mapping[str, str]) -> None:
    """The binary tensor extension puts raw bytes after the JSON; without this check the
    client would hear that its body is not valid JSON, which is true but not the reason."""
    if BINARY_HEADER in headers:
        raise BodyError(400, f"{BINARY_HEADER}: the binary tensor extension is not "
                        "supported; send tensors as JSON 'data'")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw (possibly compressed) body, refused with 413 past ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, f"request body is {request.content_length} bytes,")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None


def decode_body(body: bytes, coding: str | None, limit: int) -> bytes:
    """The body after its content coding, at most ``limit`` bytes of it."""
    if coding is None:
        return body
    wbits = CODINGS[coding]
    if wbits == ZLIB and not _has_zlib_header(body):
        wbits = RAW_DEFLATE
    try:
        return _inflate(body, wbits, coding, limit)
    except zlib.error as exc:
        raise BodyError(400, f"the request body is not valid {coding} data: {exc}") from exc


def _has_zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(body: bytes, wbits: int, coding: str, limit: int) -> bytes:
    output = bytearray()
    pending = body
    while True:  # gzip allows several members one after another
        decompressor = zlib.decompressobj(wbits)
        data = pending
        while not decompressor.eof:
            # At most what is left of the limit, plus one byte to tell "over the limit".
            chunk = decompressor.decompress(data, limit + 1 - len(output))
            data = decompressor.unconsumed_tail
            if not chunk and not data:
                break
            output += chunk
            if len(output) > limit:
                raise too_large(limit, f"the {coding} request body inflates to")
        if not decompressor.eof:
            raise BodyError(400, f"the {coding} request body is truncated")
        pending = decompressor.unused_data
        if not pending or wbits != GZIP:
            break
    if pending:
        raise BodyError(400, f"the {coding} request body has data after its end")
    return bytes(output)


__all__ = ["BodyError", "content_coding", "decode_body", "read_body",
           "refuse_binary_extension"]
