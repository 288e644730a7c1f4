"""Digests of model files and model directories, as pure functions.

A file's digest is ``sha256:`` and the sha256 of its bytes. A directory's digest (a *tree
digest*) is ``sha256:`` and the sha256 of the text made of one line
``"<sha256 hex of the file>  <relative POSIX path>\\n"`` per regular file, sorted by the
relative path's bytes: what ::

    cd DIR && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum

prints. Directories themselves (empty ones included) are not part of it, so the same model has
the same digest whether it comes as a directory, an object-store prefix or an archive.

Only trees this module can vouch for get a digest: a symlink, a device or a socket in the tree
raises ``ValueError`` (the shell pipeline would skip it, and what it points to would be served
unverified), and so do an empty tree and names with a backslash or a line break (``sha256sum``
escapes those).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

CHUNK = 1 << 20
UNSAFE_CHARACTERS = ("\\", "\n", "\r", "\0")


def file_digest(path: Path | str) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def check_characters(name: str) -> None:
    if any(character in name for character in UNSAFE_CHARACTERS):
        raise ValueError(
            f"file name {name!r} has a backslash, a line break or a NUL, which tree digests do "
            "not support (sha256sum escapes them); rename the file"
        )


def _bytes(text: str) -> bytes:
    # Names that are not UTF-8 on disk come back as the same bytes (surrogateescape).
    return text.encode("utf-8", "surrogateescape")


def manifest_digest(hashes: Mapping[str, str]) -> str:
    """The tree digest of ``{relative POSIX path: sha256 hex of the file}``."""
    if not hashes:
        raise ValueError("the tree has no files, so it has no digest")
    lines = []
    for name in sorted(hashes, key=_bytes):
        check_characters(name)
        lines.append(_bytes(f"{hashes[name]}  {name}\n"))
    return "sha256:" + hashlib.sha256(b"".join(lines)).hexdigest()


def iter_tree(root: Path | str) -> Iterator[tuple[str, Path, bool]]:
    """``(relative POSIX path, path, is_directory)`` for everything under ``root``, parents
    first; raises ``ValueError`` on anything but regular files and directories."""
    stack = [(Path(root), "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                relative = prefix + entry.name
                check_characters(relative)
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    yield relative, Path(entry.path), True
                    stack.append((Path(entry.path), relative + "/"))
                elif stat.S_ISREG(mode):
                    yield relative, Path(entry.path), False
                else:
                    kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                    raise ValueError(
                        f"{relative} in {root} is {kind}; model directories may hold only "
                        "regular files and directories (copy the files in, e.g. cp -rL)"
                    )


def tree_digest(root: Path | str) -> str:
    """The tree digest of a directory (see the module's docstring)."""
    hashes = {}
    for relative, path, is_directory in iter_tree(root):
        if not is_directory:
            hashes[relative] = file_digest(path).removeprefix("sha256:")
    return manifest_digest(hashes)


def path_digest(path: Path | str) -> str:
    """The digest of a file, or the tree digest of a directory."""
    return tree_digest(path) if Path(path).is_dir() else file_digest(path)


__all__ = ["file_digest", "iter_tree", "manifest_digest", "path_digest", "tree_digest"]
