"""Operator-level handlers: settings, login, shared clients, metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import start_http_server

from ..constants import DEFAULT_SERVING_IMAGE, GROUP
from ..kube import make_client
from ..lineage.store import DEFAULT_KEEP
from ..opmetrics import show_running
from ..peering import configure_peering, ensure_peering_object
from ..promsource import PrometheusSettings, PrometheusSource
from . import fleet, modeldeployment

IDLE_WORKER_SECONDS = 0.5


class SharedMemo(kopf.Memo):
    """The operator's memo, which kopf's copy for each object it sees leaves shared.

    kopf hands every object (each Pod, Deployment, Service and ModelDeployment it watches) a
    shallow copy of the memo, a dict of all our ~27 keys: 1.2 KiB per object, 6 MiB at 1,000
    ModelDeployments. Every key here is the operator's state, set at startup and shared by
    design (the handlers mutate the containers, never rebind a key), so the copy can be the
    memo itself.
    """

    def __copy__(self) -> SharedMemo:
        return self


def share_memo(memo: kopf.Memo) -> None:
    # kopf creates the root memo before any startup handler runs (`kopf run` offers no way to
    # pass our own), and hands that same object to the startup handlers: it changes class here
    # (past kopf.Memo's __setattr__, which would store the class as a key).
    object.__setattr__(memo, "__class__", SharedMemo)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """One explicit login: in a pod its service account, elsewhere KUBECONFIG."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    share_memo(memo)
    # Our own prefixes, not kopf.zalando.org: the annotations say who put them there.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Events are the ones the handlers post for transitions a person needs (Ready, a rollout, a
    # blocker); INFO would also post every handler's log line, several writes per object.
    settings.posting.level = logging.WARNING
    # lightkube's HTTP client logs every request at INFO; the handlers log what matters.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the Prometheus client's requests
    # With least-privilege RBAC the operator cannot list CRDs or namespaces; it needs not to.
    settings.scanning.disabled = True
    settings.queueing.worker_limit = None
    # kopf keeps a task per object that had an event in the last idle_timeout seconds, and
    # that task holds the object's last event body meanwhile: with kopf's 5 s, a thousand
    # objects rolling out at once pin thousands of Pod and Deployment bodies (bench_operator,
    # 1,000 objects: peak RSS 186 MiB with 5 s, 177 MiB with 0.5 s). Our handlers only index
    # slim views and queue keys, so a worker has nothing to wait for once its events are handled.
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS

    memo.k8s = make_client()
    # Several replicas (`--peering`): distinct priorities, and the peering object must exist.
    configure_peering(settings)
    if await ensure_peering_object(memo.k8s, settings):
        logger.info(f"created ClusterKopfPeering {settings.peering.name!r}")
    memo.serving_image = os.environ.get("MODELOPS_SERVING_IMAGE", DEFAULT_SERVING_IMAGE)
    memo.outcomes = {}  # (namespace, name) -> ReconcileOutcome of the last reconcile
    memo.challenge_views = {}  # (namespace, mdep) -> last ChallengeView seen
    memo.applied = {}  # (kind, namespace, name) -> digest of the manifest last applied
    memo.drift_watches = {}  # (namespace, name) -> monitoring.live.DriftWatch of the live version
    memo.accuracy_watches = {}  # (namespace, name) -> monitoring.live.AccuracyWatch
    memo.humility_watches = {}  # (namespace, name) -> monitoring.live.HumilityWatch
    memo.retrainings = {}  # (namespace, name) -> status.monitoring.retraining last written
    memo.monitor_views = {}  # (namespace, name) -> {monitor: (its status, its condition) | None}
    memo.prometheus = PrometheusSource(prometheus_settings())
    # A retired challenger stays this long without traffic, for labels of requests it answered.
    memo.feedback_grace_seconds = float(os.environ.get("MODELOPS_FEEDBACK_GRACE_SECONDS", "30"))
    # Lineage records kept per ModelDeployment (0: all); older ones are deleted.
    memo.lineage_keep = int(os.environ.get("MODELOPS_LINEAGE_KEEP", str(DEFAULT_KEEP)))
    # At most this many reconciles talk to the API server at once: 200 objects applied
    # together should queue here, not in the API server where requests time out.
    memo.api_slots = asyncio.Semaphore(int(os.environ.get("MODELOPS_MAX_CONCURRENT", "16")))

    fleet.setup(memo)
    fleet.start(memo, settings, modeldeployment.process, modeldeployment.RESYNC_SECONDS)
    show_running()
    port = int(os.environ.get("MODELOPS_METRICS_PORT", "0") or 0)
    if port:
        start_http_server(port, addr=os.environ.get("MODELOPS_METRICS_ADDR", "0.0.0.0"))
        logger.info(f"operator metrics on :{port}/metrics")


def prometheus_settings() -> PrometheusSettings:
    """Where the gates read their metrics: MODELOPS_PROMETHEUS_URL, with an optional bearer
    token file (a mounted Secret) and CA file."""
    token_file = os.environ.get("MODELOPS_PROMETHEUS_TOKEN_FILE")
    ca_file = os.environ.get("MODELOPS_PROMETHEUS_CA_FILE")
    return PrometheusSettings(
        url=os.environ.get("MODELOPS_PROMETHEUS_URL", "http://prometheus-operated.monitoring:9090"),
        bearer_token=Path(token_file).read_text().strip() if token_file else None,
        ca_file=Path(ca_file) if ca_file else None,
        timeout_seconds=float(os.environ.get("MODELOPS_PROMETHEUS_TIMEOUT", "5")),
    )


@kopf.on.cleanup()
async def close_clients(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "fleet_tasks", None):
        await fleet.stop(memo)
    client = getattr(memo, "k8s", None)
    if client is not None:
        await client.close()
    prometheus = getattr(memo, "prometheus", None)
    if prometheus is not None:
        await prometheus.aclose()
