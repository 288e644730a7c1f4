"""Reads the gating engine's inputs from Prometheus: cumulative counts per arm since a start,
taken as per-series increments between looks (`ledger.py`)."""

from .client import (
    CountsReading,
    CountsSource,
    PrometheusSettings,
    PrometheusSource,
    PrometheusUnavailable,
)
from .counts import ArmSelector
from .ledger import CounterLedger

__all__ = [
    "ArmSelector",
    "CounterLedger",
    "CountsReading",
    "CountsSource",
    "PrometheusSettings",
    "PrometheusSource",
    "PrometheusUnavailable",
]
