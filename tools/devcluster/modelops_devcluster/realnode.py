"""A real node for the dev cluster: containerd, runc, CNI, a real kubelet and kube-proxy.

The node runs in namespaces of its own (nodens.py) beside a control plane on the host's
127.0.0.1 (cluster.py); nsrelay.py carries what crosses between them. The project's images
(dist/images/*.tar, `make images`) are imported into the node's containerd, so pods run the
images users install, with their own addresses, and Services spread over every ready endpoint.
CoreDNS resolves Service names. `stop` kills every process of the node and removes its
cgroups; `leftovers` proves nothing stayed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from . import nodens
from .cluster import kubeconfig_document
from .nodeconfig import (
    COREDNS_IMAGE,
    NODE_IP,
    PAUSE_IMAGE,
    NodePaths,
    cni_conflist,
    containerd_config,
    coredns_manifests,
    kube_proxy_config,
    kubelet_config,
)
from .nodens import NodeNamespaces
from .pki import NODE_NAME

NODE_STATE_FILE = "node.json"
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
RELAY_START_SECONDS = 20
PYTHON = sys.executable  # the relay is this package's own module

Progress = Callable[[str], None]


class RealNodeError(RuntimeError):
    """The node could not start; the message names the part and its log."""


def images_dir() -> Path:
    """Where `make images` wrote its archives (dist/images, or $MODELOPS_IMAGES_DIR)."""
    default = Path(__file__).resolve().parents[3] / "dist" / "images"
    return Path(os.environ.get("MODELOPS_IMAGES_DIR") or default)


def image_archives(directory: Path | None = None) -> list[Path]:
    directory = directory or images_dir()
    archives = sorted(directory.glob("*.tar"))
    if not archives:
        raise RealNodeError(f"no image archives in {directory}; run `make images`")
    return archives


def archive_references(archive: Path) -> list[str]:
    """The references a docker-archive names (its manifest.json's RepoTags)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        manifest = json.load(member) if member else []
    return [tag for image in manifest for tag in image.get("RepoTags") or []]


def image_reference(repository: str, directory: Path | None = None) -> str:
    """The full reference (with its tag) of an image `make images` built into the directory."""
    directory = directory or images_dir()
    for archive in sorted(directory.glob("*.tar")):
        for reference in archive_references(archive):
            if reference.rsplit(":", 1)[0] == repository:
                return reference
    raise RealNodeError(f"no image {repository} in {directory}; run `make images`")


def run_dir_for(workdir: Path) -> Path:
    """A short runtime directory for the node's sockets, one per cluster directory."""
    digest = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:10]
    return Path("/run/modelops") / digest


@dataclass
class NodeState:
    state_dir: str
    run_dir: str
    bin_dir: str
    namespaces: dict[str, Any]
    api_port: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def paths(self) -> NodePaths:
        return NodePaths(Path(self.state_dir), Path(self.run_dir))

    @property
    def ns(self) -> NodeNamespaces:
        return NodeNamespaces(**self.namespaces)


def _tokens(tokens_csv: Path) -> dict[str, str]:
    """user -> token, from the API server's static token file."""
    users: dict[str, str] = {}
    for line in tokens_csv.read_text().splitlines():
        token, user, *_ = line.split(",")
        users[user] = token
    return users


