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


def kubelet(args: argparse.Namespace) -> int:
    from .kubeletd import run_kubelet

    return run_kubelet(
        Path(args.kubeconfig), Path(args.workdir), args.node_name, pod_cidr=args.pod_cidr,
        api_pod_cidr=args.api_pod_cidr, drain_seconds=args.drain_seconds,
        max_grace_seconds=args.max_grace_seconds,
    )


def _add_kubelet_command(commands: argparse._SubParsersAction) -> None:
    from .kubeletd import DEFAULT_NODE_NAME
    from .podnet import DEFAULT_API_POD_CIDR, DEFAULT_POD_CIDR

    parser = commands.add_parser(
        "kubelet", help="run pods bound to a local node as real processes (until SIGTERM)"
    )
    parser.add_argument("--kubeconfig", default=str(_kubeconfig()))
    parser.add_argument("--workdir", required=True, help="pod logs, volumes, targets.json")
    parser.add_argument("--node-name", default=DEFAULT_NODE_NAME)
    parser.add_argument("--pod-cidr", default=DEFAULT_POD_CIDR, help="loopback pod addresses")
    parser.add_argument("--api-pod-cidr", default=DEFAULT_API_POD_CIDR,
                        help="the same addresses as the API shows them (same size)")
    parser.add_argument("--drain-seconds", type=float, default=2.0,
                        help="seconds between a deleted pod's Ready=False and SIGTERM")
    parser.add_argument("--max-grace-seconds", type=float, default=10.0,
                        help="cap on terminationGracePeriodSeconds before SIGKILL")
    parser.set_defaults(run=kubelet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelops-devcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the control plane and a fake node").set_defaults(run=up)
    commands.add_parser("down", help="stop every component").set_defaults(run=down)
    commands.add_parser("status", help="show what is running").set_defaults(run=status)
    _add_kubelet_command(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except DevClusterError as error:
        print(f"[devcluster] error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
