"""The demo's cluster: a control plane with a real node, Prometheus in it, the operator by Helm.

Pods run the project's images under containerd and a real kubelet on a node in namespaces of
its own (modelops_devcluster.realnode); the host reaches them only through relays. The demo
serves its model files from the host, as a model registry outside the cluster would, and its
load generator calls the ModelDeployment's Service from the host. Everything is stopped by
its own handle on the way out; stopping the cluster stops the node and every pod on it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from modelops_devcluster.cluster import DevCluster
from modelops_devcluster.clusterprometheus import ClusterPrometheus
from modelops_devcluster.nodeconfig import NODE_IP
from modelops_devcluster.realnode import RealNode, image_archives

from . import scenario as sc

CHART = Path(__file__).resolve().parents[3] / "charts" / "modelops"
# Kept back from --timeout for the report and for stopping everything.
RESERVE_SECONDS = 25.0
HELM_SECONDS = 260.0  # helm's own --timeout (4m), and a little for its start
# A failed run keeps at most this much of the end of each log in the report directory.
LOG_TAIL_BYTES = 256 * 1024


class DemoError(Exception):
    """The demo cannot go on; the message says what was seen."""


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.end = self.started + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check(self, what: str) -> None:
        """An error when too little time is left to begin ``what``."""
        self.bound(0.0, what)

    def bound(self, seconds: float, what: str) -> float:
        """``seconds``, or less if the overall deadline is nearer; an error when it passed."""
        left = self.remaining() - RESERVE_SECONDS
        if left <= 0:
            raise DemoError(f"out of time (--timeout) before {what}")
        return min(seconds, left)


def wait_until(probe: Callable[[], Any], timeout: float, what: str,
               describe: Callable[[], str] | None = None, every: float = 10.0) -> Any:
    """Poll ``probe`` each second until truthy; say what is awaited every ``every`` s."""
    started = time.monotonic()
    told = started
    while time.monotonic() - started < timeout:
        value = probe()
        if value:
            return value
        if time.monotonic() - told >= every:
            told = time.monotonic()
            detail = f": {describe()}" if describe else ""
            say(f"  still waiting for {what} ({told - started:.0f} s){detail}")
        time.sleep(1.0)
    detail = f"; last seen: {describe()}" if describe else ""
    raise DemoError(f"{what} not reached within {timeout:.0f} s{detail}")


MAX_UPLOAD_BYTES = 32 * 1024 * 1024
UPLOAD_NAME = re.compile(r"^/uploads/[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def replace_whole(target: Path, data: bytes) -> None:
    """Write ``target`` so that readers (the file server, the Job) see all of it or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)