class RealNode:
    def __init__(self, state: NodeState) -> None:
        self.state = state

    # ------------------------------------------------------------------------------ use
    @property
    def name(self) -> str:
        return NODE_NAME

    def forward(self, host: str, port: int) -> int:
        """A port on the host's 127.0.0.1 that reaches host:port inside the node (a Service
        ClusterIP, a NodePort on the node's address, a pod). Lives until the node stops."""
        rule = f"host:127.0.0.1:0=node:{host}:{port}"
        _, ports = self._start_relay([rule], name=f"forward-{host}-{port}")
        return int(ports[rule])

    def expose(self, port: int) -> int:
        """A port on the node's address that reaches 127.0.0.1:port on the host: what pods see
        of a server outside the cluster (a model registry, say). Lives until the node stops."""
        rule = f"node:{NODE_IP}:0=host:127.0.0.1:{port}"
        _, ports = self._start_relay([rule], name=f"expose-{port}")
        return int(ports[rule])

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = [str(Path(self.state.bin_dir) / "ctr"),
                   f"--address={self.state.paths.containerd_socket}", "--namespace=k8s.io", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    # ------------------------------------------------------------------------------ lifecycle
    @classmethod
    def load(cls, cluster_workdir: Path) -> RealNode | None:
        path = cluster_workdir / NODE_STATE_FILE
        if not path.exists():
            return None
        return cls(NodeState(**json.loads(path.read_text())))

    @classmethod
    def start(
        cls, cluster: Any, images: Sequence[Path], progress: Progress = print,
    ) -> RealNode:
        workdir = Path(cluster.workdir)
        previous = cls.load(workdir)
        if previous is not None:  # a node of an earlier run that was never stopped
            previous.stop()
        paths = NodePaths(workdir / "node", run_dir_for(workdir))
        api_port = int(cluster.api_url.rsplit(":", 1)[1])
        cgroup = f"modelops-node-{paths.run.name}"
        state = NodeState(str(paths.state), str(paths.run), str(cluster.bin_dir),
                          asdict(NodeNamespaces(cgroup)), api_port)
        node = cls(state)
        node._save(workdir)
        try:
            node._start(cluster, images, progress)
        except BaseException:
            node.stop()
            raise
        node._save(workdir)
        return node

    def _start(self, cluster: Any, images: Sequence[Path], progress: Progress) -> None:
        began = time.monotonic()
        paths = self.state.paths
        shutil.rmtree(paths.run, ignore_errors=True)  # sockets and kubelet state start afresh
        for directory in (paths.state / "logs", paths.run, paths.cni_conf_dir):
            directory.mkdir(parents=True, exist_ok=True)
        ns = self.state.ns
        nodens.create(ns, paths.state)
        self.state.namespaces = asdict(ns)
        progress(f"node namespaces ready ({time.monotonic() - began:.1f} s)")

        port = self.state.api_port
        self._start_relay([f"node:{NODE_IP}:{port}=host:127.0.0.1:{port}"], name="relay",
                          connect_proxy=paths.egress_socket)

        config = paths.state / "containerd.toml"
        archives_dir = images[0].parent if images else None
        config.write_text(containerd_config(paths, RUNC, CNI_BIN_DIR,
                                            image_reference(PAUSE_IMAGE, archives_dir)))
        (paths.cni_conf_dir / "10-modelops.conflist").write_text(json.dumps(cni_conflist(paths)))
        self._spawn("containerd", ["containerd", f"--config={config}"])
        self._wait("containerd", lambda: self.ctr("version", timeout=5).returncode == 0, 30)
        progress(f"containerd ready ({time.monotonic() - began:.1f} s)")
        self.import_images(images, progress)

        tokens = _tokens(Path(cluster.workdir) / "pki" / "tokens.csv")
        ca = Path(cluster.ca_file)
        server = f"https://{NODE_IP}:{port}"
        kubelet_kc = paths.state / "kubelet.kubeconfig"
        kubelet_kc.write_text(yaml.safe_dump(
            kubeconfig_document(server, ca, tokens[f"system:node:{NODE_NAME}"])))
        (paths.state / "resolv.conf").write_text("")
        kubelet_yaml = paths.state / "kubelet.yaml"
        kubelet_yaml.write_text(yaml.safe_dump(kubelet_config(paths, self.state.ns.cgroup, ca)))
        self._spawn("kubelet", [
            "kubelet", f"--config={kubelet_yaml}", f"--kubeconfig={kubelet_kc}",
            f"--node-ip={NODE_IP}", f"--hostname-override={NODE_NAME}",
            f"--root-dir={paths.kubelet_root}", f"--cert-dir={paths.state / 'kubelet-pki'}",
            "--v=1",
        ])
        proxy_kc = paths.state / "kube-proxy.kubeconfig"
        proxy_kc.write_text(yaml.safe_dump(
            kubeconfig_document(server, ca, tokens["system:kube-proxy"])))
        proxy_yaml = paths.state / "kube-proxy.yaml"
        proxy_yaml.write_text(yaml.safe_dump(kube_proxy_config(proxy_kc, NODE_NAME)))
        self._spawn("kube-proxy", ["kube-proxy", f"--config={proxy_yaml}"])

        self._wait("kubelet", lambda: _node_ready(cluster), 90)
        progress(f"node {NODE_NAME} Ready ({time.monotonic() - began:.1f} s)")
        manifests = yaml.safe_dump_all(
            coredns_manifests(image_reference(COREDNS_IMAGE, archives_dir)))
        cluster.kubectl("apply", "--server-side", "--field-manager=modelops-devcluster",
                        "-f", "-", input=manifests)
        cluster.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns",
                        "--timeout=90s", timeout=100)
        progress(f"CoreDNS ready ({time.monotonic() - began:.1f} s)")

    def import_images(self, images: Sequence[Path], progress: Progress = print) -> None:
        for archive in images:
            began = time.monotonic()
            result = self.ctr("images", "import", "--local", str(archive), timeout=600)
            if result.returncode != 0:
                raise RealNodeError(f"importing {archive} failed: {result.stderr.strip()}")
            progress(f"imported {archive.name} ({time.monotonic() - began:.1f} s)")

    def stop(self) -> None:
        """Kill every process of the node (whatever state it is in) and remove its cgroups."""
        ns = self.state.ns
        nodens.destroy(ns)
        shutil.rmtree(self.state.run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # /run/modelops, when no other node uses it
            Path(self.state.run_dir).parent.rmdir()
        self.state.pids.clear()

    def leftovers(self) -> list[str]:
        found = nodens.leftovers(self.state.ns,
                                 [Path(self.state.state_dir), Path(self.state.run_dir)])
        if Path(self.state.run_dir).exists():
            found.append(f"directory {self.state.run_dir}")
        return found

    # ------------------------------------------------------------------------------ internals
    def _save(self, workdir: Path) -> None:
        (workdir / NODE_STATE_FILE).write_text(json.dumps(asdict(self.state), indent=2))

    def _log(self, name: str) -> IO[bytes]:
        return (self.state.paths.state / "logs" / f"{name}.log").open("ab")

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        binary = str(Path(self.state.bin_dir) / argv[0])
        with self._log(name) as log:
            process = subprocess.Popen(
                self.state.ns.enter([binary, *argv[1:]]), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=nodens.join_node_cgroup(self.state.ns.cgroup),
            )
        self.state.pids[name] = process.pid
        return process

    def _start_relay(
        self, rules: list[str], name: str, connect_proxy: Path | None = None
    ) -> tuple[subprocess.Popen[str], dict[str, int]]:
        argv = [PYTHON, "-m", "modelops_devcluster.nsrelay", f"--netns={self.state.ns.netns}"]
        argv += [f"--forward={rule}" for rule in rules]
        if connect_proxy:
            argv.append(f"--connect-proxy={connect_proxy}")
        with self._log(name) as log:
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                start_new_session=True, preexec_fn=nodens.join_node_cgroup(self.state.ns.cgroup),
            )
        assert process.stdout is not None
        # Its first line says where it listens; a relay that says nothing in time is a failure.
        ready, _, _ = select.select([process.stdout], [], [], RELAY_START_SECONDS)
        line = process.stdout.readline() if ready else ""
        if not line:
            process.kill()
            raise RealNodeError(f"the relay did not start; see {self.state.state_dir}/logs/")
        self.state.pids[name] = process.pid
        return process, dict(json.loads(line)["ports"])

    def _wait(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.25)
        log = self.state.paths.state / "logs" / f"{name}.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RealNodeError(f"{name} not ready after {timeout:.0f} s; log {log}:\n{tail}")


def _node_ready(cluster: Any) -> bool:
    with cluster.api() as api:
        response = api.get(f"/api/v1/nodes/{NODE_NAME}")
    if response.status_code != 200:
        return False
    conditions = response.json().get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
