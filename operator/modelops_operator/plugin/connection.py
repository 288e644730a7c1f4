"""Which cluster, as kubectl would pick it: --kubeconfig, then KUBECONFIG, then ~/.kube/config,
then the Pod's service account (in-cluster); --context and --namespace on top.

A `KUBECONFIG` holding several files (`a:b`) is merged the way kubectl merges it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError

from .durations import parse_duration
from .errors import EXIT_USAGE, CliError, describe_config_error

FIELD_MANAGER = "kubectl-modelops"
DEFAULT_KUBECONFIG = Path("~/.kube/config")
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER = "the in-cluster service account"
NO_KUBECONFIG = CliError(
    "no kubeconfig found (KUBECONFIG, ~/.kube/config)", "pass --kubeconfig or set KUBECONFIG"
)
DEFAULT_REQUEST_TIMEOUT = 10.0
# Fields holding file paths, which kubectl reads relative to the kubeconfig that holds them.
PATH_FIELDS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}


@dataclass(frozen=True)
class Target:
    """Where to talk to: the parsed global flags that choose the cluster."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    request_timeout: str | None = None


def parse_request_timeout(text: str | None) -> float | None:
    """kubectl's --request-timeout: a bare number of seconds or a duration (1m, 30s); 0 = none."""
    if text is None:
        return DEFAULT_REQUEST_TIMEOUT
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise CliError(
            f"invalid --request-timeout {text!r}",
            "give seconds or a duration like 30s or 1m",
            code=EXIT_USAGE,
        ) from None
    return seconds or None


def kubeconfig_files(explicit: str | None) -> list[Path]:
    """The files to read, as kubectl picks them; [] means: try the in-cluster service account."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CliError(
                f"kubeconfig {explicit} not found", "pass an existing file to --kubeconfig"
            )
        return [path]
    from_env = os.environ.get("KUBECONFIG", "")
    if from_env:
        listed = [Path(p).expanduser() for p in from_env.split(os.pathsep) if p]
        return [path for path in listed if path.is_file()]
    default = DEFAULT_KUBECONFIG.expanduser()
    return [default] if default.is_file() else []


def _absolute(entry: dict[str, Any], inner: str, directory: Path) -> dict[str, Any]:
    """An entry whose file paths are relative to its own kubeconfig, made absolute."""
    body = dict(entry.get(inner) or {})
    for field in PATH_FIELDS.get(inner, ()):
        if body.get(field) and not Path(body[field]).is_absolute():
            body[field] = str(directory / body[field])
    return {**entry, inner: body}


def merge_kubeconfigs(documents: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """kubectl's merge of a KUBECONFIG list: the first file to name a cluster, context or user,
    or to set current-context, wins."""
    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": []}
    for path, document in documents:
        if "current-context" not in merged and document.get("current-context"):
            merged["current-context"] = document["current-context"]
        for section, inner in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
            known = {entry.get("name") for entry in merged[section]}
            for entry in document.get(section) or []:
                if entry.get("name") not in known:
                    merged[section].append(_absolute(entry, inner, path.parent))
                    known.add(entry.get("name"))
    return merged


def _read(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CliError(
            f"cannot read kubeconfig {path} ({type(error).__name__}: {error})",
            "fix the file, or pass another with --kubeconfig",
        ) from None
    if not isinstance(document, dict):
        raise CliError(f"kubeconfig {path} is not a kubeconfig", "pass another with --kubeconfig")
    return document


def _in_cluster() -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and (SERVICE_ACCOUNT_DIR / "token").is_file()
    )


def load_kubeconfig(target: Target) -> tuple[KubeConfig, str]:
    """The kubeconfig as kubectl would see it (the files, merged), or the in-cluster one, and
    where it came from (for messages)."""
    files = kubeconfig_files(target.kubeconfig)
    if not files:
        if not _in_cluster():
            raise NO_KUBECONFIG
        try:
            return KubeConfig.from_service_account(SERVICE_ACCOUNT_DIR), IN_CLUSTER
        except ConfigError as error:
            raise describe_config_error(error, IN_CLUSTER) from None
    source = os.pathsep.join(str(path) for path in files)
    documents = [(path, _read(path)) for path in files]
    # One file keeps its own relative paths (lightkube resolves them against it).
    whole = documents[0][1] if len(files) == 1 else merge_kubeconfigs(documents)
    try:
        return KubeConfig.from_dict(whole, fname=files[0]), source
    except Exception as error:  # not a kubeconfig's shape: lightkube says what it missed
        raise CliError(
            f"cannot read kubeconfig {source} ({type(error).__name__}: {error})",
            "fix the file, or pass another with --kubeconfig",
        ) from None


def load_config(target: Target) -> SingleConfig:
    config, source = load_kubeconfig(target)
    return _pick_context(config, target.context, source)


def _pick_context(config: KubeConfig, context: str | None, source: str) -> SingleConfig:
    try:
        single = config.get(context)
    except ConfigError as error:
        raise describe_config_error(error, source) from None
    except KeyError as error:  # a context naming a cluster or user the file lacks
        raise CliError(
            f"context {single_name(config, context)!r} in {source} refers to {error} which "
            "the file does not define",
            "fix the kubeconfig, or pick another --context",
        ) from None
    assert single is not None  # get() raises rather than return None without a default
    return single


def single_name(config: KubeConfig, context: str | None) -> str:
    return context or config.current_context or ""


def connect(target: Target) -> tuple[Client, str]:
    """A client for the chosen context, and the namespace to work in (-n, else the context's)."""
    config = load_config(target)
    seconds = parse_request_timeout(target.request_timeout)
    try:
        client = Client(
            config,
            namespace=target.namespace,
            timeout=httpx2.Timeout(seconds),
            field_manager=FIELD_MANAGER,
        )
    except ConfigError as error:
        source = str(config.fname) if config.fname else "kubeconfig"
        raise describe_config_error(error, source) from None
    except (OSError, ValueError) as error:  # certificate files that are missing or malformed
        raise CliError(
            f"cannot set up a connection for context {config.context_name!r} ({error})",
            "check the certificate and key paths in your kubeconfig",
        ) from None
    return client, target.namespace or config.namespace