class _FilesHandler(http.server.SimpleHTTPRequestHandler):
    """GET serves the directory; PUT stores one file under uploads/ (the retraining Job's
    result), whole or not at all."""

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or -1)
        if not UPLOAD_NAME.match(self.path):
            self.send_error(404, "uploads go to /uploads/<name>")
            return
        if not 0 <= length <= MAX_UPLOAD_BYTES:
            self.send_error(413 if length > 0 else 411, "a Content-Length up to 32 MiB")
            return
        replace_whole(Path(self.directory) / self.path.lstrip("/"), self.rfile.read(length))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ModelFiles:
    """The demo's model files over HTTP on the host's 127.0.0.1 (the node reaches them only
    through the relay that ``RealNode.expose`` starts); the retraining Job uploads here too."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        handler = functools.partial(_FilesHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Lab:
    """The running pieces, each stopped by its own handle in reverse order of start."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cluster: DevCluster | None = None
        self.node: RealNode | None = None
        self.prometheus: ClusterPrometheus | None = None
        self.model_files: ModelFiles | None = None
        self.model_base_url = ""  # the model files as pods see them
        self.api: Any = None
        self.setup: list[tuple[str, float]] = []  # (step, seconds) for the summary and report

    @contextlib.contextmanager
    def timed(self, what: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        took = time.monotonic() - began
        self.setup.append((what, round(took, 1)))
        say(f"  {what}: {took:.0f} s")

    def start(self, deadline: Deadline, models_dir: Path) -> None:
        archives = image_archives()  # before anything starts: no images, no demo
        say("starting the control plane and a real node (containerd, runc, kubelet, "
            f"kube-proxy, CoreDNS) with {len(archives)} images from {archives[0].parent}")
        with self.timed("control plane and real node"):
            self.cluster = DevCluster.start(self.workdir / "cluster", fake_node=False,
                                            real_node_images=archives,
                                            progress=lambda m: say(f"  {m}"))
        self.node = self.cluster.node
        if self.node is None:
            raise DemoError("the cluster started without its real node")
        self.api = self.cluster.api()
        deadline.check("Prometheus")
        say("deploying Prometheus in the cluster (namespace monitoring; it discovers pods "
            "through the API and scrapes each one every second)")
        with self.timed("Prometheus in the cluster"):
            self.prometheus = ClusterPrometheus.deploy(self.cluster, scrape_interval="1s")
        self.install_operator(deadline)
        self.model_files = ModelFiles(models_dir)
        port = self.node.expose(self.model_files.port)
        self.model_base_url = f"http://{NODE_IP}:{port}"
        say(f"serving the model files from the host; pods fetch them from "
            f"{self.model_base_url}")

    def install_operator(self, deadline: Deadline) -> None:
        assert self.cluster is not None
        args = sc.helm_install_args(CHART)
        say(f"installing the operator: helm {' '.join(args)}")
        with self.timed("operator installed by Helm"):
            try:
                result = subprocess.run(
                    [str(self.cluster.bin_dir / "helm"), *args], env=self.cluster.env,
                    capture_output=True, text=True,
                    timeout=deadline.bound(HELM_SECONDS, "installing the operator"))
            except subprocess.TimeoutExpired as error:
                raise DemoError(f"helm install did not finish in {error.timeout:.0f} s; "
                                f"{self.pods_summary(sc.RELEASE_NAMESPACE)}") from error
            if result.returncode != 0:
                raise DemoError(f"helm install failed: {(result.stderr or result.stdout)[-2000:]}"
                                f"; {self.pods_summary(sc.RELEASE_NAMESPACE)}")
        say(f"  operator: {self.pods_summary(sc.RELEASE_NAMESPACE, images=True)}")

    def stop(self) -> None:
        cluster = self.cluster
        for what, stop in (("model file server", self.model_files and self.model_files.stop),
                           ("API client", self.api and self.api.close),
                           ("cluster, its node and every pod",
                            cluster and (lambda: cluster.stop(progress=lambda _: None)))):
            if not stop:
                continue
            try:
                stop()
                say(f"stopped the {what}")
            except Exception as error:  # one failed stop must not leave the rest running
                say(f"stopping the {what} failed: {error!r}")

    # ------------------------------------------------------------------ reading the cluster
    def get(self, path: str, **params: str) -> dict[str, Any]:
        response = self.api.get(path, params=params or None)
        return response.json() if response.status_code == 200 else {}

    def policy(self) -> dict[str, Any]:
        return self.get(f"{sc.API}/namespaces/{sc.NAMESPACE}/championchallengers/{sc.POLICY}")

    def target(self) -> dict[str, Any]:
        return self.get(f"{sc.API}/namespaces/{sc.NAMESPACE}/modeldeployments/{sc.TARGET}")

    def policy_events(self) -> list[dict[str, Any]]:
        return self.events_of(sc.POLICY)

    def events_of(self, name: str) -> list[dict[str, Any]]:
        found = self.get(f"/api/v1/namespaces/{sc.NAMESPACE}/events",
                         fieldSelector=f"involvedObject.name={name}")
        return list(found.get("items") or [])

    def retraining_jobs(self) -> list[dict[str, Any]]:
        found = self.get(f"/apis/batch/v1/namespaces/{sc.NAMESPACE}/jobs",
                         labelSelector=f"modelops.io/deployment={sc.TARGET}")
        return list(found.get("items") or [])

    def pods_summary(self, namespace: str = sc.NAMESPACE, images: bool = False) -> str:
        if self.api is None:
            return "no API client yet"
        pods = self.get(f"/api/v1/namespaces/{namespace}/pods").get("items") or []
        parts = []
        for pod in pods:
            status = pod.get("status") or {}
            statuses = status.get("containerStatuses") or []
            ready = sum(1 for s in statuses if s.get("ready"))
            waiting = {(s.get("state") or {}).get("waiting", {}).get("reason")
                       for s in statuses} - {None}
            part = (f"{pod['metadata']['name']} {status.get('phase')} "
                    f"{ready}/{len(statuses)} ready")
            if waiting:
                part += f" ({', '.join(sorted(waiting))})"
            if images:
                part += f" [{', '.join(str(s.get('image')) for s in statuses)}]"
            parts.append(part)
        return ", ".join(parts) or f"no pods in {namespace} yet"

    def apply(self, manifest: dict[str, Any]) -> None:
        assert self.cluster is not None
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def service_url(self) -> str:
        """A host URL for the target's Service: its ClusterIP through a relay into the node,
        so kube-proxy spreads the load over the Service's endpoints as for any client."""
        assert self.node is not None
        service = self.get(f"/api/v1/namespaces/{sc.NAMESPACE}/services/{sc.TARGET}")
        address, port = sc.service_address(service)
        return f"http://127.0.0.1:{self.node.forward(address, port)}"

    def operator_log(self, tail: int | None = None) -> str:
        """The operator pod's log (its last ``tail`` lines), as `kubectl logs` shows it."""
        if self.cluster is None:
            return "(no cluster)"
        result = self.cluster.kubectl(
            "logs", "-n", sc.RELEASE_NAMESPACE, f"deployment/{sc.OPERATOR_DEPLOYMENT}",
            f"--tail={-1 if tail is None else tail}", check=False, timeout=30)
        return (result.stdout + result.stderr).rstrip() or "(empty operator log)"

    def save_logs(self, directory: Path) -> Path:
        """The ends of the control plane's, the node's and the pods' logs, for a failed run."""
        target = Path(directory) / "logs"
        cluster_dir = self.workdir / "cluster"
        for source in (cluster_dir / "logs", cluster_dir / "node" / "logs",
                       cluster_dir / "node" / "pod-logs"):
            for path in sorted(source.rglob("*.log")) if source.is_dir() else []:
                copy = target / path.relative_to(cluster_dir)
                copy.parent.mkdir(parents=True, exist_ok=True)
                with path.open("rb") as log:
                    log.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
                    copy.write_bytes(log.read())
        return target
