"""A pod's volumes as directories: emptyDir, and configMap/secret files kept up to date.

Files are replaced atomically (write, then rename), so a program polling one (the router's
configuration) never reads half a file. Service host names in them are rewritten to the
Service's current endpoint (see podnet), and re-rendered when the endpoints change.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .podnet import rewrite_service_hosts

if TYPE_CHECKING:
    from .podrunner import PodRunner

log = logging.getLogger("modelops.localkubelet")

SOURCE_KINDS = {"configMap": ("configmaps", "name"), "secret": ("secrets", "secretName")}
MISSING_SOURCE_RETRY_SECONDS = 1.0


class VolumeSet:
    def __init__(self, root: Path, volumes: list[dict[str, Any]], runner: PodRunner) -> None:
        self.root = root
        self.volumes = {v["name"]: v for v in volumes}
        self.runner = runner
        self._render_lock = asyncio.Lock()

    def local_path(self, name: str, sub_path: str = "") -> Path:
        base = self.root / name
        return base / sub_path if sub_path else base

    def sources(self) -> list[tuple[str, str]]:
        """(kind, name) of the ConfigMaps and Secrets this pod mounts."""
        found = []
        for volume in self.volumes.values():
            for field_name, (kind, name_key) in SOURCE_KINDS.items():
                if field_name in volume:
                    found.append((kind, volume[field_name][name_key]))
        return found

    async def prepare(self) -> None:
        """Create every volume; wait for mounted ConfigMaps and Secrets that do not exist yet."""
        for name in self.volumes:
            self.local_path(name).mkdir(parents=True, exist_ok=True)
        while not await self.render_all():
            await asyncio.sleep(MISSING_SOURCE_RETRY_SECONDS)

    async def render_all(self) -> bool:
        """Write the files of every configMap/secret volume; False if a required one is missing."""
        complete = True
        async with self._render_lock:
            for name, volume in self.volumes.items():
                for field_name, (kind, name_key) in SOURCE_KINDS.items():
                    if field_name in volume:
                        complete &= await self._render(name, kind, volume[field_name], name_key)
        return complete

    async def _render(self, volume: str, kind: str, source: dict[str, Any], name_key: str) -> bool:
        runner = self.runner
        obj = await runner.node.lookup(kind, runner.namespace, source[name_key])
        if obj is None:
            return bool(source.get("optional"))
        data = self.decoded_data(kind, obj)
        items = source.get("items")
        files = {i["path"]: data[i["key"]] for i in items if i["key"] in data} if items else data
        directory = self.local_path(volume)
        for relative, content in files.items():
            text = rewrite_service_hosts(content, runner.node.resolve_service)
            write_atomically(directory / relative, text)
        for stale in directory.rglob("*"):
            relative = str(stale.relative_to(directory))
            if stale.is_file() and relative not in files and not stale.name.startswith(".tmp-"):
                stale.unlink()
        return True

    @staticmethod
    def decoded_data(kind: str, obj: dict[str, Any]) -> dict[str, str]:
        if kind == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace")
                    for k, v in (obj.get("data") or {}).items()}
        data = dict(obj.get("data") or {})
        for key, value in (obj.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value).decode(errors="replace")
        return data


def write_atomically(path: Path, text: str) -> None:
    """Replace path by a file holding text, unless it already does."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{path.name}")
    temporary.write_text(text)
    os.replace(temporary, path)
