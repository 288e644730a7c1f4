"""An open-loop load generator that sends V2 inference requests and, later, their true labels.

Requests leave at a fixed rate (not "as fast as the last answer came back"), so a slow or
failing model does not quietly lower the load it is judged on; at most ``concurrency`` are in
flight. Every outcome is counted and nothing is retried: the demo's acceptance is "zero failed
client requests during the swap", and a retry would hide exactly the failure it must show.

Feedback follows each answered request after a random delay, like labels that arrive later
in production, and goes to ``/v2/feedback`` with the request id the response carried; the
router sends it to the arm that answered. A label is ``sent`` when a model scored it,
``unmatched`` when the endpoint answered 404 with outcome "unmatched" (the pod it reached has
no record of the prediction: a label that can never count), ``failed`` for any other refusal
or transport error, and ``dropped`` when the run ended before it was due.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

RECENT_WINDOW_SECONDS = 5.0
MAX_RECENT_ERRORS = 20
MAX_RECENT_UNMATCHED = 5
MAX_LATENCY_SAMPLES = 2_000
# Labels waiting for their delay; beyond this they are dropped (and counted), so memory stays
# flat when the feedback endpoint is slower than the request rate.
MAX_PENDING_FEEDBACK = 50_000
RECEIPT_HEADER = "x-modelops-receipt"


@dataclass(order=True)
class _PendingFeedback:
    due: float
    request_id: str = field(compare=False)
    truth: Any = field(compare=False)
    version: str = field(compare=False)
    # The answer's signed receipt (X-Modelops-Receipt), sent back with the label so that any
    # replica can score it (docs/serving.md); None when the answer carried none.
    receipt: str | None = field(default=None, compare=False)


@dataclass
class _Counters:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_version: Counter[str] = field(default_factory=Counter)
    feedback_sent: int = 0
    feedback_failed: int = 0
    feedback_unmatched: int = 0
    feedback_dropped: int = 0
    feedback_by_status: Counter[str] = field(default_factory=Counter)
    correct_by_version: Counter[str] = field(default_factory=Counter)
    labelled_by_version: Counter[str] = field(default_factory=Counter)


class LoadGenerator:
    """Send ``rate_per_second`` one-row inference requests to ``base_url`` until stopped.

    ``stream`` yields ``(features row, true label)``. Use ``await run(stop_event)``, or
    ``start()`` and ``await stop()``. ``max_requests`` bounds a run (tests); the run then ends
    once every request is answered and every label is sent.
    """

    def __init__(
        self,
        base_url: str,
        stream: Iterator[tuple[list[float], Any]],
        model_name: str,
        rate_per_second: float,
        concurrency: int = 16,
        feedback_delay_seconds: tuple[float, float] = (1.0, 5.0),
        *,
        timeout_seconds: float = 10.0,
        input_name: str = "input-0",
        max_requests: int | None = None,
        seed: int = 0,
        clock: Any = time.monotonic,
    ):
        low, high = feedback_delay_seconds
        if rate_per_second <= 0 or concurrency < 1 or not 0 <= low <= high:
            raise ValueError("need rate_per_second > 0, concurrency >= 1, 0 <= min delay <= max")
        self.base_url = base_url.rstrip("/")
        self.stream = stream
        self.model_name = model_name
        self.rate_per_second = rate_per_second
        self.concurrency = concurrency
        self.feedback_delay_seconds = (low, high)
        self.timeout_seconds = timeout_seconds
        self.input_name = input_name
        self.max_requests = max_requests
        self._clock = clock
        self._random = random.Random(seed)
        self._id_prefix = uuid.uuid4().hex[:8]
        self._sequence = itertools.count(1)
        self._counters = _Counters()
        self._in_flight = 0
        self._feedback_in_flight = 0
        self._pending: list[_PendingFeedback] = []
        self._feedback_wakeup = asyncio.Event()
        self._recent: deque[tuple[float, bool]] = deque()
        self._latencies: deque[float] = deque(maxlen=MAX_LATENCY_SAMPLES)
        self._latency_sum = 0.0
        self._recent_errors: deque[str] = deque(maxlen=MAX_RECENT_ERRORS)
        # Kept apart: a stream of unmatched labels must not push request errors out of view.
        self._recent_unmatched: deque[str] = deque(maxlen=MAX_RECENT_UNMATCHED)
        self._started_at: float | None = None
        self._stop_event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ control

    def retarget(self, url: str) -> None:
        """Send the next requests and labels to ``url`` (requests in flight finish where
        they are)."""
        self.base_url = url.rstrip("/")

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the load generator is already running")
        self._stop_event = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self.run(self._stop_event))

    async def stop(self) -> None:
        if self._task is None or self._stop_event is None:
            return
        self._stop_event.set()
        await self._task

    async def run(self, stop_event: asyncio.Event) -> None:
        """Send requests until ``stop_event`` is set (or ``max_requests`` are sent).

        On stop, requests in flight are awaited (each is bounded by the timeout); labels not
        yet due are dropped and counted, because the demo has ended."""
        self._started_at = self._clock()
        limits = httpx.Limits(max_connections=self.concurrency + 4,
                              max_keepalive_connections=self.concurrency + 4)
        timeout = httpx.Timeout(self.timeout_seconds)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            slots = asyncio.Semaphore(self.concurrency)
            requests: set[asyncio.Task[None]] = set()
            feedback = asyncio.create_task(self._send_feedback_when_due(client, stop_event))
            try:
                await self._send_requests(client, slots, requests, stop_event)
                if requests:
                    await asyncio.gather(*requests)
                if self.max_requests is not None and not stop_event.is_set():
                    await self._wait_for_feedback(stop_event)
            finally:
                stop_event.set()
                self._feedback_wakeup.set()
                await feedback
                for task in requests:
                    task.cancel()
                self._counters.feedback_dropped += len(self._pending)
                self._pending.clear()

    async def _send_requests(self, client: httpx.AsyncClient, slots: asyncio.Semaphore,
                             requests: set[asyncio.Task[None]], stop_event: asyncio.Event) -> None:
        interval = 1.0 / self.rate_per_second
        next_at = self._clock()
        while not stop_event.is_set():
            if self.max_requests is not None and self._counters.sent >= self.max_requests:
                return
            delay = next_at - self._clock()
            if delay > 0 and await _wait(stop_event, delay):
                return
            # After a stall (a full machine, all slots busy), start again from now rather
            # than sending the missed requests in a burst.
            next_at = max(next_at + interval, self._clock() - 1.0)
            try:
                row, truth = next(self.stream)
            except StopIteration:
                return
            await slots.acquire()
            if stop_event.is_set():
                slots.release()
                return
            # Counted here, not in the task, so max_requests is never overshot.
            self._counters.sent += 1
            task = asyncio.create_task(self._one_request(client, slots, row, truth))
            requests.add(task)
            task.add_done_callback(requests.discard)

    async def _wait_for_feedback(self, stop_event: asyncio.Event) -> None:
        high = self.feedback_delay_seconds[1]
        deadline = self._clock() + high + 2 * self.timeout_seconds
        while self._pending or self._feedback_in_flight:
            if self._clock() > deadline or await _wait(stop_event, 0.02):
                return

    # ------------------------------------------------------------------ requests

    def _new_request_id(self) -> str:
        return f"demo-{self._id_prefix}-{next(self._sequence)}"

    async def _one_request(self, client: httpx.AsyncClient, slots: asyncio.Semaphore,
                           row: list[float], truth: Any) -> None:
        request_id = self._new_request_id()
        body = {
            "id": request_id,
            "inputs": [{"name": self.input_name, "shape": [1, len(row)], "datatype": "FP64",
                        "data": row}],
        }
        url = f"{self.base_url}/v2/models/{self.model_name}/infer"
        self._in_flight += 1
        started = self._clock()
        try:
            response = await client.post(url, json=body)
        except Exception as exc:  # transport errors, and anything else: counted, never hidden
            self._record_request(started, f"transport:{type(exc).__name__}", None,
                                 f"{url}: {type(exc).__name__}: {exc}")
            return
        finally:
            self._in_flight -= 1
            slots.release()
        if not response.is_success:
            self._record_request(started, str(response.status_code), None,
                                 f"{url}: HTTP {response.status_code}: {response.text[:200]}")
            return
        answered_id, version = _response_identity(response, request_id)
        self._record_request(started, str(response.status_code), version, None)
        self._schedule_feedback(answered_id, truth, version,
                                response.headers.get(RECEIPT_HEADER))

    def _record_request(self, started: float, status: str, version: str | None,
                        error: str | None) -> None:
        now = self._clock()
        counters = self._counters
        counters.by_status[status] += 1
        ok = error is None
        if ok:
            counters.ok += 1
            counters.by_version[version or "unknown"] += 1
            latency = now - started
            self._latencies.append(latency)
            self._latency_sum += latency
        else:
            counters.failed += 1
            self._note_error(error or status)
        self._recent.append((now, ok))
        self._trim_recent(now)

    def _note_error(self, error: str) -> None:
        # Stamped with the load's clock and the wall clock, to line a failure up with the
        # operator's log and the cluster's events.
        elapsed = 0.0 if self._started_at is None else self._clock() - self._started_at
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        self._recent_errors.append(f"[{stamp}Z +{elapsed:.1f} s] {error}")

    def _trim_recent(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RECENT_WINDOW_SECONDS:
            self._recent.popleft()

    # ------------------------------------------------------------------ feedback

    def _schedule_feedback(self, request_id: str, truth: Any, version: str,
                           receipt: str | None = None) -> None:
        if len(self._pending) >= MAX_PENDING_FEEDBACK:
            self._counters.feedback_dropped += 1
            return
        low, high = self.feedback_delay_seconds
        due = self._clock() + self._random.uniform(low, high)
        heapq.heappush(self._pending,
                       _PendingFeedback(due, request_id, truth, version, receipt))
        self._feedback_wakeup.set()

    async def _send_feedback_when_due(self, client: httpx.AsyncClient,
                                      stop_event: asyncio.Event) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        sending: set[asyncio.Task[None]] = set()
        while not stop_event.is_set():
            self._feedback_wakeup.clear()
            now = self._clock()
            while self._pending and self._pending[0].due <= now:
                item = heapq.heappop(self._pending)
                # Counted from here, so "nothing pending and nothing in flight" never misses
                # a label between the heap and its task.
                self._feedback_in_flight += 1
                await slots.acquire()
                task = asyncio.create_task(self._one_feedback(client, item, slots))
                sending.add(task)
                task.add_done_callback(sending.discard)
            wait = self._pending[0].due - now if self._pending else 1.0
            await _wait(self._feedback_wakeup, max(wait, 0.001))
        if sending:
            await asyncio.gather(*sending)

    async def _one_feedback(self, client: httpx.AsyncClient, item: _PendingFeedback,
                            slots: asyncio.Semaphore) -> None:
        counters = self._counters
        url = f"{self.base_url}/v2/feedback"
        try:
            label = {"id": item.request_id, "truth": item.truth}
            if item.receipt:
                label["receipt"] = item.receipt
            response = await client.post(url, json=label)
        except Exception as exc:  # as for requests: every failure is counted
            counters.feedback_failed += 1
            counters.feedback_by_status[f"transport:{type(exc).__name__}"] += 1
            self._note_error(f"{url}: {type(exc).__name__}: {exc}")
            return
        finally:
            self._feedback_in_flight -= 1
            slots.release()
        counters.feedback_by_status[str(response.status_code)] += 1
        if _unmatched(response):
            counters.feedback_unmatched += 1
            self._recent_unmatched.append(f"{url}: HTTP 404: {response.text[:200]}")
            return
        if not response.is_success:
            counters.feedback_failed += 1
            self._note_error(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
            return
        counters.feedback_sent += 1
        verdict = _feedback_verdict(response)
        if verdict is not None:
            counters.labelled_by_version[item.version] += 1
            counters.correct_by_version[item.version] += verdict

    # ------------------------------------------------------------------ reporting

    def snapshot(self) -> dict[str, Any]:
        """Cumulative counters since the start, plus rates over the last few seconds."""
        now = self._clock()
        self._trim_recent(now)
        counters = self._counters
        elapsed = 0.0 if self._started_at is None else now - self._started_at
        window = min(RECENT_WINDOW_SECONDS, elapsed) or RECENT_WINDOW_SECONDS
        recent_ok = sum(1 for _, ok in self._recent if ok)
        recent_failed = len(self._recent) - recent_ok
        latencies = sorted(self._latencies)
        accuracy = {
            version: counters.correct_by_version[version] / labelled
            for version, labelled in counters.labelled_by_version.items() if labelled
        }
        return {
            "elapsed": elapsed,
            "target": self.base_url,
            "requests": {
                "sent": counters.sent,
                "ok": counters.ok,
                "failed": counters.failed,
                "inFlight": self._in_flight,
                "byStatus": dict(counters.by_status),
                "byVersion": dict(counters.by_version),
            },
            "rate": {
                "windowSeconds": window,
                "okPerSecond": recent_ok / window,
                "failedPerSecond": recent_failed / window,
            },
            "latencyMs": {
                "mean": 1000 * self._latency_sum / counters.ok if counters.ok else None,
                "p50": 1000 * _quantile(latencies, 0.5) if latencies else None,
                "p99": 1000 * _quantile(latencies, 0.99) if latencies else None,
            },
            "feedback": {
                "sent": counters.feedback_sent,
                "failed": counters.feedback_failed,
                "unmatched": counters.feedback_unmatched,
                "dropped": counters.feedback_dropped,
                "pending": len(self._pending),
                "byStatus": dict(counters.feedback_by_status),
                "accuracyByVersion": accuracy,
                "labelledByVersion": dict(counters.labelled_by_version),
                "correctByVersion": dict(counters.correct_by_version),
            },
            "recentErrors": list(self._recent_errors),
            "recentUnmatched": list(self._recent_unmatched),
        }


def _response_identity(response: httpx.Response, sent_id: str) -> tuple[str, str]:
    """The request id to send feedback with (the one the response carried) and the version
    that answered (``model_version`` in the V2 body, when the server names it)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    answered_id = response.headers.get("x-request-id") or body.get("id")
    version = body.get("model_version")
    return (answered_id if isinstance(answered_id, str) and answered_id else sent_id,
            version if isinstance(version, str) and version else "unknown")


def _unmatched(response: httpx.Response) -> bool:
    """The router's or sidecar's "no record of this request id": 404, outcome "unmatched"."""
    if response.status_code != 404:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("outcome") == "unmatched"


def _feedback_verdict(response: httpx.Response) -> int | None:
    """1 when the sidecar scored the label correct, 0 when incorrect, None when it did not say."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    correct, incorrect = body.get("correct"), body.get("incorrect")
    if isinstance(correct, int) and isinstance(incorrect, int) and correct + incorrect == 1:
        return correct
    return None


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``event`` was set meanwhile."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
