"""One result, five formats: a table for people; JSON, YAML, JSON lines and names for scripts.

Every verb returns a `Result`. Reads carry the objects (several as a kubectl-style `List`);
actions carry an `ActionResult` document (docs/cli.md): what was done, to what, by whom.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..constants import GROUP


@dataclass(frozen=True)
class Result:
    """What a verb produced: `document` for the machine formats, `table` for people."""

    document: dict[str, Any] | list[dict[str, Any]]
    table: str
    names: list[str] = field(default_factory=list)


def as_list(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several objects the way `kubectl get -o json` prints them."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {}}


def object_name(obj: dict[str, Any]) -> str:
    """`kubectl get -o name`: championchallenger.modelops.io/fraud-canary."""
    kind = str(obj.get("kind") or "object").lower()
    group = str(obj.get("apiVersion") or "").split("/")[0] or GROUP
    return f"{kind}.{group}/{obj['metadata']['name']}"


def render(result: Result, output: str) -> str:
    """The text to print (no trailing newline)."""
    document = result.document
    if output == "table":
        return result.table
    if output == "name":
        return "\n".join(result.names)
    if output == "jsonl":
        items = document if isinstance(document, list) else [document]
        return "\n".join(json.dumps(item, sort_keys=False, default=str) for item in items)
    whole = as_list(document) if isinstance(document, list) else document
    if output == "json":
        return json.dumps(whole, indent=2, default=str)
    if output == "yaml":
        return yaml.safe_dump(whole, sort_keys=False, default_flow_style=False).rstrip("\n")
    raise ValueError(f"unknown output {output!r}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns the way kubectl aligns them: left-aligned, three spaces apart."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
