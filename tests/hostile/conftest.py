"""Fixtures of the hostile-client suite: the data plane's programs started by their command
names, nginx in front of the same model server, and the comparison table printed at the end.

What runs (all on 127.0.0.1, started once per session):

    nginx ──────────────────────────────────────► modelops-serve fraud v1 (server A)
    modelops-sidecar (champion) ────────────────► server A
    modelops-sidecar (challenger) ──────────────► modelops-serve fraud v2 (server B, same model)
    modelops-router (split, 50/50) ─► the two sidecars

The programs are found on PATH (``modelops-serve``, ``modelops-sidecar``, ``modelops-router``),
else beside the Python running the tests, so a rewrite installed under the same names is
judged by the same tests.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from benchmarks.bench_serving import nginx_config
from tests.hostile.cases import Case
from tests.hostile.rawhttp import MemoryWatch, MiB, Outcome, health_seconds
from tests.serving.serving_helpers import (
    Program,
    free_port,
    make_models,
    metric_value,
    model_server,
    router,
    router_config,
    sidecar,
    write_config,
    write_receipt_keys,
)

# A proxy's resident memory may grow by this much over its level before a case, at its peak
# during the case (README.md: why 64 MiB).
RSS_BUDGET = 64 * MiB
HEALTH_BOUND = 2.0  # seconds a fresh health request may take, during and after an attack
NGINX_EXTRA = """
    client_max_body_size 16m;      # the sidecar's and the router's --max-body-bytes default
    client_header_timeout 5s;      # test_slow: a partial head is closed within 10 s
    client_body_timeout 5s;
"""


@dataclass
class Nginx:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, upstream_port: int) -> Nginx:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = nginx_config(self.directory, self.port, upstream_port, NGINX_EXTRA)
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        log = open(self.directory / "nginx.log", "wb")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.directory), "-e",
             str(self.directory / "nginx-error.log")], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        return self

    def log(self) -> str:
        path = self.directory / "nginx-error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the master stops its workers
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Proxy:
    """One of the proxies under attack, as the tests see it."""

    name: str  # nginx | sidecar | router
    port: int
    health_path: str
    process: subprocess.Popen[bytes]
    program: Program | Nginx
    metrics_url: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def memory(self) -> MemoryWatch:
        return MemoryWatch(self.pid, with_children=self.name == "nginx")

    def health(self) -> float | None:
        return health_seconds(self.port, self.health_path, HEALTH_BOUND)

    def metrics(self) -> str:
        assert self.metrics_url is not None
        return httpx.get(self.metrics_url, timeout=10).text

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def log(self) -> str:
        return self.program.log()[-4000:]

    def check_after(self, outcome: Outcome | None = None, watch: MemoryWatch | None = None,
                    budget: int = RSS_BUDGET) -> None:
        """The contract every attack ends with: no crash, no 5xx of its making, health still
        answering within HEALTH_BOUND, memory within budget."""
        assert self.alive(), f"{self.name} died:\n{self.log()}"
        if outcome is not None:
            # 501 is what RFC 9112 (6.1) asks for a transfer coding the server does not know.
            assert all(status < 500 or status == 501 for status in outcome.statuses), \
                f"{self.name} answered {outcome.label()} to client input"
        seconds = self.health()
        assert seconds is not None, f"{self.name}: no health answer within {HEALTH_BOUND}s"
        if watch is not None:
            assert watch.growth <= budget, (
                f"{self.name}: resident memory grew by {watch.growth / MiB:.0f} MiB, over the "
                f"budget of {budget / MiB:.0f} MiB")


@dataclass
class DataPlane:
    server_a: Program
    server_b: Program
    nginx: Proxy
    sidecar: Proxy  # champion, in front of server A
    challenger: Proxy  # in front of server B
    router: Proxy  # split 50/50 between the two sidecars
    log_dir: Path
    work: Path
    model_path: Path

    def target(self, name: str) -> Proxy:
        return {"nginx": self.nginx, "sidecar": self.sidecar, "router": self.router}[name]

    def attack(self, case: str, spec: Case, target: str,
               table: Table) -> tuple[Proxy, Outcome, MemoryWatch]:
        """Send a case to nginx (once per case) and to our ``target``, record both outcomes in
        the table, and hold ours to the case's contract."""
        table.once(case, "nginx", lambda: spec.run(self.nginx.port).label())
        proxy = self.target(target)
        with proxy.memory() as watch:
            outcome = spec.run(proxy.port)
        table.record(case, target, outcome.label())
        spec.contract(outcome)
        return proxy, outcome, watch


# -- the comparison table --------------------------------------------------------------------


@dataclass
class Table:
    rows: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None

    def record(self, case: str, target: str, outcome: str) -> None:
        self.rows.setdefault(case, {})[target] = outcome
        if self.path is not None:
            self.path.write_text(self.render())

    def once(self, case: str, target: str, attack: Callable[[], str]) -> None:
        """Record ``attack``'s outcome unless this case's row has it already (nginx is
        attacked once per case, whichever of our targets asks first)."""
        if target not in self.rows.get(case, {}):
            self.record(case, target, attack())

    def render(self) -> str:
        columns = ("nginx", "sidecar", "router")
        widths = [max([len("case")] + [len(c) for c in self.rows])]
        widths += [max([len(c)] + [len(r.get(c, "-")) for r in self.rows.values()])
                   for c in columns]
        lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(("case", *columns), widths,
                                                                strict=True)) + " |",
                 "| " + " | ".join("-" * w for w in widths) + " |"]
        for case, row in self.rows.items():
            cells = (case, *(row.get(c, "-") for c in columns))
            lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(cells, widths,
                                                                        strict=True)) + " |")
        return "\n".join(lines) + "\n"


