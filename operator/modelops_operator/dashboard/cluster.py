"""What the dashboard reads from the cluster, always as the user: a lightkube Client built from
their kubeconfig. The dashboard has no credentials of its own; what the user may not read, it
shows as a notice, never works around.

Models are reached through the API server's service proxy
(`/api/v1/namespaces/<ns>/services/<svc>:<port>/proxy/...`), so a prediction needs the same
permission `kubectl proxy` would (`get` on `services/proxy`) and no port-forward.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.authentication_v1 import SelfSubjectReview

from ..builders.workload import build_service
from ..lineage.store import list_records
from ..resources import ChampionChallengerResource, ModelDeploymentResource

METADATA_TTL_SECONDS = 30.0  # a model's inputs change only with a new version
MODEL_TIMEOUT_SECONDS = 20.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class ClusterError(RuntimeError):
    """A read the API server refused or could not serve; `status` is what the page gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def api_error(error: ApiError) -> ClusterError:
    code = int(error.status.code or 502)
    message = str(error.status.message or error)
    return ClusterError(code if code in (401, 403, 404) else 502, message)


def service_address(mdep: dict[str, Any]) -> tuple[str, str]:
    """(Service name, port) clients call: the host and port of status.endpoint
    (`http://<svc>.<ns>.svc.cluster.local[:port]`), else the Service the operator builds."""
    name = str((mdep.get("metadata") or {}).get("name") or "")
    endpoint = urlsplit(str((mdep.get("status") or {}).get("endpoint") or ""))
    if endpoint.hostname:
        return endpoint.hostname.split(".")[0], str(endpoint.port or 80)
    port = build_service(name, "")["spec"]["ports"][0]["port"]
    return name, str(port)


@dataclass
class Answer:
    status: int
    body: Any  # the decoded JSON, or the text when the answer is not JSON
    latency_ms: float


class ClusterReader:
    """Reads for the dashboard's views; `namespace` None means every namespace the user may
    list (falling back to the kubeconfig's namespace when a cluster-wide list is forbidden)."""

    def __init__(self, client: Client, namespace: str | None) -> None:
        self.client = client
        self.namespace = namespace
        self._metadata: dict[tuple[str, str], tuple[float, str, str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- objects
    def _list(self, resource: Any, notices: list[str]) -> list[dict[str, Any]]:
        scope = self.namespace or "*"
        try:
            return [_as_dict(o) for o in self.client.list(resource, namespace=scope)]
        except ApiError as error:
            if self.namespace is None and error.status.code == 403:
                fallback = self.client.namespace
                notices.append(f"you may not list {resource._api_info.plural} in all "
                               f"namespaces; showing namespace {fallback}")  # fmt: skip
                try:
                    return [_as_dict(o) for o in self.client.list(resource, namespace=fallback)]
                except ApiError as inner:
                    raise api_error(inner) from inner
            raise api_error(error) from error

    def deployments(self, notices: list[str]) -> list[dict[str, Any]]:
        return self._list(ModelDeploymentResource, notices)

    def challenges(self, notices: list[str]) -> list[dict[str, Any]]:
        return self._list(ChampionChallengerResource, notices)

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return _as_dict(self.client.get(ModelDeploymentResource, name, namespace=namespace))
        except ApiError as error:
            raise api_error(error) from error

    def challenges_in(self, namespace: str) -> list[dict[str, Any]]:
        try:
            found = self.client.list(ChampionChallengerResource, namespace=namespace)
            return [_as_dict(o) for o in found]
        except ApiError as error:
            raise api_error(error) from error

    def records(self, namespace: str, deployment: str, notices: list[str]) -> list | None:
        """The deployment's LineageRecords, or None with a notice when they cannot be read
        (the CRD not installed, or no permission): the rest of the page still shows."""
        try:
            return list_records(self.client, namespace, deployment)
        except ApiError as error:
            code = error.status.code
            why = "the LineageRecord CRD is not installed" if code == 404 else (
                error.status.message or "the API server refused")  # fmt: skip
            notices.append(f"lineage records unavailable: {why}")
            return None

    def whoami(self) -> dict[str, str]:
        user = ""
        try:
            review = self.client.create(SelfSubjectReview())
            info = review.status.userInfo if review.status else None
            user = str(info.username) if info and info.username else ""
        except (ApiError, httpx2.HTTPError):
            pass  # older API servers lack SelfSubjectReview; the page says "unknown"
        return {
            "user": user,
            "server": str(self.client.config.cluster.server),
            "context": str(getattr(self.client.config, "context_name", "") or ""),
            "namespace": self.namespace or "",
        }

    # ------------------------------------------------------------------------- the model
    def _proxy(self, namespace: str, mdep: dict[str, Any]) -> str:
        service, port = service_address(mdep)
        return (f"/api/v1/namespaces/{quote(namespace, safe='')}/services/"
                f"{quote(service, safe='')}:{quote(port, safe='')}/proxy")  # fmt: skip

    def _send(self, method: str, url: str, body: Any = None) -> Answer:
        # lightkube's own httpx client carries the kubeconfig's server, TLS and credentials;
        # lightkube has no call for a raw path such as the service proxy.
        http: httpx2.Client = self.client._client._client
        began = time.perf_counter()
        try:
            with http.stream(method, url, json=body, timeout=MODEL_TIMEOUT_SECONDS) as response:
                content, status = b"", response.status_code
                for chunk in response.iter_bytes():
                    content += chunk
                    if len(content) > MAX_ANSWER_BYTES:
                        raise ClusterError(502, f"the answer is larger than {MAX_ANSWER_BYTES} "
                                                "bytes")  # fmt: skip
        except httpx2.HTTPError as error:
            raise ClusterError(502, f"the API server could not be reached: {error}") from error
        latency = (time.perf_counter() - began) * 1000
        try:
            decoded: Any = json.loads(content)
        except ValueError:
            decoded = content.decode("utf-8", "replace")[:2000]
        return Answer(status, decoded, latency)

    def model_target(self, namespace: str, name: str) -> tuple[str, str, dict[str, Any]]:
        """(model name, service proxy base, V2 metadata) of the model the deployment's Service
        answers for; kept for a while, as a model's inputs change only with a new version."""
        key = (namespace, name)
        with self._lock:
            cached = self._metadata.get(key)
        if cached and time.monotonic() - cached[0] < METADATA_TTL_SECONDS:
            return cached[1], cached[2], cached[3]
        mdep = self.deployment(namespace, name)
        champion = (mdep.get("status") or {}).get("champion") or {}
        model = str(champion.get("name") or ((mdep.get("spec") or {}).get("model") or {}).get(
            "name") or "")  # fmt: skip
        base = self._proxy(namespace, mdep)
        answer = self._send("GET", f"{base}/v2/models/{quote(model, safe='')}")
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise ClusterError(502, f"the model's metadata could not be read "
                                    f"(HTTP {answer.status}): {brief(answer.body)}")  # fmt: skip
        with self._lock:
            self._metadata[key] = (time.monotonic(), model, base, answer.body)
        return model, base, answer.body

    def infer(self, namespace: str, name: str, request: dict[str, Any]) -> Answer:
        model, base, _ = self.model_target(namespace, name)
        return self._send("POST", f"{base}/v2/models/{quote(model, safe='')}/infer", request)


def brief(body: Any) -> str:
    """The error in a model's (or the API server's) answer, in one short line."""
    if isinstance(body, dict):
        for key in ("error", "message"):  # the V2 protocol's error, an API server Status
            if key in body:
                return str(body[key])[:500]
    return str(body)[:500]
