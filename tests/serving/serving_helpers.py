"""Helpers for the serving tests: real models on disk and real processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

HOST = "127.0.0.1"
N_FEATURES = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
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


@dataclass
class Program:
    """One serving program run as a real process."""

    name: str
    args: list[str]
    port: int
    metrics_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def start(self, log_dir: Path) -> Program:
        self.log_path = log_dir / f"{self.name}-{self.port}.log"
        env = {**os.environ, **self.env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.args], stdout=log, stderr=subprocess.STDOUT, env=env
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


def sidecar(upstream: Program, model: str, version: str, role: str, *extra: str) -> Program:
    port, metrics_port = free_port(), free_port()
    return Program(f"sidecar-{role}", [
        "modelops_serving.sidecar", "--upstream", upstream.url, "--host", HOST,
        "--port", str(port), "--metrics-port", str(metrics_port), "--deployment", "fraud",
        "--model", model, "--version", version, "--role", role, *extra], port, metrics_port)


def router(config_path: Path, *extra: str) -> Program:
    port, metrics_port = free_port(), free_port()
    return Program("router", ["modelops_serving.router", "--config", str(config_path),
                              "--host", HOST, "--port", str(port), "--metrics-port",
                              str(metrics_port), "--deployment", "fraud",
                              "--reload-interval", "0.1", *extra], port, metrics_port)


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