TABLE = Table()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TABLE.rows:
        return
    terminalreporter.section("hostile clients: nginx against ours")
    terminalreporter.write(TABLE.render())
    if TABLE.path is not None:
        terminalreporter.write_line(f"(also in {TABLE.path})")


@pytest.fixture(scope="session")
def table(tmp_path_factory: pytest.TempPathFactory) -> Table:
    TABLE.path = tmp_path_factory.getbasetemp() / "hostile-table.md"
    return TABLE


# -- the programs ----------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


# nginx's client_header_timeout and client_body_timeout above, so that both face the slow
# clients alike (our defaults are 10 s and 60 s).
SAME_TIMEOUTS_AS_NGINX = ("--header-timeout", "5", "--body-timeout", "5")


def start_sidecar(upstream: Program, version: str, role: str, log_dir: Path,
                  *extra: str) -> Program:
    program = sidecar(upstream, "fraud", version, role, *SAME_TIMEOUTS_AS_NGINX, *extra)
    program.start(log_dir).wait_ready("/v2/health/ready")
    return program


def start_router(config_path: Path, log_dir: Path, *extra: str) -> Program:
    program = router(config_path, *SAME_TIMEOUTS_AS_NGINX, *extra)
    program.start(log_dir).wait_ready("/healthz")
    return program


def sidecar_proxy(program: Program) -> Proxy:
    assert program.process is not None
    return Proxy("sidecar", program.port, "/v2/health/live", program.process, program,
                 program.metrics_url)


def router_proxy(program: Program) -> Proxy:
    assert program.process is not None
    return Proxy("router", program.port, "/healthz", program.process, program,
                 program.metrics_url)


@pytest.fixture(scope="session")
def data_plane(tmp_path_factory: pytest.TempPathFactory, table: Table) -> Iterator[DataPlane]:
    work = tmp_path_factory.mktemp("hostile")
    log_dir = work / "logs"
    log_dir.mkdir()
    models = make_models(work)
    started: list[Program | Nginx] = []
    try:
        server_a = model_server("fraud", models.classifier_skops, "sklearn", "v1")
        server_b = model_server("fraud", models.classifier_skops, "sklearn", "v2")
        for server in (server_a, server_b):
            started.append(server.start(log_dir))
        nginx = Nginx(free_port(), work / "nginx").start(server_a.port)
        started.append(nginx)
        for server in (server_a, server_b):
            server.wait_ready("/v2/health/ready")
        # Signed feedback, as the operator runs them: labels need the answer's receipt.
        signed = ("--receipt-keys-file", str(write_receipt_keys(work / "receipt-keys.json")))
        champion = start_sidecar(server_a, "v1", "champion", log_dir,
                                 *signed)
        started.append(champion)
        challenger = start_sidecar(server_b, "v2", "challenger", log_dir, *signed)
        started.append(challenger)
        config_path = work / "router.json"
        write_config(config_path, router_config(champion.url, challenger.url, mode="split",
                                                challengerWeight=50))
        front = start_router(config_path, log_dir, *signed)
        started.append(front)
        assert nginx.process is not None
        nginx_proxy = Proxy("nginx", nginx.port, "/v2/health/live", nginx.process, nginx)
        wait_until(lambda: nginx_proxy.health() is not None, 30, "nginx answers")
        yield DataPlane(server_a, server_b, nginx_proxy, sidecar_proxy(champion),
                        sidecar_proxy(challenger), router_proxy(front), log_dir, work,
                        models.classifier_skops)
    finally:
        for program in reversed(started):
            program.stop()


@dataclass
class Fresh:
    """Proxies started for one test, for the attacks that may leave a proxy bloated: a new
    sidecar in front of server A, or a new router in front of a new sidecar."""

    data_plane: DataPlane
    started: list[Program] = field(default_factory=list)

    def sidecar(self, upstream: Program | None = None) -> Proxy:
        program = start_sidecar(upstream or self.data_plane.server_a, "v1", "champion",
                                self.data_plane.log_dir)
        self.started.append(program)
        return sidecar_proxy(program)

    def router(self, upstream: Program | None = None, **config: object) -> Proxy:
        behind = self.sidecar(upstream)
        path = self.data_plane.work / f"router-{free_port()}.json"
        write_config(path, router_config(f"http://127.0.0.1:{behind.port}", None,
                                         **(config or {"mode": "split"})))
        program = start_router(path, self.data_plane.log_dir)
        self.started.append(program)
        return router_proxy(program)

    def target(self, name: str, upstream: Program | None = None) -> Proxy:
        return self.sidecar(upstream) if name == "sidecar" else self.router(upstream)

    def stop(self) -> None:
        for program in reversed(self.started):
            program.stop()


@dataclass
class Heavy(Fresh):
    """One sidecar and one router (with its own sidecar) for a module's memory-hungry cases,
    started when first asked for: each case measures from the level it finds."""

    made: dict[str, Proxy] = field(default_factory=dict)

    def target(self, name: str, upstream: Program | None = None) -> Proxy:
        if name not in self.made:
            self.made[name] = super().target(name, upstream)
        return self.made[name]


@pytest.fixture
def fresh(data_plane: DataPlane) -> Iterator[Fresh]:
    made = Fresh(data_plane)
    yield made
    made.stop()


@pytest.fixture(scope="module")
def heavy(data_plane: DataPlane) -> Iterator[Heavy]:
    made = Heavy(data_plane)
    yield made
    made.stop()
