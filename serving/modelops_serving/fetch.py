"""``modelops-fetch URI DEST [--digest sha256:...]``: download a model artefact and verify it.

Supports ``file://`` (and plain paths), ``http(s)://`` and ``s3://bucket/key`` (SigV4 signed
with ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``[/``AWS_SESSION_TOKEN``], region from
``AWS_REGION``, an S3-compatible endpoint from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``).
The file is written beside DEST and renamed into place only after its digest matched, so a
failed or tampered download never leaves a usable-looking file behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from .cli import EnvArgumentParser, fail
from .sigv4 import Credentials, sign_headers

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """The artefact could not be fetched or failed verification."""


class DigestMismatch(FetchError):
    pass


def parse_digest(digest: str | None) -> str | None:
    if digest is None or digest == "":
        return None
    digest = digest.strip().lower()
    if not DIGEST_PATTERN.match(digest):
        raise FetchError(
            f"digest '{digest[:80]}' is not valid: expected 'sha256:' followed by 64 hex digits"
        )
    return digest.removeprefix("sha256:")


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _target_path(uri_path: str, dest: Path) -> Path:
    if dest.is_dir() or str(dest).endswith(os.sep):
        name = Path(unquote(uri_path)).name or "model"
        return dest / name
    return dest


def _stream_to(response: httpx.Response, handle: Any, hasher: Any) -> None:
    for chunk in response.iter_bytes(CHUNK):
        hasher.update(chunk)
        handle.write(chunk)


def _s3_request(uri: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise FetchError(f"s3 URI '{uri}' must look like s3://bucket/path/to/model")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        # S3-compatible stores are addressed path-style: endpoint/bucket/key.
        base = urlsplit(endpoint.rstrip("/"))
        host, path, scheme = base.netloc, f"{base.path}/{bucket}/{key}", base.scheme
    else:
        host, path, scheme = f"{bucket}.s3.{region}.amazonaws.com", f"/{key}", "https"
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    headers: dict[str, str] = {}
    if access and secret:
        creds = Credentials(access, secret, os.environ.get("AWS_SESSION_TOKEN"))
        headers = sign_headers("GET", host, path, {}, creds, region, dt.datetime.now(dt.UTC))
        headers.pop("host")
    return f"{scheme}://{host}{path}", headers


def fetch(uri: str, dest: Path, digest: str | None = None, timeout: float = 300.0) -> Path:
    """Fetch ``uri`` into ``dest`` (a file, or a directory to put it in) and verify it."""
    expected = parse_digest(digest)
    parts = urlsplit(uri)
    scheme = parts.scheme or "file"
    target = _target_path(parts.path, dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    # Not a context manager: the file must outlive the block to be renamed into place.
    tmp = tempfile.NamedTemporaryFile(dir=target.parent, prefix=".fetch-", delete=False)  # noqa: SIM115
    try:
        with tmp:
            if scheme == "file":
                source = Path(unquote(parts.path if parts.scheme else uri))
                if not source.is_file():
                    raise FetchError(f"{source} does not exist or is not a file")
                with open(source, "rb") as handle:
                    while chunk := handle.read(CHUNK):
                        hasher.update(chunk)
                        tmp.write(chunk)
            elif scheme in ("http", "https", "s3"):
                url, headers = (uri, {}) if scheme != "s3" else _s3_request(uri)
                with httpx.stream("GET", url, headers=headers, timeout=timeout,
                                  follow_redirects=True) as response:
                    if response.status_code != 200:
                        response.read()
                        raise FetchError(
                            f"GET {url} answered {response.status_code}: {response.text[:300]}"
                        )
                    _stream_to(response, tmp, hasher)
            else:
                raise FetchError(
                    f"URI scheme '{scheme}' is not supported; use file://, http(s):// or s3://"
                )
        actual = hasher.hexdigest()
        if expected is not None and actual != expected:
            raise DigestMismatch(
                f"digest mismatch for {uri}: expected sha256:{expected}, got sha256:{actual}; "
                "refusing to use it (the artefact changed or the digest in the spec is wrong)"
            )
        os.replace(tmp.name, target)
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot fetch {uri}: {exc}") from exc
    finally:
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)
    return target


def resolve_local(uri: str, cache_dir: Path, digest: str | None) -> Path:
    """A local path for the model: local files are verified in place, remote ones fetched."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = Path(unquote(parts.path if parts.scheme else uri))
        expected = parse_digest(digest)
        if expected is not None:
            if not path.is_file():
                raise FetchError(f"--digest needs a single model file, but {path} is not a file")
            actual = sha256_file(path)
            if actual != expected:
                raise DigestMismatch(
                    f"digest mismatch for {uri}: expected sha256:{expected}, got "
                    f"sha256:{actual}; refusing to serve it"
                )
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    return fetch(uri, cache_dir / "", digest)


def main(argv: list[str] | None = None) -> int:
    parser = EnvArgumentParser(prog="modelops-fetch", description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="file://, http(s):// or s3:// URI of the model artefact")
    parser.add_argument("dest", help="destination file, or an existing directory")
    parser.add_flag("--digest", help="expected digest, sha256:<64 hex digits>")
    parser.add_flag("--timeout", type=float, default=300.0, help="seconds for the download")
    args = parser.parse_args(argv)
    if not args.digest:
        print("warning: no --digest given; the artefact is not verified", file=sys.stderr)
    try:
        path = fetch(args.uri, Path(args.dest), args.digest, float(args.timeout))
    except FetchError as exc:
        return fail(str(exc), os.environ.get("MODELOPS_TERMINATION_LOG"))
    print(f"fetched {args.uri} -> {path} (sha256:{sha256_file(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["DigestMismatch", "FetchError", "fetch", "main", "resolve_local", "sha256_file"]
