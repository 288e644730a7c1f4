"""A raw-socket HTTP/1.1 client for hostile inputs, and what the suite measures about a proxy
process (its resident memory, whether its health endpoint still answers).

Nothing here knows how the programs are written: they are reached by TCP on 127.0.0.1 and
watched through /proc, so the same tests judge any implementation of the same commands.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
MiB = 1024 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names; the last value of a repeated header
    body: bytes


@dataclass
class Outcome:
    """What a client saw: the answers it could parse, whether and when the server closed."""

    answers: list[Answer] = field(default_factory=list)
    closed: bool = False  # EOF or reset from the server within the wait
    reset: bool = False
    hung: bool = False  # neither an answer nor a close within the wait
    sent: int = 0  # bytes the server took before it answered or closed
    elapsed: float = 0.0
    note: str = ""

    @property
    def status(self) -> int | None:
        return self.answers[0].status if self.answers else None

    @property
    def statuses(self) -> list[int]:
        return [a.status for a in self.answers]

    def label(self) -> str:
        if self.answers:
            text = "+".join(str(s) for s in self.statuses)
            if self.closed:
                text += " close"
        elif self.closed:
            text = "reset" if self.reset else "close"
            text += f" after {self.elapsed:.1f}s"
        else:
            text = f"no answer in {self.elapsed:.0f}s"
        if self.note:
            text += f" ({self.note})"
        return text


def _parse_answers(buffer: bytes, eof: bool) -> tuple[list[Answer], bytes]:
    """Complete responses at the start of ``buffer`` (1xx interim answers skipped)."""
    answers: list[Answer] = []
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return answers, buffer
        head = buffer[:end].decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            return answers, buffer
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = buffer[end + 4:]
        if 100 <= status < 200:
            buffer = rest
            continue
        if status in (204, 304):
            body, rest_after = b"", rest
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if len(rest) < length:
                return answers, buffer
            body, rest_after = rest[:length], rest[length:]
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parsed = _dechunk(rest)
            if parsed is None:
                return answers, buffer
            body, rest_after = parsed
        else:  # delimited by the close
            if not eof:
                return answers, buffer
            body, rest_after = rest, b""
        answers.append(Answer(status, headers, body))
        buffer = rest_after


def _dechunk(data: bytes) -> tuple[bytes, bytes] | None:
    body, position = b"", 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return None
        size = int(data[position:end].split(b";")[0] or b"0", 16)
        position = end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n", position)
            return None if trailer_end < 0 else (body, data[trailer_end + 2:])
        if len(data) < position + size + 2:
            return None
        body += data[position:position + size]
        position += size + 2


def converse(port: int, parts: Iterable[bytes], *, interval: float = 0.0,
             expect: int = 1, wait: float = 10.0, stop_on_answer: bool = True,
             grace: float = 0.1, host: str = HOST) -> Outcome:
    """Send ``parts`` (``interval`` seconds apart), reading whatever comes back meanwhile;
    stop sending when the server answers (``stop_on_answer``) or closes. Then read until
    ``expect`` answers came, the server closed, or ``wait`` seconds passed since the last
    part; after the answers, wait ``grace`` seconds more to see whether the server closes."""
    started = time.monotonic()
    outcome = Outcome()
    buffer, eof = b"", False
    sock = socket.create_connection((host, port), timeout=5)
    sock.setblocking(False)

    def pump(timeout: float) -> None:
        nonlocal buffer, eof
        readable, _, _ = select.select([sock], [], [], max(timeout, 0))
        if not readable:
            return
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            outcome.reset, data = True, b""
        except BlockingIOError:
            return
        if not data:
            eof = True
            return
        buffer += data
        answers, buffer = _parse_answers(buffer, False)
        outcome.answers += answers

    try:
        for part in _iterate(parts):
            view = memoryview(part)
            while view and not eof:
                _, writable, _ = select.select([], [sock], [], 0.05)
                if writable:
                    try:
                        count = sock.send(view)
                    except (BrokenPipeError, ConnectionResetError):
                        eof = True
                        break
                    outcome.sent += count
                    view = view[count:]
                pump(0)
                if time.monotonic() - started > wait + 60:
                    outcome.note = "send stalled"
                    break
            if eof or (stop_on_answer and outcome.answers) or outcome.note:
                break
            if interval:
                deadline = time.monotonic() + interval
                while time.monotonic() < deadline and not eof:
                    pump(deadline - time.monotonic())
                if eof or (stop_on_answer and outcome.answers):
                    break
        deadline = time.monotonic() + wait
        while not eof and len(outcome.answers) < expect and time.monotonic() < deadline:
            pump(min(0.1, deadline - time.monotonic()))
        if not eof and outcome.answers:
            grace_end = time.monotonic() + grace
            while not eof and time.monotonic() < grace_end:
                pump(grace_end - time.monotonic())
        if eof:
            answers, buffer = _parse_answers(buffer, True)
            outcome.answers += answers
    finally:
        sock.close()
    outcome.closed = eof
    outcome.hung = not eof and not outcome.answers
    outcome.elapsed = time.monotonic() - started
    return outcome


def _iterate(parts: Iterable[bytes]) -> Iterator[bytes]:
    yield from parts


def request(method: str, target: str, *headers: str, body: bytes = b"",
            version: str = "HTTP/1.1", length: bool = True, eol: bytes = b"\r\n") -> bytes:
    """A request's bytes, exactly as given (``length``: add a Content-Length for ``body``)."""
    lines = [f"{method} {target} {version}", "Host: 127.0.0.1", *headers]
    if length and (body or method == "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return eol.join(line.encode("utf-8") for line in lines) + eol + eol + body


# -- the proxy process -----------------------------------------------------------------------


def rss_bytes(pid: int, with_children: bool = False) -> int:
    """Resident memory of a process (VmRSS); with its children for nginx (master, worker)."""
    total = 0
    for one in [pid, *(children(pid) if with_children else [])]:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class MemoryWatch:
    """The peak resident memory of a process (and its children) over a block, sampled every
    20 ms, against its resident memory when the block began."""

    def __init__(self, pid: int, with_children: bool = False):
        self.pid = pid
        self.pids = [pid, *(children(pid) if with_children else [])]
        self.baseline = self._rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def _rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def label(self) -> str:
        return f"+{self.growth / MiB:.0f} MiB"


def health_seconds(port: int, path: str, timeout: float = 2.0) -> float | None:
    """Seconds a fresh connection took to get a 200 from ``path``; None when it did not
    within ``timeout``."""
    started = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(request("GET", path, "Connection: close"))
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    ok = data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    return time.monotonic() - started if ok else None
