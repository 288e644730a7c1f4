"""Model directories built from untrusted names and bytes: archives, listings, local copies.

Every file of a directory model goes through one ``TreeWriter``, the one place where names are
checked (relative, no ``..``, no duplicates, no file that is also a directory), sizes and
counts are capped and files hashed for the tree digest. Archive members must be regular files
or directories: symlinks, hard links and devices are refused rather than skipped, so what is
served is exactly what was verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .digests import CHUNK, check_characters, iter_tree, manifest_digest

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
MAX_FILES = 10_000
MAX_BYTES = 20 << 30
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*@")
_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#]*)\?[^\s#]*")


def scrub(text: str) -> str:
    """One line, with URL userinfo (``user:password@``) and query strings (pre-signed URLs
    carry their signature there, ``X-Amz-Signature=``, ``sig=``, ``token=``) masked, whatever
    the scheme."""
    text = _QUERY.sub(r"\1?***", _USERINFO.sub(r"\1***@", text))
    return " ".join(text.split())


class FetchError(RuntimeError):
    """The artefact could not be fetched or failed verification (one line, no secrets)."""

    def __init__(self, message: str) -> None:
        super().__init__(scrub(message))


def archive_suffix(name: str) -> str | None:
    """The archive suffix ``name`` ends with, if any (lower case only)."""
    return next((suffix for suffix in ARCHIVE_SUFFIXES if name.endswith(suffix)), None)


def read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


class TreeWriter:
    """Writes a tree under ``root`` (``None``: only hash it), refusing unsafe names."""

    def __init__(self, root: Path | None, what: str, max_files: int = MAX_FILES,
                 max_bytes: int = MAX_BYTES) -> None:
        self.root, self.what = root, what
        self.max_files, self.max_bytes = max_files, max_bytes
        self.hashes: dict[str, str] = {}
        self.dirs: set[str] = set()
        self.explicit_dirs: set[str] = set()
        self.entries = 0
        self.total = 0

    def refuse(self, name: str, reason: str) -> FetchError:
        return FetchError(f"refusing {self.what}: entry {name!r} {reason}")

    def _relative(self, name: str, directory: bool) -> str:
        self.entries += 1
        if self.entries > self.max_files:
            raise FetchError(f"refusing {self.what}: more than {self.max_files} entries "
                             "(the limit, --max-files)")
        if name.startswith("/"):
            raise self.refuse(name, "is an absolute path")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise self.refuse(name, "contains '..' (it would escape the directory)")
        relative = "/".join(parts)
        try:
            check_characters(relative)
        except ValueError as exc:
            raise self.refuse(name, "has a backslash, a line break or a NUL") from exc
        if not relative and not directory:
            raise self.refuse(name, "is a file without a name")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        taken = self.explicit_dirs if directory else self.dirs
        if relative in self.hashes or relative in taken or any(p in self.hashes for p in parents):
            raise self.refuse(name, "appears twice (or as both a file and a directory)")
        self.dirs.update(parents)
        return relative

    def add_dir(self, name: str) -> None:
        relative = self._relative(name, directory=True)
        if relative:
            self.dirs.add(relative)
            self.explicit_dirs.add(relative)
            if self.root is not None:
                (self.root / relative).mkdir(parents=True, exist_ok=True)

    def add_file(self, name: str, chunks: Iterable[bytes], size: int | None = None) -> None:
        relative = self._relative(name, directory=False)
        if size is not None and self.total + size > self.max_bytes:
            raise self._too_big()
        hasher = hashlib.sha256()
        output: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.root is not None:
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            output = open(path, "xb")  # noqa: SIM115 - closed by the with below
        written = 0
        with output as handle:
            for chunk in chunks:
                written += len(chunk)
                if self.total + written > self.max_bytes:
                    raise self._too_big()
                hasher.update(chunk)
                if handle is not None:
                    handle.write(chunk)
        if size is not None and written != size:
            raise self.refuse(name, f"should have {size} bytes but {written} came (truncated, "
                              "or changed while it was fetched)")
        self.total += written
        self.hashes[relative] = hasher.hexdigest()

    def _too_big(self) -> FetchError:
        return FetchError(f"refusing {self.what}: more than {self.max_bytes} bytes unpacked "
                          "(the limit, --max-bytes)")

    def digest(self) -> str:
        if not self.hashes:
            raise FetchError(f"{self.what} holds no files")
        return manifest_digest(self.hashes)


def read_tar(handle: IO[bytes], writer: TreeWriter) -> None:
    """Unpack a (possibly compressed) tar read as a stream: no seeking, so it can come
    straight from a download."""
    try:
        with tarfile.open(fileobj=handle, mode="r|*") as archive:
            for member in archive:
                if member.isdir():
                    writer.add_dir(member.name)
                elif member.isreg():
                    content = archive.extractfile(member)
                    assert content is not None  # a regular member always has content
                    writer.add_file(member.name, read_chunks(content), member.size)
                else:
                    kind = ("a symlink" if member.issym() else "a hard link" if member.islnk()
                            else "a device or pipe")
                    raise writer.refuse(member.name, f"is {kind}; only regular files and "
                                         "directories are allowed")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise FetchError(f"{writer.what} is not a readable tar archive: {exc}") from exc


def read_zip(source: Path | IO[bytes], writer: TreeWriter) -> None:
    try:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                file_type = stat.S_IFMT(info.external_attr >> 16)  # 0: the zip does not say
                if info.is_dir():
                    writer.add_dir(info.filename)
                elif file_type not in (0, stat.S_IFREG):
                    kind = "a symlink" if file_type == stat.S_IFLNK else "a device or pipe"
                    raise writer.refuse(info.filename, f"is {kind}; only regular files and "
                                         "directories are allowed")
                else:
                    with archive.open(info) as content:
                        writer.add_file(info.filename, read_chunks(content), info.file_size)
    except FetchError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError) as exc:  # RuntimeError: an encrypted member
        raise FetchError(f"{writer.what} is not a readable zip archive: {exc}") from exc


def copy_directory(source: Path, writer: TreeWriter) -> None:
    """Copy a local directory; symlinks are refused (never followed), as are devices."""
    if not source.is_dir():
        raise FetchError(f"{source} is not a directory")
    try:
        for relative, path, is_directory in iter_tree(source):
            if is_directory:
                writer.add_dir(relative)
            else:
                writer.add_file(relative, _read_no_follow(path))
    except ValueError as exc:
        raise FetchError(str(exc)) from exc


def _read_no_follow(path: Path) -> Iterator[bytes]:
    # O_NOFOLLOW: a file swapped for a symlink after the walk is refused, not followed.
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
        yield from read_chunks(handle)


class ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (a download), for tarfile's streams."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending, self.offset = chunks, b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.offset >= len(self.pending):
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending, self.offset = chunk, 0
        size = min(len(buffer), len(self.pending) - self.offset)
        buffer[:size] = self.pending[self.offset:self.offset + size]
        self.offset += size
        return size


def move_into_place(staging: Path, target: Path) -> None:
    """Rename a finished tree to ``target``, replacing what was there."""
    staging.chmod(0o755)  # mkdtemp made it 0700
    if not (target.exists() or target.is_symlink()):
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=".fetch-old-"))
    os.replace(target, old / target.name)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["ARCHIVE_SUFFIXES", "ChunkReader", "FetchError", "TreeWriter", "archive_suffix",
           "copy_directory", "move_into_place", "read_tar", "read_zip", "scrub"]
