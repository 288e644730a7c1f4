"""``modelops-fetch URI DEST [--digest sha256:...]``: download a model artefact and verify it.

``modelops-fetch --print-digest PATH`` prints the digest to pin for a local file, directory or
archive (``--digest`` of the same model, however it is later fetched).

Sources: ``file://`` (or a plain path), ``http(s)://``, ``s3://bucket/key`` and
``gs://bucket/object`` (credentials: see ``objectstores``). Paths are percent-decoded.

* A URI ending in ``/`` names a directory (``file:///dir/``, ``s3://bucket/prefix/``,
  ``gs://bucket/prefix/``; http(s) cannot list one): its tree lands at ``DEST/<name>/``.
* A URI whose path ends in ``.tar.gz``, ``.tgz``, ``.tar`` or ``.zip`` is an archive,
  unpacked to ``DEST/<name>/`` (``<name>`` without the suffix).
* Anything else is one file, written to ``DEST/<basename>`` (or to DEST itself when DEST is
  not an existing directory and does not end in ``/``).

A directory's digest is the tree digest of ``digests``. Everything is written beside its
target and renamed into place only after the digest matched, so a failed or tampered download
never leaves a usable-looking file behind.

Hostile sources: a name (from the URI or a listing) that is empty, ``.``/``..`` or would leave
its directory is refused before anything is written; redirects are followed without the
request's credentials when they leave its origin (``objectstores.open_get``); the whole fetch
is bounded in bytes and seconds (``budgets``); URL credentials and query strings never appear
in a message (``trees.scrub``); every failure is one line on stderr and in the termination log
(``MODELOPS_TERMINATION_LOG``) and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import httpx

from .budgets import MAX_SECONDS, Budget, BudgetTransport
from .cli import EnvArgumentParser, fail
from .digests import CHUNK, check_characters, file_digest, path_digest
from .objectstores import check, object_store, open_get
from .trees import (
    MAX_BYTES,
    MAX_FILES,
    ChunkReader,
    FetchError,
    TreeWriter,
    archive_suffix,
    copy_directory,
    move_into_place,
    read_chunks,
    read_tar,
    read_zip,
    scrub,
)

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
SCHEMES = ("file", "http", "https", "s3", "gs")


class DigestMismatch(FetchError):
    pass


@dataclass(frozen=True)
class Source:
    """What a URI names: ``kind`` is ``file``, ``directory`` or ``archive``; ``name`` is what
    it is called under DEST; ``path`` is the decoded path: a local path (file), the URL's path
    (http) or the key or prefix (s3, gs)."""

    uri: str
    scheme: str
    kind: str
    name: str
    path: str
    bucket: str = ""


def parse_source(uri: str) -> Source:
    """Classify a URI by the layout rules of the module's docstring (no I/O)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower() or "file"
    if scheme not in SCHEMES:
        raise FetchError(f"URI scheme '{scheme}' is not supported; use file://, http(s)://, "
                         "s3:// or gs://")
    if scheme == "file" and parts.scheme and parts.netloc not in ("", "localhost"):
        raise FetchError(f"{uri}: a file URI names an absolute path, file:///path")
    path = unquote(parts.path) if parts.scheme else uri
    if path.endswith("/"):
        kind, name = "directory", path.rstrip("/").rsplit("/", 1)[-1]
    elif suffix := archive_suffix(path):
        kind, name = "archive", path.rsplit("/", 1)[-1].removesuffix(suffix)
    else:
        kind, name = "file", path.rsplit("/", 1)[-1]
    if kind == "directory" and scheme in ("http", "https"):
        raise FetchError(f"{uri}: http(s) cannot list a directory; publish the model as an "
                         "archive (.tar.gz, .tgz, .tar or .zip) and fetch that")
    if scheme in ("s3", "gs") and not (parts.netloc and path.lstrip("/")):
        raise FetchError(f"{uri} must look like {scheme}://bucket/key or "
                         f"{scheme}://bucket/prefix/")
    if name in ("", ".", ".."):
        raise FetchError(f"{uri} has no name to put the {kind} under in DEST")
    try:
        check_characters(name)
    except ValueError as exc:
        raise FetchError(f"{uri}: {exc}") from exc
    if scheme in ("s3", "gs"):
        return Source(uri, scheme, kind, name, path.lstrip("/"), parts.netloc)
    return Source(uri, scheme, kind, name, path)


def parse_digest(digest: str | None) -> str | None:
    """``sha256:<hex>`` in lower case, or None for no digest."""
    if digest is None or digest == "":
        return None
    digest = digest.strip().lower()
    if not DIGEST_PATTERN.match(digest):
        raise FetchError(
            f"digest '{digest[:80]}' is not valid: expected 'sha256:' followed by 64 hex digits"
        )
    return digest


def _verify(expected: str | None, actual: str, uri: str, consequence: str = "use") -> None:
    if expected is not None and actual != expected:
        raise DigestMismatch(
            f"digest mismatch for {uri}: expected {expected}, got {actual}; refusing to "
            f"{consequence} it (the artefact changed or the digest in the spec is wrong)"
        )


