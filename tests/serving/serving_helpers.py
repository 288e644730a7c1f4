"""Helpers for the serving tests: real models on disk and real processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from benchmarks.bench_serving import write_receipt_keys  # noqa: F401 - one helper for both

HOST = "127.0.0.1"
N_FEATURES = 4


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Models:
    """Real models written to disk, with their own predictions for comparison."""

    directory: Path
    X: np.ndarray
    classifier: object
    regressor: object
    classifier_skops: Path = field(init=False)
    regressor_skops: Path = field(init=False)
    classifier_joblib: Path = field(init=False)
    classifier_onnx: Path = field(init=False)

    def onnx_labels(self, x: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.classifier_onnx),
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return session.run(None, {name: x.astype(np.float32)})[0]


def make_models(directory: Path) -> Models:
    import joblib
    import skops.io as sio
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification, make_regression
    from sklearn.linear_model import LogisticRegression, Ridge

    X, y = make_classification(n_samples=400, n_features=N_FEATURES, n_informative=3,
                               n_redundant=0, random_state=7)
    classifier = LogisticRegression().fit(X, y)
    Xr, yr = make_regression(n_samples=300, n_features=N_FEATURES, noise=5.0, random_state=3)
    regressor = Ridge().fit(Xr, yr)
    models = Models(directory, X, classifier, regressor)
    models.classifier_skops = directory / "classifier.skops"
    models.regressor_skops = directory / "regressor.skops"
    models.classifier_joblib = directory / "classifier.joblib"
    models.classifier_onnx = directory / "classifier.onnx"
    sio.dump(classifier, models.classifier_skops)
    sio.dump(regressor, models.regressor_skops)
    joblib.dump(classifier, models.classifier_joblib)
    onnx_model = to_onnx(classifier, X[:1].astype(np.float32),
                         options={id(classifier): {"zipmap": False}}, target_opset=15)
    models.classifier_onnx.write_bytes(onnx_model.SerializeToString())
    return models


def data_plane_command(name: str) -> list[str]:
    """The Go data plane's program (``modelops-sidecar``, ``modelops-router``) as installed on
    PATH by ``make install`` (into the virtualenv's bin)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"{name} is not on PATH: run `make install` (it builds dataplane/)")
    return [found]


# The Go programs keep serving for --drain-seconds after SIGTERM (5 s by default, for
# kube-proxy to stop sending); the tests stop them at once unless they test the drain.
NO_DRAIN = {"MODELOPS_DRAIN_SECONDS": "0"}


@dataclass
class Program:
    """One serving program run as a real process: ``command`` + ``args`` (by default a
    Python module of the project, ``python -m <args>``)."""

    name: str
    args: list[str]
    port: int
    metrics_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    host: str = HOST  # the address it listens on (all of 127.0.0.0/8 is loopback on Linux)
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m"])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def start(self, log_dir: Path) -> Program:
        self.log_path = log_dir / f"{self.name}-{self.port}.log"
        env = {**os.environ, **self.env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*self.command, *self.args], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_ready(self, path: str, timeout: float = 60.0) -> Program:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}:\n{self.log()}")
            try:
                url = path if path.startswith("http") else self.url + path
                if httpx.get(url, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def model_server(name: str, uri: Path | str, fmt: str, version: str, *extra: str) -> Program:
    port = free_port()
    return Program(f"serve-{name}", ["modelops_serving.server", "--name", name, "--uri", str(uri),
                                     "--format", fmt, "--version", version, "--host", HOST,
                                     "--port", str(port), "--termination-log", "", *extra], port)


def sidecar(upstream: Program, model: str, version: str, role: str, *extra: str,
            host: str = HOST) -> Program:
    port, metrics_port = free_port(host), free_port(host)
    return Program(f"sidecar-{role}", [
        "--upstream", upstream.url, "--host", host,
        "--port", str(port), "--metrics-port", str(metrics_port), "--deployment", "fraud",
        "--model", model, "--version", version, "--role", role, *extra], port, metrics_port,
        env=dict(NO_DRAIN), host=host, command=data_plane_command("modelops-sidecar"))


STICKY_KEY_FILE = "sticky.key"  # beside the session router's configuration


def router(config_path: Path, *extra: str) -> Program:
    port, metrics_port = free_port(), free_port()
    return Program("router", ["--config", str(config_path),
                              "--host", HOST, "--port", str(port), "--metrics-port",
                              str(metrics_port), "--deployment", "fraud",
                              "--reload-interval", "0.1", *extra], port, metrics_port,
                   env=dict(NO_DRAIN), command=data_plane_command("modelops-router"))


def router_config(champion: str, challenger: str | None, **fields: object) -> dict[str, object]:
    config: dict[str, object] = {"apiVersion": "router.modelops.io/v1alpha1",
                                 "kind": "RouterConfig", "champion": {"url": champion}}
    if challenger:
        config["challenger"] = {"url": challenger}
    config.update(fields)
    return config


def write_config(path: Path, config: dict[str, object]) -> None:
    """Write atomically, as a ConfigMap update does (a new file swapped into place)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config))
    os.replace(tmp, path)


def v2_request(rows: np.ndarray, request_id: str | None = None,
               datatype: str = "FP64") -> dict[str, object]:
    body: dict[str, object] = {"inputs": [{"name": "input-0", "shape": list(rows.shape),
                                           "datatype": datatype, "data": rows.ravel().tolist()}]}
    if request_id:
        body["id"] = request_id
    return body


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


# Given the connection's request count (1, 2, ...), the bytes to answer or None to close.
Script = Callable[[int], bytes | None]


def plain_answer(body: bytes = b'{"id":"from-body","outputs":[]}', *headers: bytes) -> bytes:
    head = b"\r\n".join([b"HTTP/1.1 200 OK", b"Content-Type: application/json", *headers,
                         b"Content-Length: %d" % len(body)])
    return head + b"\r\n\r\n" + body


class ScriptedUpstream:
    """A raw socket server in the test process: reads Content-Length framed requests and
    answers each as the script says."""

    def __init__(self, script: Script):
        self.script = script
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.answered = 0
        self.closed_unanswered = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # The proxy may close or reset this connection at any point (its own client went away,
        # as in the hostile suite's pipelining case): that ends this connection and nothing else.
        with conn, contextlib.suppress(ConnectionError):
            self._answer_requests(conn)

    def _answer_requests(self, conn: socket.socket) -> None:
        buffer, count = b"", 0
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(buffer) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            buffer = buffer[length:]
            count += 1
            answer = self.script(count)
            if answer is None:
                self.closed_unanswered += 1
                return
            conn.sendall(answer)
            self.answered += 1

    def stop(self) -> None:
        self.stopping = True
        self.listener.close()


class Service:
    """A Service's virtual IP, played by a relay: each new connection goes to the replica it
    routes to now. ``route_to`` also ends the connections relayed so far, so that the router's
    next request through it connects anew and reaches the replica named last."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.url = f"http://{HOST}:{self.listener.getsockname()[1]}"
        self.replica: tuple[str, int] | None = None
        self.lock = threading.Lock()
        self.relayed: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def route_to(self, replica: Program) -> None:
        with self.lock:
            self.replica = (replica.host, replica.port)
            relayed, self.relayed = self.relayed, []
        for sock in relayed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            relayed, self.relayed = self.relayed, []
        for sock in relayed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                replica = self.replica
            try:
                assert replica is not None
                upstream = socket.create_connection(replica, timeout=5)
                upstream.settimeout(None)
            except (OSError, AssertionError):
                client.close()
                continue
            with self.lock:
                self.relayed += [client, upstream]
            threading.Thread(target=_relay, args=(client, upstream), daemon=True).start()


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):  # one side ended: end both directions
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
