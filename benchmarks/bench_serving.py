"""Serving data-plane benchmark: what each hop costs, and our model server against MLServer and
KServe's Python model server.

All in one run, same machine, same model, same request (one row, 10 features, a scikit-learn
LogisticRegression), load from wrk (or a Python closed-loop generator when wrk is missing) at
fixed concurrency, every scenario once per round for several rounds (medians reported):

  direct         client -> modelops-serve
  sidecar        client -> modelops-sidecar -> modelops-serve
  router+sidecar client -> modelops-router -> modelops-sidecar -> modelops-serve
  nginx          client -> nginx (plain reverse proxy, keep-alive upstream) -> modelops-serve
  mlserver       client -> MLServer (PyPI, sklearn runtime) serving the same model
  mlserver-pw0   the same with parallel_workers 0 (inference on the event loop, as ours)
  kserve         client -> KServe's Python model server (PyPI ``kserve``, one worker, a
                 ``kserve.Model`` subclass as sklearnserver's, which is not on PyPI)

Concurrency 1 measures the latency a hop adds, twice: with wrk in 15 rounds of 1 s (a hop's
added p50 is the median over rounds of its p50 minus direct's in the same round), and with a
blocking Python client whose targets take turns every request, then every 20 requests, so that
the machine's drift, which moves whole 1 s rounds by more than a hop costs, hits every target
alike (the figure the sidecar's 0.5 ms target is judged on: the larger of the two). Concurrency
16 measures throughput (5 rounds of 3 s; a hop's share is the median over rounds of its req/s
over direct's in the same round). Then, on a machine with two cores or more, the same rounds for
the four hops again with the model server pinned to one CPU and the proxies, nginx and wrk to the
others: the placement the kubelet's static CPU manager gives a Guaranteed pod's model container
(docs/runtimes.md), where the sidecar's goroutines no longer preempt the model. MLServer and
KServe are each installed into a virtualenv of their own under ~/.cache (their pins conflict
with ours) and run beside ours, measured in the same rounds; which settings and why:
benchmarks/thirdparty_servers.py (in short: one worker process, no per-request logging, the same
model file and request body). Besides req/s and latency, the CPU time each process spent per
request is read from /proc: it is far less disturbed by a busy machine. A table puts our
server's req/s at c=16, p50/p99 at c=1 and c=16 and CPU per request beside each third-party
server's, with ratios to ours. Results go to bench-results/serving/. Figures are noisy on a
shared 2-core machine: read the ratios, which are measured back to back in the same run, rather
than the absolute numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks.thirdparty_servers import launches
from modelops_operator.builders.keys import ReceiptKeyPolicy, rotated_receipt_keys

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results" / "serving"
HOST = "127.0.0.1"
DURATION = int(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
# Concurrency 1 (the latency a hop adds) is measured in many short rounds, each scenario once per
# round in a rotating order: on a shared VM the speed drifts by tens of percent within minutes
# and a process's placement (same core as the model server or not) changes what a hop costs, so
# the figure is the median over rounds of (scenario - direct) measured back to back.
LATENCY_ROUNDS = int(os.environ.get("BENCH_LATENCY_ROUNDS", "15"))
LATENCY_SECONDS = 1
CONCURRENCIES = (1, 16)
# What a hop adds at concurrency 1 is also measured with the targets taking turns every few
# requests (``alternating_latency``): the drift that moves whole 1 s rounds cancels there.
ALTERNATION_BLOCKS = (1, 20)
ALTERNATION_REQUESTS = int(os.environ.get("BENCH_ALTERNATION_REQUESTS", "2000"))
SLICE_SECONDS = 0.25
# The hypervisor of a shared VM takes vCPUs away ("steal" in /proc/stat): measured here, p50
# through the sidecar went from 1.1 ms at 5% steal to 2.9 ms at 31%, nginx's hop less so. A
# hop's cost is judged on the slices of the run where the host took less than this.
STEAL_QUIET_PERCENT = 10.0
MIN_QUIET_SLICES = 12  # 3 s of quiet host at least, else that figure is not given
QUIET_WAIT_SECONDS = 90.0
PLAN = {1: (LATENCY_ROUNDS, LATENCY_SECONDS), 16: (ROUNDS, DURATION)}  # rounds, seconds
N_FEATURES = 10
THIRD_PARTY = ("mlserver", "mlserver-pw0", "kserve")  # see thirdparty_servers


@dataclass
class Result:
    scenario: str
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str
    # CPU time each of our processes spent per request: robust to a busy machine, unlike latency.
    cpu_us_per_request: dict[str, float]
    # Time the hypervisor took our vCPUs away during the measurement (see STEAL_QUIET_PERCENT).
    steal_percent: float = 0.0


# A bare httputil.ReverseProxy with the data plane's runtime settings (dataplane/cmd/plainproxy):
# what net/http and the Go runtime add by themselves, which issue 13 asks the proxies to use.
FLOOR = "net/http floor"


def build_plain_proxy(work: Path) -> str | None:
    """dataplane/cmd/plainproxy built as the data plane is (dataplane/build.sh); None, with one
    line, when Go is missing."""
    if shutil.which("go") is None:
        print(f"!! go is not installed: the {FLOOR} row is skipped")
        return None
    binary = work / "plainproxy"
    subprocess.run(["bash", str(ROOT / "dataplane" / "build.sh"), str(binary)], check=True,
                   env={**os.environ, "PACKAGE": "./cmd/plainproxy"})
    return str(binary)


def data_plane(name: str) -> str:
    """The Go sidecar or router that `make install` put beside this Python (dataplane/)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is missing: run `make install`")
    return found


