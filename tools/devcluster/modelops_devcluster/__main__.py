"""`modelops-devcluster up|down|status`: the dev cluster for people (tests use DevCluster)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cluster import STATE_FILE, DevCluster, DevClusterError, cache_root, leftover_processes
from .nodens import NodeNamespaceError
from .realnode import RealNodeError, image_archives


def _say(message: str) -> None:
    print(f"[devcluster] {message}", flush=True)


def _workdir() -> Path:
    return cache_root() / "cluster"


def _kubeconfig() -> Path:
    return cache_root() / "kubeconfig"


def up(args: argparse.Namespace) -> int:
    if args.no_node:
        cluster = DevCluster.start(_workdir(), kubeconfig=_kubeconfig(), progress=_say)
    else:
        cluster = DevCluster.start(_workdir(), kubeconfig=_kubeconfig(), fake_node=False,
                                   real_node_images=image_archives(), progress=_say)
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"export PATH={cache_root() / 'bin'}:$PATH")
    return 0


def down(_: argparse.Namespace) -> int:
    if not (_workdir() / STATE_FILE).exists():
        _say("no cluster state found; nothing to stop")
        return 0
    cluster = DevCluster.load(_workdir())
    node = cluster.node
    cluster.stop(progress=_say)
    left = [f"{name} (pid {pid})"
            for pid, name in leftover_processes(cache_root() / "bin", workdir=_workdir())]
    left += node.leftovers() if node else []
    for thing in left:
        _say(f"warning: still there: {thing}")
    return 1 if left else 0


def status(_: argparse.Namespace) -> int:
    if not (_workdir() / STATE_FILE).exists():
        _say("no cluster")
        return 1
    cluster = DevCluster.load(_workdir())
    running = cluster.running_components()
    node = cluster.node
    if node is not None and node.leftovers():
        running.append(f"node {node.name}")
    _say(f"api {cluster.api_url}; running: {', '.join(running) or 'nothing'}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0 if running else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelops-devcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser(
        "up", help="start the control plane and a real node running dist/images")
    up_parser.add_argument("--no-node", action="store_true",
                           help="a kwok fake node instead (pods Ready on paper, none runs)")
    up_parser.set_defaults(run=up)
    commands.add_parser("down", help="stop every component").set_defaults(run=down)
    commands.add_parser("status", help="show what is running").set_defaults(run=status)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (DevClusterError, RealNodeError, NodeNamespaceError) as error:
        print(f"[devcluster] error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
