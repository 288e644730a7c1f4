"""The router's configuration document, its validation, and the file watcher that reloads it.

The operator writes this document (JSON or YAML) into a ConfigMap; the router reads the mounted
file. Example::

    apiVersion: router.modelops.io/v1alpha1
    kind: RouterConfig
    mode: split              # split (canary / A/B) or shadow
    champion: {url: "http://fraud-champion:8000"}
    challenger: {url: "http://fraud-challenger:8000"}
    challengerWeight: 10     # split: percent of requests answered by the challenger
    mirrorPercent: 100       # shadow: percent of requests copied to the challenger
    stickyHeader: x-user-id  # optional: the same header value always gets the same arm
    revision: 3f2a9c01       # optional: exported as modelops_router_config_info{revision}

A file that fails validation is rejected as a whole and the last good configuration stays live.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

API_VERSION = "router.modelops.io/v1alpha1"
log = logging.getLogger("modelops_serving.router")


class ConfigError(ValueError):
    """The configuration document is invalid; the message names the field."""


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(description="base URL of the arm (its sidecar), http://host:port")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")


class RouterConfig(BaseModel):
    """Version ``router.modelops.io/v1alpha1`` of the router's configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    apiVersion: Literal["router.modelops.io/v1alpha1"]
    kind: Literal["RouterConfig"] = "RouterConfig"
    mode: Literal["split", "shadow"] = "split"
    champion: Backend
    challenger: Backend | None = None
    challengerWeight: float = Field(0.0, ge=0.0, le=100.0)
    mirrorPercent: float = Field(100.0, ge=0.0, le=100.0)
    stickyHeader: str | None = Field(None, min_length=1, max_length=128,
                                     pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    # Set by the writer (the operator: a digest of the rest); exported as
    # modelops_router_config_info{revision} so the writer can tell when it is live.
    revision: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")

    @model_validator(mode="after")
    def _challenger_when_needed(self) -> RouterConfig:
        if self.challenger is None and (self.mode == "shadow" or self.challengerWeight > 0):
            raise ValueError("challenger: required when mode is shadow or challengerWeight > 0")
        return self


def parse_config(text: str) -> RouterConfig:
    """Parse JSON or YAML text into a validated RouterConfig, or raise ConfigError."""
    try:
        document: Any = yaml.safe_load(text)  # JSON is YAML, so one parser reads both
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid JSON or YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError("the configuration must be a mapping with apiVersion, mode, champion…")
    version = document.get("apiVersion")
    if version != API_VERSION:
        raise ConfigError(f"apiVersion: '{version}' is not supported; expected '{API_VERSION}'")
    try:
        return RouterConfig.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(problems) from None


@dataclass(frozen=True)
class FileSignature:
    """What changes when the file (or a ConfigMap's swapped ``..data`` symlink) changes."""

    device: int
    inode: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> FileSignature | None:
        try:
            st = os.stat(path)  # follows symlinks: a ConfigMap update shows as a new inode
        except OSError:
            return None
        return cls(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class ConfigWatcher:
    """Re-reads the file when its signature changes; a bad file keeps the last good config."""

    def __init__(self, path: Path):
        self.path = path
        self.signature: FileSignature | None = None
        self.digest: str | None = None

    def load_initial(self) -> RouterConfig:
        self.signature = FileSignature.of(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        config = parse_config(text)
        self.digest = hashlib.sha256(text.encode()).hexdigest()
        return config

    def poll(self) -> RouterConfig | ConfigError | None:
        """A new config, the error that rejected a changed file, or None when unchanged."""
        signature = FileSignature.of(self.path)
        if signature is None or signature == self.signature:
            return None
        self.signature = signature
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            return self._reject(ConfigError(f"cannot read {self.path}: {exc.strerror}"))
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest == self.digest:
            return None  # touched or re-linked with identical content
        try:
            config = parse_config(text)
        except ConfigError as exc:
            return self._reject(exc)
        self.digest = digest
        return config

    def _reject(self, error: ConfigError) -> ConfigError:
        self.digest = None  # a later good file counts as a reload, even if unchanged
        log.error("rejected %s, keeping the last good configuration: %s", self.path, error)
        return error
