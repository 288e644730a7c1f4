"""What every model format shares: the load error, optional libraries, finding the file, and
the tensor descriptions the server reports as metadata."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 marks a variable dimension

    def as_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def require(module: str, extra: str) -> Any:
    """Import an optional library, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(
            f"the '{extra}' model format needs the Python package '{module}', which is not "
            f"installed: pip install modelops[{extra}]"
        ) from exc


def find_model_file(path: Path, suffixes: tuple[str, ...]) -> Path:
    """A URI may name the model file or a directory holding exactly one model file."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} does not exist")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in suffixes)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ModelLoadError(
            f"model directory {path} must hold exactly one file ending in "
            f"{' or '.join(suffixes)}; found {names}"
        )
    return found[0]
