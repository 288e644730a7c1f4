"""Durations and times as people type them on a command line, and ages as kubectl prints them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in `90`, `30s`, `5m`, `1h30m` or `7d`; ValueError otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * _SCALE[unit] for number, unit in parts)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time, or a duration meaning that long ago."""
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_timestamp(value: object) -> datetime | None:
    """A timestamp as the API server writes it (RFC 3339), None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(since: object, now: datetime | None = None) -> str:
    """kubectl's AGE column: 45s, 12m, 3h, 5d, 2y."""
    moment = parse_timestamp(since)
    if moment is None:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit in ("y", "d") else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
