"""`python -m modelops_operator.dashboard`: the dashboard without the kubectl plugin."""

from __future__ import annotations

import argparse
import sys

from lightkube import Client
from lightkube.core.exceptions import ConfigError

from . import DEFAULT_PORT, serve
from .server import is_loopback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelops_operator.dashboard",
        description="A local web dashboard of modelops, reading with your kubeconfig.",
    )
    parser.add_argument("-n", "--namespace", default=None,
                        help="one namespace (default: every namespace you may list)")
    parser.add_argument("--address", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free one)")
    parser.add_argument("--open", action="store_true", help="open it in the default browser")
    args = parser.parse_args(argv)
    if not is_loopback(args.address):
        parser.error(f"--address must be a loopback address, not {args.address!r}")
    try:
        client = Client(field_manager="kubectl-modelops")
        serve(client, args.namespace, args.address, args.port, open_browser=args.open)
    except ConfigError as error:
        print(f"error: no usable kubeconfig: {error}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
