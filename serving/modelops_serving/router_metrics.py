"""The router's Prometheus metrics: per-arm traffic, mirroring, paired shadow results, reloads."""

from __future__ import annotations

import time
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .metrics import DEFAULT_LATENCY_BUCKETS
from .router_config import RouterConfig

ARMS = ("champion", "challenger")
AGREEMENT_OUTCOMES = ("agree", "disagree", "error")
MIRROR_OUTCOMES = ("sent", "dropped", "failed")

prometheus_client.disable_created_metrics()


class RouterMetrics:
    def __init__(self, deployment: str):
        self.registry = CollectorRegistry(auto_describe=True)
        reg, dep = self.registry, deployment
        self._requests = Counter(
            "modelops_router_requests", "Inference requests routed, by arm and status code.",
            ["deployment", "arm", "code"], registry=reg)
        self._children: dict[tuple[str, int], Any] = {}
        self._deployment = dep
        retries = Counter(
            "modelops_router_retries",
            "Retries recognised (retries.py): sent to the arm of the first attempt, marked so "
            "that its sidecar does not count them again. Also in modelops_router_requests.",
            ["deployment", "arm"], registry=reg)
        self.retries = {arm: retries.labels(dep, arm) for arm in ARMS}
        duration = Histogram(
            "modelops_router_request_duration_seconds", "Latency of routed inference requests.",
            ["deployment", "arm"], buckets=DEFAULT_LATENCY_BUCKETS, registry=reg)
        self.duration = {arm: duration.labels(dep, arm) for arm in ARMS}
        mirror = Counter(
            "modelops_router_mirror_requests",
            "Shadow copies by outcome (dropped: queue full, never delaying the primary).",
            ["deployment", "outcome"], registry=reg)
        self.mirror = {o: mirror.labels(dep, o) for o in MIRROR_OUTCOMES}
        agreement = Counter(
            "modelops_shadow_agreement", "Shadow pairs: did both arms give the same answer.",
            ["deployment", "outcome"], registry=reg)
        self.agreement = {o: agreement.labels(dep, o) for o in AGREEMENT_OUTCOMES}
        self._paired = Counter(
            "modelops_shadow_paired_feedback",
            "Single-row shadow pairs with feedback: each arm's correctness on the same request.",
            ["deployment", "champion", "challenger"], registry=reg)
        self.feedback = Counter(
            "modelops_router_feedback", "Feedback requests by outcome.",
            ["deployment", "outcome"], registry=reg)
        self.feedback_fallbacks = Counter(
            "modelops_router_feedback_fallbacks",
            "Feedback sent to an arm's URL because the replica that answered was gone.",
            ["deployment"], registry=reg).labels(dep)
        self.reloads = Counter(
            "modelops_router_config_reloads", "Configuration reloads by result.",
            ["deployment", "result"], registry=reg)
        self.weight = Gauge(
            "modelops_router_challenger_weight_percent", "Live challenger weight (split mode).",
            ["deployment"], registry=reg).labels(dep)
        self.mirror_percent = Gauge(
            "modelops_router_mirror_percent", "Live mirror percentage (shadow mode).",
            ["deployment"], registry=reg).labels(dep)
        self.shadow_mode = Gauge(
            "modelops_router_shadow_mode", "1 when the router mirrors, 0 when it splits.",
            ["deployment"], registry=reg).labels(dep)
        # Which configuration is live: the operator waits for the revision it wrote before it
        # removes an arm, because a mounted ConfigMap reaches the pod only after a delay.
        self._config_info = Gauge(
            "modelops_router_config_info", "1 for the revision of the live configuration.",
            ["deployment", "revision"], registry=reg)
        self._revision: str | None = None
        # The paired shadow counter's zero point, for the operator's reset and new-pod rules.
        Gauge(
            "modelops_process_start_time_seconds",
            "When this process's counters started from zero (unix seconds).",
            ["deployment"], registry=reg).labels(dep).set(time.time())
        self.queue_depth = Gauge(
            "modelops_router_mirror_queue_depth", "Shadow copies waiting to be sent.",
            ["deployment"], registry=reg).labels(dep)

    def count_request(self, arm: str, code: int, attempt: int = 1) -> None:
        child = self._children.get((arm, code))
        if child is None:
            child = self._requests.labels(self._deployment, arm, str(code))
            self._children[(arm, code)] = child
        child.inc()
        if attempt > 1:
            self.retries[arm].inc()

    def count_paired(self, champion: str, challenger: str) -> None:
        self._paired.labels(self._deployment, champion, challenger).inc()

    def count_feedback(self, outcome: str) -> None:
        self.feedback.labels(self._deployment, outcome).inc()

    def count_reload(self, ok: bool) -> None:
        self.reloads.labels(self._deployment, "success" if ok else "failure").inc()

    def show_config(self, config: RouterConfig) -> None:
        self.weight.set(config.challengerWeight if config.mode == "split" else 0)
        self.mirror_percent.set(config.mirrorPercent if config.mode == "shadow" else 0)
        self.shadow_mode.set(1 if config.mode == "shadow" else 0)
        revision = config.revision or ""
        if revision != self._revision:
            if self._revision is not None:
                self._config_info.remove(self._deployment, self._revision)
            self._config_info.labels(self._deployment, revision).set(1)
            self._revision = revision

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
