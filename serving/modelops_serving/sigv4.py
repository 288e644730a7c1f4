"""AWS Signature Version 4 for S3 GET requests (header signing), as pure functions.

Enough of SigV4 to download an object from S3 or an S3-compatible store (MinIO, Ceph RGW)
without pulling in botocore.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def canonical_query(query: dict[str, str]) -> str:
    """The query string as signed; send it exactly so."""
    return "&".join(
        f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query.items())
    )


def canonical_request(
    method: str, path: str, query: dict[str, str], headers: dict[str, str], payload_hash: str
) -> tuple[str, str]:
    """Return the canonical request and the signed-headers list."""
    canonical_path = quote(path, safe="/~")
    lowered = {k.lower().strip(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed = ";".join(sorted(lowered))
    header_block = "".join(f"{k}:{lowered[k]}\n" for k in sorted(lowered))
    text = "\n".join(
        [method, canonical_path, canonical_query(query), header_block, signed, payload_hash]
    )
    return text, signed


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret_key).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def sign_headers(
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    credentials: Credentials,
    region: str,
    now: dt.datetime,
    extra_headers: dict[str, str] | None = None,
    service: str = "s3",
) -> dict[str, str]:
    """Headers (including Authorization) that sign an empty-body request."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": EMPTY_SHA256}
    headers.update({k.lower(): v for k, v in (extra_headers or {}).items()})
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    request_text, signed = canonical_request(method, path, query, headers, EMPTY_SHA256)
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request_text.encode()).hexdigest()]
    )
    signature = hmac.new(
        signing_key(credentials.secret_key, date, region, service), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return headers
