"""`modelops-devcluster up|down|status`: the dev cluster for people (tests use DevCluster)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cluster import STATE_FILE, DevCluster, DevClusterError, cache_root, leftover_processes


def _say(message: str) -> None:
    print(f"[devcluster] {message}", flush=True)


def _workdir() -> Path:
    return cache_root() / "cluster"


def _kubeconfig() -> Path:
    return cache_root() / "kubeconfig"


def up(_: argparse.Namespace) -> int:
    cluster = DevCluster.start(_workdir(), kubeconfig=_kubeconfig(), progress=_say)
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"export PATH={cache_root() / 'bin'}:$PATH")
    return 0


def down(_: argparse.Namespace) -> int:
    if (_workdir() / STATE_FILE).exists():
        DevCluster.load(_workdir()).stop(progress=_say)
    else:
        _say("no cluster state found; nothing to stop")
    for pid, name in leftover_processes(cache_root() / "bin", workdir=_workdir()):
        _say(f"warning: {name} (pid {pid}) from {_workdir()} is still running")
    return 0


def status(_: argparse.Namespace) -> int:
    if not (_workdir() / STATE_FILE).exists():
        _say("no cluster")
        return 1
    cluster = DevCluster.load(_workdir())
    running = cluster.running_components()
    _say(f"api {cluster.api_url}; running: {', '.join(running) or 'nothing'}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0 if running else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelops-devcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the control plane and a fake node").set_defaults(run=up)
    commands.add_parser("down", help="stop every component").set_defaults(run=down)
    commands.add_parser("status", help="show what is running").set_defaults(run=status)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except DevClusterError as error:
        print(f"[devcluster] error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
