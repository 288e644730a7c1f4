"""`get --watch` and `status --watch`: re-render a challenge whenever what it shows changes,
until the challenge has settled or --timeout passes.

A challenge has settled when its phase is final *for the version its deployment asks for*: the
phase of the previous challenge (Promoted, say) stays in status until the operator notices a new
`spec.model.version`, so the ModelDeployment's desired version is compared as well. Then `get`
exits 0; `status`, like `kubectl argo rollouts status`, exits 1 when the change was rolled back
or the challenge is Failed, so a pipeline can gate on it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from lightkube import Client

from ..constants import CC_KIND, MDEP_KIND
from .errors import CliError, talking_to
from .resources import ChampionChallenger, as_dict, get, request

RUNNING = ("Progressing", "AwaitingApproval", "Promoting", "RollingBack")
# Marks the error that ended the watch thread, apart from any event type the API server sends.
WATCH_FAILED = "modelops:watch-failed"


def desired_version(client: Client, cc: dict[str, Any]) -> str | None:
    """The version the target deployment asks for; None when it cannot be read."""
    target = ((cc.get("spec") or {}).get("targetRef") or {}).get("name")
    if not target:
        return None
    try:
        mdep = get(client, MDEP_KIND, target, cc["metadata"]["namespace"])
    except CliError:
        return None
    return ((mdep.get("spec") or {}).get("model") or {}).get("version")


def settled(cc: dict[str, Any], desired: str | None) -> bool:
    status = cc.get("status") or {}
    phase = status.get("phase") or "Idle"
    if phase == "Failed":
        return True
    if phase in RUNNING:
        return False
    if desired is None:
        return True
    champion = (status.get("champion") or {}).get("version")
    if desired == champion:
        return True  # Promoted, Idle with nothing pending, or a rollback reverted in Git
    history = status.get("history") or []
    rejected = history[-1].get("version") if history else None
    return phase == "RolledBack" and desired == rejected


def failed(cc: dict[str, Any]) -> bool:
    return (cc.get("status") or {}).get("phase") in ("RolledBack", "Failed")


def _pump(client: Client, name: str, namespace: str, version: str, events: queue.Queue) -> None:
    """Forward watch events (or the error that ended the watch) to the main thread."""
    try:
        with talking_to(request("watch", CC_KIND, namespace, name)):
            for kind, obj in client.watch(
                ChampionChallenger,
                namespace=namespace,
                fields={"metadata.name": name},
                resource_version=version,
            ):
                events.put((kind, as_dict(obj)))
    except BaseException as error:  # handed over, raised in the main thread
        events.put((WATCH_FAILED, error))


def watch(
    client: Client,
    name: str,
    namespace: str,
    timeout: float,
    show: Callable[[dict[str, Any]], str],
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """Emit `show(cc)` whenever it changes; return the settled object, or raise on timeout."""
    cc = get(client, CC_KIND, name, namespace)
    shown = show(cc)
    emit(shown)
    deadline = time.monotonic() + timeout
    events: queue.Queue = queue.Queue()
    # A daemon thread: lightkube's watch blocks and reconnects by itself, and the process may
    # leave while it waits (settled, timed out, Ctrl-C).
    threading.Thread(
        target=_pump,
        args=(client, name, namespace, cc["metadata"].get("resourceVersion"), events),
        daemon=True,
    ).start()
    while not settled(cc, desired_version(client, cc)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(cc, timeout)
        try:
            kind, payload = events.get(timeout=min(remaining, 5.0))
        except queue.Empty:
            continue  # the deployment's desired version may have changed: look again
        if kind == WATCH_FAILED:
            raise payload
        if kind == "DELETED":
            raise CliError(
                f"{namespace}/{name} was deleted while watching", "nothing left to watch"
            )
        cc = payload
        text = show(cc)
        if text != shown:
            emit(text)
            shown = text
    return cc


def _timed_out(cc: dict[str, Any], timeout: float) -> CliError:
    meta, status = cc["metadata"], cc.get("status") or {}
    return CliError(
        f"timed out after {timeout:g}s waiting for {meta['namespace']}/{meta['name']} "
        f"(phase {status.get('phase') or 'Idle'})",
        "raise --timeout, or look at `kubectl modelops get " + meta["name"] + "`",
    )