def _download(client: httpx.Client, url: str, headers: dict[str, str], what: str,
              auth: str = "") -> Iterator[bytes]:
    response = open_get(client, url, headers)
    try:
        check(response, f"GET {what}", auth)
        yield from response.iter_bytes(CHUNK)
    finally:
        response.close()


def _chunks(source: Source, client: httpx.Client) -> Iterator[bytes]:
    """The bytes of a single file or object."""
    if source.scheme == "file":
        path = Path(source.path)
        if path.is_dir():
            raise FetchError(f"{path} is a directory: end the URI with '/' to fetch a directory")
        if not path.is_file():
            raise FetchError(f"{path} does not exist or is not a file")
        with open(path, "rb") as handle:
            yield from read_chunks(handle)
    elif source.scheme in ("http", "https"):
        yield from _download(client, source.uri, {}, source.uri)
    else:
        store = object_store(source.scheme, source.bucket, client)
        url, headers = store.object(source.path)
        yield from _download(client, url, headers, source.uri, store.auth)


def _fill_from_prefix(source: Source, client: httpx.Client, writer: TreeWriter) -> None:
    store = object_store(source.scheme, source.bucket, client)
    prefix = source.path
    listing = list(itertools.islice(store.list(prefix), writer.max_files + 1))
    if len(listing) > writer.max_files:
        raise FetchError(f"refusing {source.uri}: more than {writer.max_files} objects "
                         "(the limit, --max-files)")
    if sum(size for _, size in listing) > writer.max_bytes:
        raise FetchError(f"refusing {source.uri}: more than {writer.max_bytes} bytes "
                         "(the limit, --max-bytes)")
    for key, size in listing:
        relative = key.removeprefix(prefix)
        if relative == "" or (relative.endswith("/") and size == 0):
            continue  # a "folder" placeholder object
        url, headers = store.object(key)
        what = f"{source.scheme}://{source.bucket}/{key}"
        writer.add_file(relative, _download(client, url, headers, what, store.auth), size)
    if not writer.hashes:
        raise FetchError(f"no objects under {source.uri}")


def _read_local_archive(path: Path, writer: TreeWriter) -> None:
    if not path.is_file():
        raise FetchError(f"{path} does not exist or is not a file")
    if path.name.endswith(".zip"):
        read_zip(path, writer)
    else:
        with open(path, "rb") as handle:
            read_tar(handle, writer)


def _fill_from_archive(source: Source, client: httpx.Client, writer: TreeWriter,
                       scratch: Path) -> None:
    if source.scheme == "file":
        _read_local_archive(Path(source.path), writer)
    elif source.path.endswith(".zip"):
        # A zip's index is at its end: download it first (into scratch, removed after).
        with tempfile.TemporaryFile(dir=scratch) as handle:
            for chunk in _chunks(source, client):
                handle.write(chunk)
            handle.seek(0)
            read_zip(handle, writer)
    else:
        # A tar is unpacked as it streams in.
        with io.BufferedReader(ChunkReader(_chunks(source, client)), CHUNK) as stream:
            read_tar(stream, writer)


def _fetch_file(source: Source, dest: Path, into: bool, expected: str | None,
                client: httpx.Client) -> tuple[Path, str]:
    target = dest / source.name if into or dest.is_dir() else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    # Not a context manager: the file must outlive the block to be renamed into place.
    tmp = tempfile.NamedTemporaryFile(dir=target.parent, prefix=".fetch-", delete=False)  # noqa: SIM115
    try:
        with tmp:
            for chunk in _chunks(source, client):
                hasher.update(chunk)
                tmp.write(chunk)
        actual = "sha256:" + hasher.hexdigest()
        _verify(expected, actual, source.uri)
        os.replace(tmp.name, target)
    finally:
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)
    return target, actual


