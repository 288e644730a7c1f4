"""Is a child object already as we want it? Pure comparison of desired vs observed manifests.

A server-side apply is a write even when it changes nothing, so the reconcile compares first
and applies only on a difference. The desired manifest is compared as a *subset* of the
observed one: the API server adds defaults (protocol, clusterIP, terminationMessagePath...),
drops zero values (omitempty) and canonicalises quantities ("0.5" -> "500m"), none of which is
drift.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}


def parse_quantity(value: object) -> Decimal | None:
    """A Kubernetes quantity as a number, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _SUFFIXES:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return None


def _is_zero(value: object) -> bool:
    return value is None or value in ("", 0, False) or value == [] or value == {}


def _scalars_equal(desired: object, observed: object) -> bool:
    if isinstance(desired, bool) or isinstance(observed, bool):
        return desired is observed  # True == 1 in Python, not in Kubernetes
    if desired == observed:
        return True
    if isinstance(desired, str) or isinstance(observed, str):
        # "1" vs 1, "0.5" vs "500m": quantities the API server rewrote.
        left, right = parse_quantity(desired), parse_quantity(observed)
        return left is not None and left == right
    return False


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def differences(desired: Any, observed: Any, path: str = "") -> list[str]:
    """Paths where `observed` does not contain `desired`; empty means nothing to apply."""
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return [path or "."]
        found: list[str] = []
        for key, value in desired.items():
            if key not in observed:
                if not _is_zero(value):
                    found.append(f"{path}.{key}")
                continue
            found += differences(value, observed[key], f"{path}.{key}")
        return found
    if isinstance(desired, list):
        if not isinstance(observed, list):
            return [path]
        if desired and _named(desired) and _named(observed):
            # Containers, env, ports, volumes: match by name, as strategic merge does.
            by_name = {item["name"]: item for item in observed}
            if len(by_name) != len(desired):
                return [path]
            found = []
            for item in desired:
                if item["name"] not in by_name:
                    found.append(f"{path}[{item['name']}]")
                else:
                    found += differences(item, by_name[item["name"]], f"{path}[{item['name']}]")
            return found
        if len(desired) != len(observed):
            return [path]
        found = []
        for index, (left, right) in enumerate(zip(desired, observed, strict=True)):
            found += differences(left, right, f"{path}[{index}]")
        return found
    return [] if _scalars_equal(desired, observed) else [path]
