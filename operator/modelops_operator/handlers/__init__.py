"""kopf handlers: thin layers that gather inputs, call the pure core and apply the results."""

from __future__ import annotations

from typing import Any

import kopf


def first_indexed(index: kopf.Index, key: Any) -> Any:
    """One value kopf's index holds under `key`, or None."""
    store = index.get(key)
    return next(iter(store), None) if store else None


def notify(body: kopf.Body, reason: str, message: str) -> None:
    """A Normal Event (kopf.info would follow the posting level, WARNING: log lines are not
    Events, the transitions a person needs are)."""
    kopf.event(body, type="Normal", reason=reason, message=message)
