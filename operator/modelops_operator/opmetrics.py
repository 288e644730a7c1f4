"""The operator's own health metrics, which the chart's alerts read (files/alerts.yaml)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import Counter, Gauge

BUILD_INFO = Gauge(
    "modelops_operator_build_info",
    "1 while the operator runs; its version in the label (an alert fires when it is absent).",
    ["version"],
)
ERRORS = Counter(
    "modelops_operator_errors",
    "Failures the operator retried: applying children (reconcile), writing status (status), "
    "a challenge's tick (challenge), reading Prometheus for the monitors (monitoring).",
    ["component"],
)


def show_running() -> None:
    try:
        running = version("modelops")
    except PackageNotFoundError:  # run from a source tree
        running = "source"
    BUILD_INFO.labels(running).set(1)


def count_error(component: str) -> None:
    ERRORS.labels(component).inc()