def write_receipt_keys(path: Path) -> Path:
    """A receipt key ring as the operator writes it, for the proxies' --receipt-keys-file."""
    ring = rotated_receipt_keys(None, time.time(), ReceiptKeyPolicy())
    path.write_text(json.dumps(ring))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Processes:
    """Every process the benchmark starts, stopped by pid at the end."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


# The hops in front of our model server, in the order reports list them, and the process groups
# a request through each goes through (a third-party server is a scenario of its own group).
PATHS = {"direct": {"server"}, "sidecar": {"server", "sidecar"},
         "router+sidecar": {"server", "sidecar", "router"}, FLOOR: {"server", FLOOR},
         "nginx": {"server", "nginx"}}


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU of every process in a process group (nginx runs master + worker)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def pin_group(pgid: int, cpus: set[int]) -> None:
    """Every thread of every process in a process group onto `cpus` (threads started later
    inherit it from the thread that starts them)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for task in (stat.parent / "task").iterdir():
                os.sched_setaffinity(int(task.name), cpus)
        except (OSError, ValueError):
            continue  # the process or thread ended meanwhile


def cpu_ticks() -> list[int]:
    """The machine's CPU time counters from /proc/stat (user, nice, system, idle, iowait, irq,
    softirq, steal, ...), in clock ticks."""
    with open("/proc/stat") as stat:
        return [int(value) for value in stat.readline().split()[1:]]


def steal_percent(before: list[int], after: list[int]) -> float:
    """Share of the machine's time the hypervisor gave our vCPUs to someone else."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return 100.0 * spent[7] / max(sum(spent[:8]), 1)


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def make_model(directory: Path) -> tuple[Path, Path, np.ndarray, object]:
    import joblib
    import skops.io as sio
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=2000, n_features=N_FEATURES, random_state=11)
    model = LogisticRegression(max_iter=500).fit(X, y)
    skops_path, joblib_path = directory / "model.skops", directory / "model.joblib"
    sio.dump(model, skops_path)
    joblib.dump(model, joblib_path)
    return skops_path, joblib_path, X, model


def nginx_config(directory: Path, port: int, upstream_port: int, server_extra: str = "") -> Path:
    """A plain keep-alive reverse proxy on HOST:port in front of HOST:upstream_port, its pid,
    logs and temp files under ``directory``; ``server_extra``: more directives for its server
    block (the hostile-client tests set limits and timeouts there)."""
    temp = directory / "nginx-temp"
    temp.mkdir(exist_ok=True)
    text = f"""
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  upstream model {{ server {HOST}:{upstream_port}; keepalive 64; }}
  server {{
    listen {HOST}:{port};
    {server_extra}
    location / {{
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    path = directory / "nginx.conf"
    path.write_text(text)
    return path


# -- load generation ---------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(url: str, body: bytes, concurrency: int, script_dir: Path,
            seconds: int, cpus: set[int] | None = None) -> tuple[float, float, float, int]:
    script = script_dir / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body.decode()))
    threads = min(concurrency, 2)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s",
                          "--latency", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus)
                         ).stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            raise RuntimeError(f"cannot parse wrk output:\n{out}")
        return float(match.group(1)) * UNITS[match.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(g) for g in socket_errors.groups())
    return rps, latency("50"), latency("99"), failed