def _fetch_tree(source: Source, dest: Path, expected: str | None, client: httpx.Client,
                max_bytes: int, max_files: int) -> tuple[Path, str]:
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".fetch-{source.name}-"))
    try:
        tree = staging / "tree"
        tree.mkdir()
        writer = TreeWriter(tree, source.uri, max_files, max_bytes)
        if source.kind == "archive":
            _fill_from_archive(source, client, writer, staging)
        elif source.scheme == "file":
            copy_directory(Path(source.path), writer)
        else:
            _fill_from_prefix(source, client, writer)
        actual = writer.digest()
        _verify(expected, actual, source.uri)
        target = dest / source.name
        move_into_place(tree, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, actual


def _client(timeout: float, budget: Budget) -> httpx.Client:
    """Redirects are not followed by the client (``open_get`` follows them for downloads),
    and no cookie is kept: nothing a server sets can go along to another request."""
    no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(timeout=timeout, follow_redirects=False, cookies=no_cookies,
                        transport=BudgetTransport(budget))


def fetch_verified(uri: str, dest: Path | str, digest: str | None = None,
                   timeout: float = 300.0, max_bytes: int = MAX_BYTES,
                   max_files: int = MAX_FILES, max_seconds: float = MAX_SECONDS
                   ) -> tuple[Path, str]:
    """Fetch ``uri`` under ``dest`` by the layout rules, verify it against ``digest``
    (``sha256:…``, of the file or of the tree) and return its path and actual digest.
    ``timeout`` bounds each wait; ``max_seconds`` and ``max_bytes`` the whole fetch."""
    expected = parse_digest(digest)
    source = parse_source(uri)
    into = str(dest).endswith(("/", os.sep))  # Path() would drop the slash
    budget = Budget(uri, max_seconds, max_bytes)
    try:
        with _client(timeout, budget) as client:
            if source.kind == "file":
                return _fetch_file(source, Path(dest), into, expected, client)
            return _fetch_tree(source, Path(dest), expected, client, max_bytes, max_files)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        if budget.expired():
            raise budget.out_of_time() from exc
        raise FetchError(f"cannot fetch {uri}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise FetchError(f"cannot fetch {uri} into {dest}: {exc}") from exc


def fetch(uri: str, dest: Path | str, digest: str | None = None, timeout: float = 300.0,
          max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES,
          max_seconds: float = MAX_SECONDS) -> Path:
    """Fetch ``uri`` into ``dest`` (see ``fetch_verified``) and return where it landed."""
    return fetch_verified(uri, dest, digest, timeout, max_bytes, max_files, max_seconds)[0]


def artefact_digest(path: Path | str, max_bytes: int = MAX_BYTES,
                    max_files: int = MAX_FILES) -> str:
    """The digest ``--digest`` takes for a local file, directory or archive (an archive's is
    the tree digest of what it unpacks to)."""
    path = Path(path)
    try:
        if path.is_file() and archive_suffix(path.name):
            writer = TreeWriter(None, str(path), max_files, max_bytes)
            _read_local_archive(path, writer)
            return writer.digest()
        return path_digest(path)
    except ValueError as exc:
        raise FetchError(str(exc)) from exc
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc}") from exc


def resolve_local(uri: str, cache_dir: Path, digest: str | None) -> Path:
    """A local path for the model: local files and directories are verified in place,
    archives and remote models fetched into ``cache_dir``."""
    source = parse_source(uri)
    if source.scheme == "file" and source.kind != "archive":
        path = Path(source.path)
        expected = parse_digest(digest)
        if expected is not None:
            is_directory = source.kind == "directory"
            if not (path.is_dir() if is_directory else path.is_file()):
                raise FetchError(f"{path} is not a {'directory' if is_directory else 'file'}")
            _verify(expected, artefact_digest(path), uri, "serve")
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    return fetch(uri, f"{cache_dir}/", digest)


class _ArgumentParser(EnvArgumentParser):
    """Argument errors are failures like any other: one line in the termination log too."""

    def error(self, message: str) -> NoReturn:
        raise FetchError(f"{self.prog}: {message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="modelops-fetch", description=__doc__.splitlines()[0])
    parser.add_argument("uri", nargs="?", help="file://, http(s)://, s3:// or gs:// URI")
    parser.add_argument("dest", nargs="?", help="destination directory (or file for one file)")
    parser.add_flag("--digest", help="expected digest, sha256:<64 hex digits>")
    parser.add_flag("--timeout", type=float, default=300.0,
                    help="seconds for each wait: connecting, or one read")
    parser.add_flag("--max-seconds", type=float, default=MAX_SECONDS,
                    help="seconds for the whole fetch")
    parser.add_flag("--max-bytes", type=int, default=MAX_BYTES,
                    help="most bytes downloaded, and largest total size of a directory or "
                    "unpacked archive")
    parser.add_flag("--max-files", type=int, default=MAX_FILES,
                    help="most entries in a directory or archive")
    parser.add_argument("--print-digest", metavar="PATH",
                        help="print the digest of a local file, directory or archive and exit")
    return parser


def _run(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.print_digest:
        if args.uri:
            parser.error("--print-digest takes no URI or DEST")
        print(artefact_digest(args.print_digest, int(args.max_bytes), int(args.max_files)))
        return 0
    if not (args.uri and args.dest):
        parser.error("URI and DEST are required")
    if not args.digest:
        print("warning: no --digest given; the artefact is not verified", file=sys.stderr)
    path, actual = fetch_verified(args.uri, args.dest, args.digest, float(args.timeout),
                                  int(args.max_bytes), int(args.max_files),
                                  float(args.max_seconds))
    print(scrub(f"fetched {args.uri} -> {path} ({actual})"))
    return 0


def main(argv: list[str] | None = None) -> int:
    termination_log = os.environ.get("MODELOPS_TERMINATION_LOG")
    try:
        return _run(argv)
    except FetchError as exc:
        return fail(str(exc), termination_log)
    except Exception as exc:  # a bug, or a failure not foreseen: still one line, no secrets
        return fail(scrub(f"unexpected {type(exc).__name__}: {exc}"), termination_log)


class _ScrubURLs(logging.Filter):
    """httpx logs every request's URL at INFO, signature and userinfo included; the model
    server logs at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        return True


logging.getLogger("httpx").addFilter(_ScrubURLs())


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["DigestMismatch", "FetchError", "Source", "artefact_digest", "fetch",
           "fetch_verified", "file_digest", "main", "parse_digest", "parse_source",
           "resolve_local"]
