"""A small asyncio client of the Kubernetes API for the local kubelet: requests and informers.

No client library: the kubelet needs a handful of verbs, list+watch with relisting, and the
admin token of the dev cluster's kubeconfig.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

log = logging.getLogger("modelops.localkubelet")

# The server ends a watch after this long; the client read timeout must outlast it.
WATCH_SECONDS = 240
RELIST_PAUSE_SECONDS = 1.0

Obj = dict[str, Any]


class ApiError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.request.method} {response.request.url.path}: "
                         f"{response.status_code} {response.text[:500]}")
        self.status_code = response.status_code


@dataclass(frozen=True)
class ApiCredentials:
    server: str
    ca_file: Path
    token: str

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiCredentials:
        document = yaml.safe_load(path.read_text())
        context_name = document.get("current-context")
        contexts = {c["name"]: c["context"] for c in document.get("contexts", [])}
        context = contexts.get(context_name) or next(iter(contexts.values()))
        cluster = {c["name"]: c["cluster"] for c in document["clusters"]}[context["cluster"]]
        user = {u["name"]: u["user"] for u in document["users"]}[context["user"]]
        ca_file = cluster.get("certificate-authority")
        if not ca_file:
            # Inline CA data: httpx wants a file, so write it next to nothing else of ours.
            with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as handle:
                handle.write(base64.b64decode(cluster["certificate-authority-data"]))
            ca_file = handle.name
        return cls(cluster["server"], Path(ca_file), user["token"])


_background: set[asyncio.Task[Any]] = set()


def spawn(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """create_task, keeping a reference until it ends (the loop itself holds only weak ones)."""
    task = asyncio.create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def object_key(obj: Obj) -> str:
    metadata = obj.get("metadata", {})
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"


class KubeApi:
    def __init__(self, credentials: ApiCredentials) -> None:
        self.client = httpx.AsyncClient(
            base_url=credentials.server,
            verify=ssl.create_default_context(cafile=str(credentials.ca_file)),
            headers={"Authorization": f"Bearer {credentials.token}"},
            timeout=httpx.Timeout(30, read=WATCH_SECONDS + 30),
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any
                      ) -> httpx.Response:
        response = await self.client.request(method, path, **kwargs)
        if response.status_code >= 400 and response.status_code not in ok:
            raise ApiError(response)
        return response

    async def get(self, path: str) -> Obj | None:
        response = await self.request("GET", path, ok=(404,))
        return None if response.status_code == 404 else response.json()

    async def create(self, path: str, body: Obj) -> Obj | None:
        """POST; None when the object already exists."""
        response = await self.request("POST", path, json=body, ok=(409,))
        return None if response.status_code == 409 else response.json()

    async def merge_patch(self, path: str, body: Obj) -> Obj | None:
        """A JSON merge patch (lists are replaced whole); None when the object is gone."""
        response = await self.request(
            "PATCH", path, content=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json"}, ok=(404,),
        )
        return None if response.status_code == 404 else response.json()

    async def delete(self, path: str, body: Obj | None = None) -> bool:
        """DELETE; False when the object was already gone (or the precondition failed)."""
        response = await self.request("DELETE", path, json=body, ok=(404, 409))
        return response.status_code < 400


EventHandler = Callable[[str, Obj], None]


class Informer:
    """List, then watch from the list's resourceVersion; relist when the watch expires.

    `cache` maps "namespace/name" to the latest object; `handler(event, obj)` is called with
    ADDED, MODIFIED or DELETED for every change, including those a relist discovers.
    """

    def __init__(self, api: KubeApi, path: str, handler: EventHandler,
                 params: dict[str, str] | None = None) -> None:
        self.api = api
        self.path = path
        self.handler = handler
        self.params = params or {}
        self.cache: dict[str, Obj] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                version: str | None = await self._relist()
                self.synced.set()
                while version:
                    version = await self._watch(version)
            except (httpx.HTTPError, ApiError) as error:
                log.warning("watch of %s failed (%s); relisting", self.path, error)
            await asyncio.sleep(RELIST_PAUSE_SECONDS)

    async def _relist(self) -> str:
        response = await self.api.request("GET", self.path, params=self.params)
        listing = response.json()
        fresh = {object_key(item): item for item in listing.get("items", [])}
        for key in set(self.cache) - set(fresh):
            self._dispatch("DELETED", self.cache.pop(key))
        for key, item in fresh.items():
            known = self.cache.get(key)
            if known is None or known["metadata"].get("resourceVersion") != item["metadata"].get(
                "resourceVersion"
            ):
                self._dispatch("MODIFIED" if known else "ADDED", item)
        return str(listing["metadata"]["resourceVersion"])

    async def _watch(self, version: str) -> str | None:
        """Follow one watch; the version to continue from, or None to relist."""
        params = {**self.params, "watch": "1", "resourceVersion": version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        async with self.api.client.stream("GET", self.path, params=params) as response:
            if response.status_code != 200:
                return None
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    return None  # typically 410 Gone: the version is too old
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self._dispatch(kind, obj)
        return version

    def _dispatch(self, kind: str, obj: Obj) -> None:
        key = object_key(obj)
        if kind == "DELETED":
            self.cache.pop(key, None)
        else:
            self.cache[key] = obj
        try:
            self.handler(kind, obj)
        except Exception:  # one bad object must not stop the watch
            log.exception("handling %s %s failed", kind, key)