def run_python_load(url: str, body: bytes, concurrency: int,
                    seconds: int) -> tuple[float, float, float, int]:
    import aiohttp

    async def go() -> tuple[float, float, float, int]:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    async with s.post(url, data=body,
                                      headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        errors += r.status != 200
                    latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        ms = np.array(latencies) * 1000
        return (len(ms) / seconds, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                errors)

    return asyncio.run(go())


def measure_once(scenario: str, url: str, body: bytes, concurrency: int, seconds: int,
                 work_dir: Path, groups: dict[str, int], load_cpus: set[int] | None = None
                 ) -> Result:
    cpu_before = {name: group_cpu_seconds(pgid) for name, pgid in groups.items()}
    ticks_before = cpu_ticks()
    if shutil.which("wrk"):
        rps, p50, p99, errors = run_wrk(url, body, concurrency, work_dir, seconds, load_cpus)
        tool = "wrk"
    else:
        rps, p50, p99, errors = run_python_load(url, body, concurrency, seconds)
        tool = "python"
    served = max(rps * seconds, 1.0)
    cpu = {name: round((group_cpu_seconds(pgid) - cpu_before[name]) / served * 1e6, 1)
           for name, pgid in groups.items()}
    # Only the processes on this scenario's path; the others sat idle.
    on_path = PATHS.get(scenario, {scenario})
    cpu = {name: value for name, value in cpu.items() if name in on_path}
    return Result(scenario, concurrency, round(rps, 1), round(p50, 3), round(p99, 3), errors,
                  tool, cpu, round(steal_percent(ticks_before, cpu_ticks()), 1))


def median_result(rounds: list[Result]) -> Result:
    first = rounds[0]
    names = {name for r in rounds for name in r.cpu_us_per_request}
    return Result(
        first.scenario, first.concurrency,
        float(np.median([r.requests_per_second for r in rounds])),
        float(np.median([r.p50_ms for r in rounds])), float(np.median([r.p99_ms for r in rounds])),
        sum(r.errors for r in rounds), first.tool,
        {n: float(np.median([r.cpu_us_per_request.get(n, 0.0) for r in rounds])) for n in names},
        float(np.median([r.steal_percent for r in rounds])))


def show(result: Result, prefix: str = "   ") -> None:
    cpu_text = " ".join(f"{k}={v:.0f}" for k, v in sorted(result.cpu_us_per_request.items()))
    print(f"{prefix}{result.scenario:<16} c={result.concurrency:<3} "
          f"{result.requests_per_second:>9.1f} req/s  p50 {result.p50_ms:7.3f} ms  "
          f"p99 {result.p99_ms:7.3f} ms  errors {result.errors}  steal {result.steal_percent:4.1f}%"
          f"  CPU us/request: {cpu_text}",
          flush=True)


def measure_interleaved(targets: dict[str, str], body: bytes, work_dir: Path,
                        groups: dict[str, int], load_cpus: set[int] | None = None
                        ) -> dict[tuple[str, int], list[Result]]:
    """Every scenario once per round, rounds repeated (see PLAN): a burst of background load
    then hits all scenarios alike instead of one. Results per (scenario, concurrency), in
    round order. `load_cpus`: the CPUs wrk runs on (default: any)."""
    for url in targets.values():  # warm-up: connections, lazy imports, caches
        for _ in range(50):
            httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    rounds: dict[tuple[str, int], list[Result]] = {}
    names = list(targets)
    for concurrency in CONCURRENCIES:
        count, seconds = PLAN[concurrency]
        print(f">> concurrency {concurrency}: {count} rounds of {seconds}s per scenario",
              flush=True)
        for number in range(count):
            shift = number % len(names)  # rotate, so no scenario always follows the same one
            for scenario in names[shift:] + names[:shift]:
                result = measure_once(scenario, targets[scenario], body, concurrency, seconds,
                                      work_dir, groups, load_cpus)
                if concurrency > 1 or number % 5 == 0:
                    show(result, f"     [{number + 1}/{count}] ")
                rounds.setdefault((scenario, concurrency), []).append(result)
    return rounds


def paired(rounds: dict[tuple[str, int], list[Result]]
           ) -> dict[tuple[str, int], tuple[float, float, float, float]]:
    """Per scenario and concurrency, from rounds measured back to back with direct: the
    median, 10th and 90th percentile of its p50 minus direct's, and the median of its
    throughput over direct's."""
    found = {}
    for (scenario, concurrency), results in rounds.items():
        direct = rounds.get(("direct", concurrency))
        if direct is None or scenario == "direct":
            continue
        differences = [r.p50_ms - d.p50_ms for r, d in zip(results, direct, strict=True)]
        shares = [r.requests_per_second / max(d.requests_per_second, 1e-9)
                  for r, d in zip(results, direct, strict=True)]
        found[(scenario, concurrency)] = (float(np.median(differences)),
                                          float(np.percentile(differences, 10)),
                                          float(np.percentile(differences, 90)),
                                          float(np.median(shares)))
    return found


def paired_report(pairs: dict[tuple[str, int], tuple[float, float, float, float]]
                  ) -> dict[str, dict[str, float]]:
    """`paired`'s figures by "scenario c=N", named, for the JSON report."""
    names = ("added_p50_ms", "added_p50_p10", "added_p50_p90", "throughput_share")
    return {f"{scenario} c={c}": dict(zip(names, figures, strict=True))
            for (scenario, c), figures in pairs.items()}


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection, blocking: a load generator whose own cost is the
    same few socket calls for every target, so it cancels out of the differences."""

    def __init__(self, port: int, path: str, body: bytes):
        self.port = port
        self.request = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                        f"\r\n").encode() + body
        self.sock = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def post(self, retry: bool = True) -> tuple[float, int]:
        """(seconds, status) of one request; reconnects once when the server closed (nginx
        ends a keep-alive connection after 1,000 requests) and sends again."""
        started = time.perf_counter()
        self.sock.sendall(self.request)
        data = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                if not retry:
                    raise ConnectionError(f"port {self.port} closed without answering")
                self.sock.close()
                self.sock = self._connect()
                return self.post(retry=False)
            data += chunk
            end = data.find(b"\r\n\r\n")
            if end < 0:
                continue
            found = re.search(rb"\r\ncontent-length:\s*(\d+)", data[:end + 2], re.IGNORECASE)
            if found and len(data) >= end + 4 + int(found[1]):
                return time.perf_counter() - started, int(data[9:12])

    def close(self) -> None:
        self.sock.close()


@dataclass
class Slice:
    """About a quarter second of an alternating run: the host's steal and each target's
    latencies (ms) in it."""
    steal_percent: float
    latencies: dict[str, list[float]]


def alternating_latency(ports: dict[str, int], body: bytes, block: int,
                        requests: int) -> list[Slice]:
    """Concurrency 1, the targets taking turns every ``block`` requests (rotating order), about
    ``requests`` per target: what each hop adds, with the machine's drift cancelled, because
    every target runs through the same seconds. ``block=1``: every request finds the hop idle
    and its caches cold, as at low traffic; ``block=20``: back-to-back requests, as wrk's c=1.
    The run is cut into slices of about SLICE_SECONDS, each with the host's steal; when fewer
    than MIN_QUIET_SLICES had a quiet host, it goes on (up to QUIET_WAIT_SECONDS) for more."""
    clients = {name: KeepAliveClient(port, "/v2/models/fraud/infer", body)
               for name, port in ports.items()}
    names = list(ports)
    slices: list[Slice] = []
    try:
        for client in clients.values():
            for _ in range(20):
                client.post()
        current: dict[str, list[float]] = {name: [] for name in names}
        ticks, opened = cpu_ticks(), time.monotonic()
        rounds = max(requests // block, 1)
        give_up = time.monotonic() + QUIET_WAIT_SECONDS
        quiet = number = 0
        while number < rounds or (quiet < MIN_QUIET_SLICES and time.monotonic() < give_up):
            if number == rounds:
                give_up = time.monotonic() + QUIET_WAIT_SECONDS
                print(f"   only {quiet} quiet slice(s) so far: going on for up to "
                      f"{QUIET_WAIT_SECONDS:.0f}s", flush=True)
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                client, measured = clients[name], current[name]
                for _ in range(block):
                    seconds, status = client.post()
                    if status != 200:
                        raise RuntimeError(f"{name} answered {status} during the latency run")
                    measured.append(seconds * 1000)
            number += 1
            if time.monotonic() - opened >= SLICE_SECONDS:
                now = cpu_ticks()
                slices.append(Slice(steal_percent(ticks, now), current))
                quiet += slices[-1].steal_percent < STEAL_QUIET_PERCENT
                current = {name: [] for name in names}
                ticks, opened = now, time.monotonic()
        if current[names[0]]:
            slices.append(Slice(steal_percent(ticks, cpu_ticks()), current))
    finally:
        for client in clients.values():
            client.close()
    return slices


@dataclass
class Added:
    """What a hop adds at p50 (ms) over direct in an alternating run: over all of it, and over
    its slices with a quiet host (steal below STEAL_QUIET_PERCENT), None when there were fewer
    than MIN_QUIET_SLICES."""
    overall: float
    quiet: float | None
    quiet_share: float  # of the slices


def added_by_alternation(slices: list[Slice]) -> dict[str, Added]:
    quiet = [piece for piece in slices if piece.steal_percent < STEAL_QUIET_PERCENT]
    if len(quiet) < MIN_QUIET_SLICES:
        quiet = []  # too little quiet time to judge by

    def p50(pieces: list[Slice], name: str) -> float:
        return float(np.median([v for piece in pieces for v in piece.latencies[name]]))

    found = {}
    for name in slices[0].latencies:
        if name == "direct":
            continue
        found[name] = Added(p50(slices, name) - p50(slices, "direct"),
                            p50(quiet, name) - p50(quiet, "direct") if quiet else None,
                            len(quiet) / len(slices))
    return found


def predictions(url: str, rows: np.ndarray) -> list[object]:
    body = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}
    response = httpx.post(url, json=body, timeout=30)
    response.raise_for_status()
    return response.json()["outputs"][0]["data"]


def expect_same_predictions(url: str, rows: np.ndarray, expected: list[object], name: str,
                            whose: str = "the model itself") -> None:
    got = predictions(url, rows)
    if got != expected:
        raise RuntimeError(f"{name} answered {got[:5]}…, {whose} {expected[:5]}…")


def ratios(results: list[Result],
           pairs: dict[tuple[str, int], tuple[float, float, float, float]]) -> list[str]:
    by = {(r.scenario, r.concurrency): r for r in results}
    lines = []
    for c in CONCURRENCIES:
        direct = by.get(("direct", c))
        if direct is None:
            continue
        for scenario in [hop for hop in PATHS if hop != "direct"]:
            other = by.get((scenario, c))
            if other:
                median, low, high, share = pairs[(scenario, c)]
                lines.append(
                    f"c={c:<3} {scenario:<16} throughput {share:6.1%} of direct, adds "
                    f"{median:+.3f} ms at p50 (10-90% of rounds {low:+.3f}..{high:+.3f}), "
                    f"{other.p99_ms - direct.p99_ms:+.3f} ms at p99")
        for scenario in THIRD_PARTY:
            ml = by.get((scenario, c))
            if ml:
                lines.append(
                    f"c={c:<3} ours vs {scenario:<12} throughput x"
                    f"{direct.requests_per_second / max(ml.requests_per_second, 1e-9):.2f}, "
                    f"p99 {direct.p99_ms:.3f} ms vs {ml.p99_ms:.3f} ms")
    return lines


# The comparison with ours: (key, column label, concurrency, Result field or "cpu", decimals).
VERSUS_FIGURES = (("requests_per_second c=16", "req/s c=16", 16, "requests_per_second", 1),
                  ("p50_ms c=1", "p50 c=1", 1, "p50_ms", 2),
                  ("p99_ms c=1", "p99 c=1", 1, "p99_ms", 2),
                  ("p50_ms c=16", "p50 c=16", 16, "p50_ms", 2),
                  ("p99_ms c=16", "p99 c=16", 16, "p99_ms", 2),
                  ("cpu_us_per_request c=1", "CPU c=1", 1, "cpu", 0),
                  ("cpu_us_per_request c=16", "CPU c=16", 16, "cpu", 0))


def versus_ours(results: list[Result]) -> list[dict[str, object]]:
    """Our server (the direct scenario), then each third-party server that ran: every figure of
    VERSUS_FIGURES (medians over rounds), and for the others each as a ratio to ours. CPU is the
    server's own process group's per request (MLServer's includes its worker process). Empty
    without our server."""
    by = {(r.scenario, r.concurrency): r for r in results}

    def figures(scenario: str) -> dict[str, float | None]:
        group = "server" if scenario == "direct" else scenario
        found: dict[str, float | None] = {}
        for key, _, concurrency, name, _ in VERSUS_FIGURES:
            result = by.get((scenario, concurrency))
            found[key] = (None if result is None
                          else result.cpu_us_per_request.get(group, 0.0) if name == "cpu"
                          else float(getattr(result, name)))
        return found

    present = {scenario for scenario, _ in by}
    if "direct" not in present:
        return []
    ours = figures("direct")
    rows: list[dict[str, object]] = [{"server": "ours", **ours}]
    for scenario in THIRD_PARTY:
        if scenario not in present:
            continue
        theirs = figures(scenario)
        rows.append({"server": scenario, **theirs, "ratio_to_ours": {
            key: ratio(value, ours[key]) for key, value in theirs.items()}})
    return rows


def ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else round(value / base, 3)


def versus_table(rows: list[dict[str, object]]) -> list[str]:
    """The comparison as aligned lines: a header, then one line per server, each figure of a
    third-party server followed by its ratio to ours."""
    lines = [f"{'server':<13}" + "".join(f"{label:>17}" for _, label, *_ in VERSUS_FIGURES)]
    for row in rows:
        ratio_to_ours: dict[str, float | None] = row.get("ratio_to_ours", {})  # type: ignore[assignment]
        cells = []
        for key, _, _, _, decimals in VERSUS_FIGURES:
            value, ratio = row[key], ratio_to_ours.get(key)
            text = "-" if value is None else f"{value:.{decimals}f}"
            cells.append(text if ratio is None else f"{text} (x{ratio:.2f})")
        lines.append(f"{row['server']:<13}" + "".join(f"{cell:>17}" for cell in cells))
    return lines


def targets_met(pairs: dict[tuple[str, int], tuple[float, float, float, float]],
                alternating: dict[int, dict[str, Added]], results: list[Result],
                own_core: dict[tuple[str, int], tuple[float, float, float, float]] | None = None
                ) -> list[str]:
    """The data-plane issue's targets, each with the figure it is judged on: a hop's added p50
    at c=1 from the alternating runs (quiet host slices when there were enough, the larger of
    the two turn lengths), throughput shares from paired rounds at c=16, on shared cores and,
    when measured (`own_core`), with the model server on a core of its own."""
    lines = []

    def added(hop: str) -> tuple[float, str] | None:
        runs = [a[hop] for a in alternating.values() if hop in a]
        if not runs:
            return None
        quiet = [a.quiet for a in runs if a.quiet is not None]
        if len(quiet) == len(runs):
            return max(quiet), f"steal < {STEAL_QUIET_PERCENT:.0f}%"
        return max(a.overall for a in runs), "whole runs, steal included"

    sidecar, router, nginx = added("sidecar"), added("router+sidecar"), added("nginx")
    if sidecar and nginx:
        verdict = "met" if sidecar[0] <= nginx[0] else "MISSED"
        lines.append(f"sidecar's added p50 at c=1 <= nginx's ({sidecar[1]}; the larger of "
                     f"{len(alternating)} alternating runs): {sidecar[0]:+.3f} vs "
                     f"{nginx[0]:+.3f} ms -> {verdict}")
    if router and nginx:
        verdict = "met" if router[0] <= 2 * nginx[0] else "MISSED"
        lines.append(f"router+sidecar's added p50 at c=1 <= 2x nginx's: {router[0]:+.3f} vs "
                     f"2 x {nginx[0]:+.3f} ms -> {verdict}")
    floor = added(FLOOR)
    if floor and nginx:
        reach = ("below what net/http costs by itself" if floor[0] > nginx[0]
                 else "above what net/http costs by itself")
        lines.append(f"{FLOOR} (a bare httputil.ReverseProxy, the proxies' runtime settings) "
                     f"adds {floor[0]:+.3f} ms at p50 c=1, nginx {nginx[0]:+.3f}: the sidecar "
                     f"target lies {reach}")
        if sidecar:
            lines.append(f"the sidecar's own work over that floor: {sidecar[0] - floor[0]:+.3f} "
                         f"ms at p50 c=1")
    if ("sidecar", 16) in pairs:
        share = pairs[("sidecar", 16)][3]
        lines.append(f"sidecar keeps >= 90% of direct throughput at c=16 (median of paired "
                     f"rounds): {share:.1%} -> {'met' if share >= 0.9 else 'MISSED'}")
    if own_core and ("sidecar", 16) in own_core:
        share = own_core[("sidecar", 16)][3]
        lines.append(f"the same with the model server on a core of its own (a Guaranteed pod "
                     f"under the static CPU manager): {share:.1%} -> "
                     f"{'met' if share >= 0.9 else 'MISSED'}")
    by = {(r.scenario, r.concurrency): r for r in results}
    for c in CONCURRENCIES:
        cpu = [f"{group} {by[(scenario, c)].cpu_us_per_request.get(group, 0.0):.0f}"
               for scenario, group in (("direct", "server"), ("sidecar", "sidecar"),
                                       ("router+sidecar", "router"), (FLOOR, FLOOR),
                                       ("nginx", "nginx"))
               if (scenario, c) in by and group in by[(scenario, c)].cpu_us_per_request]
        if cpu:
            lines.append(f"CPU per request at c={c} (us, each hop's own processes): "
                         + ", ".join(cpu))
    ours, theirs = by.get(("direct", 16)), by.get(("mlserver", 16))
    if ours and theirs:
        met = (ours.requests_per_second >= theirs.requests_per_second
               and ours.p99_ms <= theirs.p99_ms)
        lines.append(f"our server >= MLServer's throughput at equal or better p99 (c=16): "
                     f"x{ours.requests_per_second / max(theirs.requests_per_second, 1e-9):.2f}, "
                     f"p99 {ours.p99_ms:.1f} vs {theirs.p99_ms:.1f} ms -> "
                     f"{'met' if met else 'MISSED'}")
    return lines


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-", dir=RESULTS))
    procs = Processes(work)
    load_before = os.getloadavg()
    print(f">> serving benchmark in {work} (load average {load_before[0]:.1f} on "
          f"{os.cpu_count()} cores)", flush=True)
    skops_path, joblib_path, X, model = make_model(work)
    rows = X[:1]
    body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, N_FEATURES], "datatype": "FP64",
                                   "data": rows.ravel().tolist()}]}).encode()
    python = sys.executable
    ports = {name: free_port() for name in ("server", "sidecar", "sidecar_metrics", "router",
                                             "router_metrics", "nginx", "floor")}
    infer_path = "/v2/models/fraud/infer"
    rounds: dict[tuple[str, int], list[Result]] = {}
    own_core_rounds: dict[tuple[str, int], list[Result]] = {}
    alternating: dict[int, dict[str, Added]] = {}
    try:
        server = procs.start("server", [python, "-m", "modelops_serving.server", "--name", "fraud",
                                        "--uri", str(skops_path), "--format", "sklearn",
                                        "--version", "v1", "--host", HOST,
                                        "--port", str(ports["server"]), "--termination-log", ""])
        # As the operator runs them: every answer signed, labels checked (docs/serving.md).
        signed = ("--deployment", "fraud", "--receipt-keys-file",
                  str(write_receipt_keys(work / "receipt-keys.json")))
        sidecar = procs.start("sidecar", [
            data_plane("modelops-sidecar"), "--upstream",
            f"http://{HOST}:{ports['server']}", "--host", HOST, "--port", str(ports["sidecar"]),
            "--metrics-port", str(ports["sidecar_metrics"]), "--model", "fraud", "--version", "v1",
            "--role", "champion", "--log-level", "WARNING", *signed])
        config = work / "router.json"
        config.write_text(json.dumps({"apiVersion": "router.modelops.io/v1alpha1",
                                      "champion": {"url": f"http://{HOST}:{ports['sidecar']}"}}))
        router = procs.start("router", [
            data_plane("modelops-router"), "--config", str(config), "--host", HOST,
            "--port", str(ports["router"]), "--metrics-port", str(ports["router_metrics"]),
            "--log-level", "WARNING", *signed])
        targets = {"direct": (ports["server"], server), "sidecar": (ports["sidecar"], sidecar),
                   "router+sidecar": (ports["router"], router)}
        plain_proxy = build_plain_proxy(work)
        if plain_proxy:
            floor = procs.start("floor", [plain_proxy, "--upstream", f"http://{HOST}:"
                                          f"{ports['server']}", "--listen",
                                          f"{HOST}:{ports['floor']}"])
            targets[FLOOR] = (ports["floor"], floor)
        if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
            nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
            conf = nginx_config(work, ports["nginx"], ports["server"])
            nginx = procs.start("nginx", [nginx_bin, "-c", str(conf), "-p", str(work),
                                          "-e", str(work / "nginx-error.log")])
            targets["nginx"] = (ports["nginx"], nginx)
        else:
            print("!! nginx not installed (make system-deps): its row is skipped")
        wait_ready(f"http://{HOST}:{ports['server']}/v2/health/ready", server)
        expected = model.predict(X[:64]).tolist()  # type: ignore[attr-defined]
        for name, (port, process) in targets.items():
            url = f"http://{HOST}:{port}{infer_path}"
            wait_ready(f"http://{HOST}:{port}/v2/health/ready", process)
            expect_same_predictions(url, X[:64], expected, name)
        ours = predictions(f"http://{HOST}:{ports['server']}{infer_path}", X[:64])
        # Third-party servers run beside ours (idle servers cost nothing), so all are measured
        # alike; see thirdparty_servers for what runs and with which settings.
        for launch in launches(work, joblib_path, HOST, free_port):
            process = procs.start(launch.scenario, launch.argv, cwd=launch.cwd)
            try:
                wait_ready(f"http://{HOST}:{launch.port}/v2/models/fraud/ready", process,
                           timeout=180)
                url = f"http://{HOST}:{launch.port}{infer_path}"
                expect_same_predictions(url, X[:64], ours, launch.scenario, "our server")
                targets[launch.scenario] = (launch.port, process)
            except (RuntimeError, httpx.HTTPError) as exc:
                print(f"!! {launch.scenario} left out: {exc}; see {work / launch.scenario}.log")
        print(">> measuring (every path's predictions were checked against the model first)",
              flush=True)
        groups = {name: process.pid for name, (_, process) in targets.items()}
        groups["server"] = groups.pop("direct")
        groups["router"] = groups.pop("router+sidecar")
        urls = {name: f"http://{HOST}:{port}{infer_path}" for name, (port, _) in targets.items()}
        rounds = measure_interleaved(urls, body, work, groups)
        hops = {name: port for name, (port, _) in targets.items()
                if name in PATHS}
        for block in ALTERNATION_BLOCKS:
            print(f">> concurrency 1, targets taking turns every {block} request(s), "
                  f"{ALTERNATION_REQUESTS} requests each", flush=True)
            slices = alternating_latency(hops, body, block, ALTERNATION_REQUESTS)
            alternating[block] = added_by_alternation(slices)
            steals = [piece.steal_percent for piece in slices]
            print(f"   host steal over {len(slices)} slices of ~{SLICE_SECONDS}s: median "
                  f"{np.median(steals):.1f}%, max {max(steals):.1f}%", flush=True)
            for name in hops:
                values = [v for piece in slices for v in piece.latencies[name]]
                line = (f"   {name:<16} p50 {np.median(values):7.3f} ms  p99 "
                        f"{np.percentile(values, 99):7.3f} ms")
                if name in alternating[block]:
                    added = alternating[block][name]
                    quiet = ("too little quiet time" if added.quiet is None
                             else f"{added.quiet:+.3f} ms")
                    line += (f"  adds {added.overall:+.3f} ms at p50; with steal < "
                             f"{STEAL_QUIET_PERCENT:.0f}% ({added.quiet_share:.0%} of the run) "
                             f"{quiet}")
                print(line, flush=True)
        model_cpu, *rest = sorted(os.sched_getaffinity(0))
        if rest:
            # Last, since the pinning stays: the kubelet's static CPU manager gives a
            # Guaranteed pod's whole cpus to its container alone (docs/runtimes.md); the
            # proxies and the load run on the shared rest, as the sidecar does there.
            others = set(rest)
            print(f">> placement: the model server alone on CPU {model_cpu}; the proxies, nginx "
                  f"and wrk on CPU {','.join(map(str, rest))}", flush=True)
            on_a_hop = set().union(*PATHS.values())
            hop_groups = {name: pgid for name, pgid in groups.items() if name in on_a_hop}
            for name, pgid in hop_groups.items():
                pin_group(pgid, {model_cpu} if name == "server" else others)
            own_core_rounds = measure_interleaved({name: urls[name] for name in hops}, body,
                                                  work, hop_groups, others)
    finally:
        procs.stop_all()
    results = [median_result(r) for r in rounds.values()]
    pairs = paired(rounds)
    print(">> medians over rounds")
    for result in results:
        show(result)
    summary = ratios(results, pairs)
    print(">> ratios (medians of rounds measured back to back in this run)")
    for line in summary:
        print("   " + line)
    versus = versus_ours(results)
    if len(versus) > 1:
        print(">> our server against the third-party servers, same run (medians over rounds; "
              "ms, CPU in us per request; xN = their figure over ours)")
        for line in versus_table(versus):
            print("   " + line)
    own_core = paired(own_core_rounds)
    if own_core_rounds:
        print(">> with the model server on a core of its own (medians of paired rounds)")
        for line in ratios([median_result(r) for r in own_core_rounds.values()], own_core):
            print("   " + line)
    verdicts = targets_met(pairs, alternating, results, own_core)
    print(">> targets")
    for line in verdicts:
        print("   " + line)
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "cpus": os.cpu_count(),
              "plan": {str(c): {"rounds": n, "seconds": t} for c, (n, t) in PLAN.items()},
              "results": [asdict(r) for r in results],
              "paired_rounds": paired_report(pairs),
              "own_core_paired_rounds": paired_report(own_core),
              "alternating_added_p50_ms": {
                  str(block): {name: asdict(a) for name, a in added.items()}
                  for block, added in alternating.items()},
              "ratios": summary, "versus_ours": versus, "targets": verdicts}
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    print(f">> results: {RESULTS / 'latest.json'} (logs in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
