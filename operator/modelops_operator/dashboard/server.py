"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer on loopback only.

Everything it shows is read with the user's kubeconfig credentials, so the server treats every
request as possibly sent by another website the user has open:
- it binds loopback addresses only, and answers only requests whose Host is its own loopback
  address (a DNS-rebinding page's Host is its own name);
- a POST (a prediction, the one call with effects) must carry the per-process random token
  embedded in the page, as a header no cross-site form or simple request can set, and come from
  the page's own origin when the browser names one (Origin, Sec-Fetch-Site);
- requests are bounded: header read time, body size, path length, concurrent requests; anything
  malformed is a 4xx with a JSON error;
- every answer forbids framing, sniffing, caching and cross-origin embedding, and the page may
  load scripts and styles from this server only (no CDN: the files ship in the package).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .api import DashboardApi, Reply, error_reply

TOKEN_HEADER = "X-Modelops-Token"
TOKEN_PLACEHOLDER = "__MODELOPS_TOKEN__"
MAX_BODY_BYTES = 64 * 1024
MAX_PATH_CHARS = 2048
MAX_CONCURRENT_REQUESTS = 32
REQUEST_READ_SECONDS = 15  # a client slower than this to send its request is dropped
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def allowed_hosts(address: str, port: int) -> frozenset[str]:
    """The Host values a browser sends to this server (the names of loopback)."""
    names = {address, "localhost", "127.0.0.1", "[::1]"}
    names = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return frozenset(f"{name}:{port}" for name in names)


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the package (they ship as package data)."""
    folder = resources.files(__package__) / "static"
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in STATIC_TYPES:
            files[f"/static/{entry.name}"] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    # Windows lets a second process bind the same port when this is true; we never want that.
    allow_reuse_address = False

    def __init__(self, address: str, port: int, api: DashboardApi, token: str) -> None:
        if not is_loopback(address):
            raise ValueError(f"the dashboard binds loopback addresses only, not {address!r}")
        if ":" in address:
            self.address_family = socket.AF_INET6
        super().__init__((address, port), DashboardHandler)
        self.api = api
        self.token = token
        self.hosts = allowed_hosts(address, self.server_address[1])
        self.origins = frozenset(f"http://{host}" for host in self.hosts)
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        self.files = static_files()
        index = (resources.files(__package__) / "static" / "index.html").read_text()
        self.index = index.replace(TOKEN_PLACEHOLDER, token).encode()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a browser closing its connection early is not worth a traceback

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "modelops-dashboard"
    sys_version = ""
    timeout = REQUEST_READ_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal is the user's; errors reach the page

    def do_GET(self) -> None:
        self._serve(self._get)

    def do_HEAD(self) -> None:
        self._send(error_reply(405, "HEAD is not served"))

    def do_POST(self) -> None:
        self._serve(self._post)

    def do_PUT(self) -> None:
        self._send(error_reply(405, "the dashboard is read-mostly: GET, or POST a prediction"))

    do_DELETE = do_PATCH = do_PUT

    def _serve(self, answer: Any) -> None:
        refusal = self._refusal()
        if refusal:
            self._send(refusal)
            return
        if not self.server.slots.acquire(blocking=False):
            self._send(error_reply(503, "too many requests at once; try again"))
            return
        try:
            self._send(answer(urlsplit(self.path).path))
        except Exception as error:  # a bug must not take the server down with it
            self._send(error_reply(500, f"internal error: {type(error).__name__}"))
        finally:
            self.server.slots.release()

    def _refusal(self) -> Reply | None:
        if self.headers.get("Host") not in self.server.hosts:
            return error_reply(403, "unexpected Host header: open the dashboard at "
                                    f"{self.server.url}")  # fmt: skip
        if len(self.path) > MAX_PATH_CHARS or not self.path.startswith("/"):
            return error_reply(414 if len(self.path) > MAX_PATH_CHARS else 400, "bad path")
        return None

    def _get(self, path: str) -> Reply:
        if path in ("/", "/index.html"):
            return Reply(200, self.server.index, "text/html; charset=utf-8",
                         {"Content-Security-Policy": PAGE_POLICY})  # fmt: skip
        if path == "/favicon.ico":  # asked for by browsers on every page, the card's too
            path = "/static/favicon.svg"
        if path in self.server.files:
            content, kind = self.server.files[path]
            return Reply(200, content, kind)
        if self.server.api.handles(path):
            return self.server.api.get(path)
        return error_reply(404, f"no such page: {path[:200]}")

    def _post(self, path: str) -> Reply:
        refusal = self._cross_site() or self._bad_token()
        if refusal:
            return refusal
        body = self._read_json()
        if isinstance(body, Reply):
            return body
        return self.server.api.post(path, body)

    def _cross_site(self) -> Reply | None:
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.origins:
            return error_reply(403, "cross-origin request refused")
        if self.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none"):
            return error_reply(403, "cross-site request refused")
        return None

    def _bad_token(self) -> Reply | None:
        sent = self.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode(), self.server.token.encode()):
            return error_reply(403, f"missing or wrong {TOKEN_HEADER}: reload the page")
        return None

    def _read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            return error_reply(411, "send the body with a Content-Length, not chunked")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return error_reply(411, "Content-Length required")
        if not length_text.isdigit():
            return error_reply(400, "Content-Length is not a number")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            return error_reply(413, f"body larger than {MAX_BODY_BYTES} bytes")
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return error_reply(415, "send application/json")
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            return error_reply(408, "the body did not arrive in time")
        if len(raw) != length:
            return error_reply(400, "the body is shorter than its Content-Length")
        try:
            return json.loads(raw)
        except ValueError as error:
            return error_reply(400, f"the body is not JSON: {error}")

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in {**COMMON_HEADERS, **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
