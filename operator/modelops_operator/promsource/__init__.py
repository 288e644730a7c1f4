"""Reads the gating engine's inputs from Prometheus: cumulative counts per arm since a start."""

from .client import CountsReading, PrometheusSettings, PrometheusSource, PrometheusUnavailable
from .counts import ArmSelector

__all__ = [
    "ArmSelector",
    "CountsReading",
    "PrometheusSettings",
    "PrometheusSource",
    "PrometheusUnavailable",
]
