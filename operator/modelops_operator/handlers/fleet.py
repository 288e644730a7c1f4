"""The ModelDeployment fleet's workers: one queue and a few workers for every object.

kopf's events queue keys (`modeldeployment_event`, the children's indices); `WORKERS` tasks
take them, one key at a time each, and call the handler module's `process`. A resync loop
queues every key each `resync_seconds`. Compared with a kopf daemon and timer per object, this
costs no finalizer (kopf adds one for every daemon or timer) and no task per object.

Leadership: kopf pauses a replica that is not the leader by stopping its watch streams and
daemons; it has no hook for other tasks. So with peering the workers run only while a kopf
daemon of this operator's ClusterKopfPeering runs, which kopf stops on pause exactly as it
stops every daemon. Standalone, they always run.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import kopf
from lightkube.core.exceptions import ApiError

from ..opmetrics import count_error
from ..peering import peering_requested
from ..workqueue import WorkQueue

Key = tuple[str, str]
# The kopf indices `process` reads, handed over by the event handler (kopf gives them only to
# handlers).
INDICES = ("model_deployments", "model_services", "model_pods", "challenges")
WORKERS = int(os.environ.get("MODELOPS_MAX_CONCURRENT", "16"))
RETRY_SECONDS = 5.0

log = logging.getLogger("modelops.fleet")


class KeyLogger(logging.LoggerAdapter):
    """Log lines that name the object, as kopf's per-object loggers do."""

    def __init__(self, key: Key) -> None:
        super().__init__(log, {})
        self.prefix = "/".join(key)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.prefix}] {msg}", kwargs


def object_logger(key: Key) -> KeyLogger:
    return KeyLogger(key)


def setup(memo: kopf.Memo) -> None:
    memo.queue = WorkQueue()
    memo.bodies = {}  # key -> the latest body kopf saw
    memo.indices = {}  # index name -> kopf's live index (see INDICES)
    memo.last_written = {}  # key -> the last status patch written
    memo.repairs = set()  # keys whose children must be re-applied now
    memo.resyncs = set()  # keys whose children are re-applied at their next turn
    memo.leading = asyncio.Event()
    memo.fleet_tasks = []


def forget(memo: kopf.Memo, key: Key) -> None:
    """A deleted object: nothing of it stays."""
    memo.queue.forget(key)
    for store in (memo.bodies, memo.last_written, memo.outcomes):
        store.pop(key, None)
    memo.repairs.discard(key)
    memo.resyncs.discard(key)


def forget_all(memo: kopf.Memo) -> None:
    """Paused: what this replica saw may be stale when it leads again; kopf lists every object
    anew on resuming, and a deletion missed meanwhile must not be acted on."""
    for key in list(memo.bodies):
        forget(memo, key)
    memo.applied.clear()


def start(
    memo: kopf.Memo,
    settings: kopf.OperatorSettings,
    process: Callable[[kopf.Memo, Key], Awaitable[None]],
    resync_seconds: float,
) -> None:
    """At startup: who decides when the workers run. They start with the first event."""
    memo.process = process
    memo.resync_seconds = resync_seconds
    if peering_requested(settings):
        memo.peering_name = settings.peering.name
        kopf.daemon(
            "kopf.dev", "v1", "clusterkopfpeerings", when=_is_own_peering,
            cancellation_timeout=5,
        )(lead)  # fmt: skip
    else:
        memo.leading.set()


def ensure_running(memo: kopf.Memo) -> None:
    """Started from a handler, not at startup: tasks inherit the context they are created in,
    and kopf's Event posting works only in its handlers' context."""
    if memo.fleet_tasks:
        return
    # Extended in place: kopf hands each object a shallow copy of the memo.
    memo.fleet_tasks.extend(
        asyncio.create_task(_work(memo, memo.process), name=f"modelops fleet worker {n}")
        for n in range(WORKERS)
    )
    memo.fleet_tasks.append(
        asyncio.create_task(_resync(memo, memo.resync_seconds), name="modelops fleet resync")
    )


async def stop(memo: kopf.Memo) -> None:
    for task in memo.fleet_tasks:
        task.cancel()
    await asyncio.gather(*memo.fleet_tasks, return_exceptions=True)


def _is_own_peering(name: str, memo: kopf.Memo, **_: Any) -> bool:
    return name == memo.peering_name


async def lead(memo: kopf.Memo, stopped: Any, logger: Any, **_: Any) -> None:
    """Runs while this replica leads (kopf stops it when peering pauses the replica)."""
    logger.info("leading: the ModelDeployment workers run")
    memo.leading.set()
    try:
        await stopped.wait()
    finally:
        memo.leading.clear()
        forget_all(memo)
        logger.info("paused: the ModelDeployment workers wait")


async def _work(memo: kopf.Memo, process: Callable[[kopf.Memo, Key], Awaitable[None]]) -> None:
    while True:
        await memo.leading.wait()
        key = await memo.queue.get()
        try:
            # Paused while this worker waited for a key: it is held until this replica leads
            # again, never dropped. On resuming, kopf's listing queues every object before the
            # lead daemon runs, so a dropped key waited for the next resync (a ModelDeployment
            # created during a failover was not reconciled for minutes).
            await memo.leading.wait()
            await process(memo, key)
        except kopf.TemporaryError as error:
            object_logger(key).warning(f"{error}; retrying")
            memo.queue.add(key, float(error.delay or RETRY_SECONDS))
        except (ApiError, httpx2.HTTPError) as error:
            object_logger(key).warning(f"status write failed, retrying: {error!r}")
            count_error("status")
            memo.queue.add(key, RETRY_SECONDS)
        except Exception:
            object_logger(key).exception("failed unexpectedly, retrying")
            count_error("reconcile")
            memo.queue.add(key, RETRY_SECONDS)
        finally:
            memo.queue.done(key)


async def _resync(memo: kopf.Memo, resync_seconds: float) -> None:
    """Every object's children re-applied where they drifted; writes nothing where none did."""
    while True:
        await asyncio.sleep(resync_seconds)
        if not memo.leading.is_set():
            continue
        for key in list(memo.bodies):
            memo.resyncs.add(key)
            memo.queue.add(key)
