"""`kubectl modelops dashboard`: a local web page over the user's kubeconfig.

Deployments, live challenges (each gate's estimate and anytime-valid interval), monitoring,
history with the lineage records, model cards, and a prediction form built from the model's
V2 metadata. Read-mostly: the only call with an effect is a prediction (docs/dashboard.md).
"""

from __future__ import annotations

import secrets
import threading
import webbrowser
from collections.abc import Callable

from lightkube import Client

from .api import DashboardApi
from .cluster import ClusterReader
from .server import DashboardServer

DEFAULT_PORT = 3100


def make_server(
    client: Client, namespace: str | None, address: str = "127.0.0.1", port: int = DEFAULT_PORT
) -> DashboardServer:
    """The server, bound and ready to `serve_forever` (port 0: any free port)."""
    token = secrets.token_urlsafe(32)  # new each run: a page of an earlier run cannot post
    return DashboardServer(address, port, DashboardApi(ClusterReader(client, namespace)), token)


def serve(
    client: Client,
    namespace: str | None,
    address: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C; `namespace` None shows every namespace the user may
    list. Only loopback addresses are accepted. `announce` is told the URL once the port is
    bound (port 0 picks a free one); by default a line is printed."""
    server = make_server(client, namespace, address, port)
    if announce is None:
        print(f"modelops dashboard on {server.url} (Ctrl-C to stop)", flush=True)
    else:
        announce(server.url)
    if open_browser:
        threading.Timer(0.3, webbrowser.open, [server.url]).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["DEFAULT_PORT", "make_server", "serve"]
