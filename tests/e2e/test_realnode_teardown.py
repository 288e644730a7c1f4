"""Stopping a cluster with a real node leaves nothing behind on the machine.

A cluster of its own (control plane, real node, CoreDNS running as a container with a
tmpfs-backed token volume), stopped the way `make cluster-down` stops one: afterwards no
process, mount, network namespace or cgroup of it exists, and the host's settings are as
they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelops_devcluster.cluster import DevCluster, leftover_processes
from modelops_devcluster.nodeconfig import COREDNS_IMAGE, KUBELET_SYSCTLS, PAUSE_IMAGE
from modelops_devcluster.nodens import cgroup_hierarchies
from modelops_devcluster.realnode import image_archives

pytestmark = pytest.mark.e2e


def _archives_for(*references: str) -> list[Path]:
    """Only the node's own images: the test needs no workload image."""
    wanted = {r.split("/")[-1].split(":")[0] for r in references}
    return [a for a in image_archives() if any(w in a.name for w in wanted)]


def _host_settings() -> dict[str, str]:
    keys = [*KUBELET_SYSCTLS, "net/ipv4/ip_forward"]
    return {k: Path(f"/proc/sys/{k}").read_text() for k in keys}


def _interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_stopping_the_cluster_leaves_no_process_mount_namespace_or_cgroup(
    tmp_path: Path,
) -> None:
    settings, interfaces = _host_settings(), _interfaces()
    archives = _archives_for(PAUSE_IMAGE, COREDNS_IMAGE)
    assert len(archives) == 2, archives
    cluster = DevCluster.start(tmp_path / "cluster", fake_node=False, gateway_api=False,
                               real_node_images=archives, progress=print)
    try:
        node = cluster.node
        assert node is not None
        pods = json.loads(cluster.kubectl("get", "pods", "-n", "kube-system", "-o",
                                          "json").stdout)["items"]
        assert [p["status"]["phase"] for p in pods] == ["Running"]
        running = node.leftovers()  # everything the node is made of, while it runs
        assert any("cgroup" in thing for thing in running)
        assert any("network namespace" in thing for thing in running)
        # The pods' mounts (rootfs overlays, token tmpfs) exist only in the node's namespace.
        node_mounts = Path(f"/proc/{node.state.ns.holder_pid}/mountinfo").read_text()
        assert str(tmp_path) in node_mounts
        assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
    finally:
        cluster.stop(progress=print)

    assert node.leftovers() == []
    assert leftover_processes(cluster.bin_dir, workdir=tmp_path / "cluster") == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(tmp_path) not in mounts and "/run/modelops" not in mounts
    cgroup = node.state.ns.cgroup
    assert not any((h / cgroup).exists() for h in cgroup_hierarchies())
    assert _host_settings() == settings
    assert _interfaces() == interfaces
