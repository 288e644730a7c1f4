"""The controller's own metrics: where each challenge stands and what its gates estimate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from .model import Phase

CHALLENGE_PHASE = Gauge(
    "modelops_challenge_phase",
    "1 for the phase each ChampionChallenger is in, 0 for the others.",
    ["namespace", "name", "phase"],
)
GATE_ESTIMATE = Gauge(
    "modelops_gate_estimate",
    "Each gate's estimate and anytime-valid interval at the last evaluation.",
    ["namespace", "name", "gate", "bound"],
)
METRICS_AVAILABLE = Gauge(
    "modelops_challenge_metrics_available",
    "0 while a gated challenge cannot read both arms' metrics (MetricsAvailable=False), else 1.",
    ["namespace", "name"],
)
DECISIONS = Counter(
    "modelops_challenge_decisions",
    "Decisions taken: promotions and rollbacks started, approvals awaited, evaluations.",
    ["namespace", "name", "decision"],
)


def show_phase(namespace: str, name: str, phase: Phase) -> None:
    for each in Phase:
        CHALLENGE_PHASE.labels(namespace, name, each.value).set(1 if each is phase else 0)


def show_gates(namespace: str, name: str, gates: Iterable[Mapping[str, Any]]) -> None:
    for gate in gates:
        for bound in ("estimate", "lower", "upper"):
            value = gate.get(bound)
            if value is not None:
                GATE_ESTIMATE.labels(namespace, name, gate["name"], bound).set(float(value))


def show_metrics_available(namespace: str, name: str, available: bool) -> None:
    METRICS_AVAILABLE.labels(namespace, name).set(1 if available else 0)


def count_decision(namespace: str, name: str, decision: str) -> None:
    DECISIONS.labels(namespace, name, decision).inc()


def forget(namespace: str, name: str) -> None:
    """A deleted ChampionChallenger leaves no series behind."""
    for metric in (CHALLENGE_PHASE, GATE_ESTIMATE, DECISIONS, METRICS_AVAILABLE):
        for labels in list(metric._metrics):
            if labels[:2] == (namespace, name):
                metric.remove(*labels)
