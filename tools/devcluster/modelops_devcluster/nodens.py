"""The real node's namespaces and cgroups: made by the node, removed by the node, checked.

A holder process (`unshare --net --mount`) owns the node's network and mount namespaces; the
node's daemons enter them with nsenter. Every process of the node (holder, relay, containerd,
shims, kubelet, kube-proxy and every container) lives under one cgroup, `<hierarchy>/<name>`,
in every mounted hierarchy, so stopping the node is: kill whatever that cgroup holds, remove
the cgroups. The namespaces die with their last process. Nothing touches the host's
interfaces, firewall rules or kernel settings: the veth pair, the routes and the iptables rules
exist only inside the node's network namespace, and the kubelet's six machine-wide settings
are answered by read-only files mounted over /proc/sys inside the node's mount namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .nodeconfig import KUBELET_SYSCTLS, NODE_IP, NODE_PREFIX

# Paths the kubelet and libcni use whatever they are told: a private tmpfs inside the node's
# mount namespace keeps what they write there off the host.
PRIVATE_DIRS = ("/var/log/containers", "/var/lib/cni")


class NodeNamespaceError(RuntimeError):
    pass


@dataclass
class NodeNamespaces:
    """What `destroy` and `leftovers` need, saved in the node's state file."""

    cgroup: str  # the cgroup's name under each hierarchy's root, e.g. modelops-node-1a2b3c
    holder_pid: int = 0
    netns_inode: int = 0
    created_dirs: list[str] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return f"/proc/{self.holder_pid}/ns/net"

    def enter(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs argv inside the node's network and mount namespaces."""
        return ["nsenter", f"--target={self.holder_pid}", "--net", "--mount", "--", *argv]


def cgroup_hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers, named ones, or the v2 root)."""
    found: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split(" ", 1)[0]
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(left.split(" ")[4]))
    return found


def _copy_cpuset(parent: Path, child: Path) -> None:
    # cgroup v1 cpuset: a cgroup with empty cpus/mems refuses processes.
    for name in ("cpuset.cpus", "cpuset.mems"):
        source = parent / name
        if source.exists() and not (child / name).read_text().strip():
            (child / name).write_text(source.read_text())


def create_cgroups(name: str) -> None:
    for hierarchy in cgroup_hierarchies():
        for path in (hierarchy / name, hierarchy / name / "node"):
            path.mkdir(exist_ok=True)
            _copy_cpuset(path.parent, path)


def join_node_cgroup(name: str) -> Callable[[], None]:
    """A preexec_fn that moves the child into the node's cgroup before it runs anything."""
    targets = [str(h / name / "node" / "cgroup.procs") for h in cgroup_hierarchies()]

    def join() -> None:
        pid = str(os.getpid()).encode()
        for target in targets:
            fd = os.open(target, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    return join


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / name
        if not root.exists():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def create(ns: NodeNamespaces, state_dir: Path) -> None:
    """Start the holder, give the node its network, hide the host's settings from the kubelet."""
    create_cgroups(ns.cgroup)
    holder = subprocess.Popen(
        ["unshare", "--net", "--mount", "--propagation=private", "--", "sleep", "infinity"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=join_node_cgroup(ns.cgroup),
    )
    ns.holder_pid = holder.pid
    deadline = time.monotonic() + 10
    own = os.stat("/proc/self/ns/net").st_ino
    while os.stat(ns.netns).st_ino == own:  # unshare has not yet made the namespace
        if time.monotonic() > deadline or holder.poll() is not None:
            raise NodeNamespaceError("the node's namespaces could not be created (unshare)")
        time.sleep(0.02)
    ns.netns_inode = os.stat(ns.netns).st_ino

    def run(*argv: str) -> None:
        result = subprocess.run(ns.enter(argv), capture_output=True, text=True)
        if result.returncode != 0:
            raise NodeNamespaceError(f"{' '.join(argv)}: {result.stderr.strip()}")

    run("ip", "link", "set", "lo", "up")
    # Both ends of the veth stay inside the namespace: the node has an address and a default
    # route, and whatever takes that route goes nowhere.
    run("ip", "link", "add", "node0", "type", "veth", "peer", "name", "node0-peer")
    run("ip", "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", "node0")
    run("ip", "link", "set", "node0", "up")
    run("ip", "link", "set", "node0-peer", "up")
    run("ip", "route", "add", "default", "dev", "node0")
    run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")  # this namespace's own setting

    sysctl_dir = state_dir / "sysctl"
    for key, value in KUBELET_SYSCTLS.items():
        answer = sysctl_dir / key.replace("/", ".")
        answer.parent.mkdir(parents=True, exist_ok=True)
        answer.write_text(value + "\n")
        run("mount", "--bind", str(answer), f"/proc/sys/{key}")
        run("mount", "-o", "remount,bind,ro", f"/proc/sys/{key}")
    for directory in PRIVATE_DIRS:
        if not Path(directory).exists():
            Path(directory).mkdir(parents=True)
            ns.created_dirs.append(directory)
        run("mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "tmpfs", directory)


def destroy(ns: NodeNamespaces, timeout: float = 30) -> None:
    """Kill every process of the node, remove its cgroups and the directories it made."""
    deadline = time.monotonic() + timeout
    while pids := cgroup_pids(ns.cgroup):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise NodeNamespaceError(f"processes of the node survive SIGKILL: {sorted(pids)}")
        time.sleep(0.1)
    for pid in (ns.holder_pid,):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / ns.cgroup
        if not root.exists():
            continue
        # Deepest first: a cgroup with children cannot be removed. A cgroup whose last
        # process is still exiting is busy for a moment.
        children = sorted((p for p in root.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True)
        for path in [*children, root]:
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
    for directory in ns.created_dirs:
        with contextlib.suppress(OSError):
            Path(directory).rmdir()


def leftovers(ns: NodeNamespaces, state_paths: Sequence[Path] = ()) -> list[str]:
    """Whatever of the node still exists on the host: processes, cgroups, namespaces, mounts."""
    found = [f"process {pid} in cgroup {ns.cgroup}" for pid in sorted(cgroup_pids(ns.cgroup))]
    found += [f"cgroup {h / ns.cgroup}" for h in cgroup_hierarchies() if (h / ns.cgroup).exists()]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if ns.netns_inode and os.stat(entry / "ns" / "net").st_ino == ns.netns_inode:
                    found.append(f"process {entry.name} in the node's network namespace")
    mounts = Path("/proc/self/mountinfo").read_text()
    for path in state_paths:
        if str(path) in mounts:
            found.append(f"a mount under {path}")
    found += [f"directory {d}" for d in ns.created_dirs if Path(d).exists()]
    return found
