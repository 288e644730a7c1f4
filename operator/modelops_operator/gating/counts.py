# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""The inputs: cumulative counts per arm since the challenge began, as Prometheus gives them.

The operator sums per-series increments of the raw counters between consecutive looks, resets,
lost history and lagging replicas handled per series (``promsource/ledger.py``; ``increase()``/
``rate()`` extrapolate and return non-integers, which breaks exact count tests). Should an
aggregate still go *down* between two evaluations, the engine counts nothing new for that
interval and continues from the lower value; it never counts data twice. Every field is
optional: a gate whose inputs are missing reports ``NoData`` and the decision is WAIT.

JSON form (camelCase; snake_case is accepted too)::

    {"timestamp": 1732300000.0,          # when the counts were read (stale detection)
     "challengerWeight": 0.1,            # configured share this interval (enables the SRM alarm)
     "lossBound": 50.0,                  # regression: the sidecars' bound on one label's error
     "champion":   {"requests": 9000, "errors": 41,
                    "latencyBuckets": {"0.1": 8000, "0.25": 8900, "+Inf": 9000},
                    "feedbackCorrect": 810, "feedbackTotal": 900,        # classification
                    "errorSum": 120.5, "squaredErrorSum": 80.1,           # regression (|error|)
                    "predictionBuckets": {"0.1": 3000, "0.5": 6000, "+Inf": 9000},
                    "custom": {"my-gate": {"events": 3, "total": 9000}}},
     "challenger": {...same keys...},
     "paired": {"both": 800, "championOnly": 30, "challengerOnly": 25, "neither": 45}}

``paired`` (shadow mode) counts labelled requests answered by *both* models, by who was right.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _edge_key(k: Any) -> float:
    if isinstance(k, str) and k.strip().lower() in ("+inf", "inf"):
        return math.inf
    return float(k)


def _buckets(v: Any) -> dict[float, float]:
    return {_edge_key(k): float(c) for k, c in (v or {}).items()}


def _edge_str(k: float) -> str:
    return "+Inf" if math.isinf(k) else repr(float(k))


@dataclass(frozen=True)
class ArmCounts:
    """Cumulative counts of one model (champion or challenger) since the challenge began."""

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: Mapping[float, float] = field(default_factory=dict)
    slow: Mapping[float, float] = field(default_factory=dict)  # bound (s) → slower requests
    feedback_correct: float = 0.0
    feedback_total: float = 0.0
    error_sum: float = 0.0  # regression: Σ per-request loss, e.g. |y − ŷ|
    squared_error_sum: float = 0.0  # Σ loss², e.g. (y − ŷ)²
    prediction_buckets: Mapping[float, float] = field(default_factory=dict)
    custom: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | ArmCounts | None) -> ArmCounts:
        if isinstance(d, ArmCounts):
            return d
        d = d or {}
        kw: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(_camel(f.name), d.get(f.name))
            if v is None:
                continue
            if f.name in ("latency_buckets", "prediction_buckets", "slow"):
                v = _buckets(v)
            elif f.name == "custom":
                v = {str(g): {str(k): float(x) for k, x in m.items()} for g, m in v.items()}
            else:
                v = float(v)
            kw[f.name] = v
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("latency_buckets", "prediction_buckets", "slow"):
                if v:
                    out[_camel(f.name)] = {_edge_str(k): c for k, c in sorted(v.items())}
            elif f.name == "custom":
                if v:
                    out["custom"] = {g: dict(m) for g, m in v.items()}
            elif v:
                out[_camel(f.name)] = v
        return out

    def latency_total(self) -> float:
        """Requests observed by the latency histogram (its +Inf bucket), else ``requests``."""
        if self.latency_buckets:
            return max(self.latency_buckets.values())
        return self.requests

    def slower_than(self, bound: float) -> tuple[float | None, float | None, str]:
        """(total, slow, note) for "requests slower than ``bound`` seconds".

        Uses ``slow[bound]`` when given, else the histogram: total − bucket(le = edge), with the
        largest edge ≤ bound (exact when the bound is an edge, as it should be).
        """
        for k, v in self.slow.items():
            if math.isclose(k, bound, rel_tol=1e-9, abs_tol=1e-12):
                return self.latency_total(), v, ""
        edges = sorted(k for k in self.latency_buckets if math.isfinite(k))
        usable = [e for e in edges if e <= bound * (1 + 1e-9)]
        if not usable:
            return None, None, f"no latency bucket edge at or below {bound:g}s"
        edge = usable[-1]
        total = self.latency_total()
        note = "" if math.isclose(edge, bound, rel_tol=1e-9) else f" (bucket edge {edge:g}s used)"
        return total, max(total - self.latency_buckets[edge], 0.0), note


@dataclass(frozen=True)
class PairedCounts:
    """Shadow mode: labelled requests answered by both models, by which answer was correct."""

    both: float = 0.0
    champion_only: float = 0.0
    challenger_only: float = 0.0
    neither: float = 0.0

    @property
    def total(self) -> float:
        return self.both + self.champion_only + self.challenger_only + self.neither

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | PairedCounts | None) -> PairedCounts | None:
        if d is None or isinstance(d, PairedCounts):
            return d
        aliases = {"champion_only": ("A_only", "a_only"), "challenger_only": ("B_only", "b_only")}
        kw = {}
        for f in fields(cls):
            names = (_camel(f.name), f.name, *aliases.get(f.name, ()))
            v = next((d[n] for n in names if d.get(n) is not None), None)
            if v is not None:
                kw[f.name] = float(v)
        return cls(**kw)

    def to_dict(self) -> dict[str, float]:
        return {_camel(f.name): getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Counts:
    """Both arms' cumulative counts at one evaluation (see the module docstring for JSON)."""

    champion: ArmCounts = field(default_factory=ArmCounts)
    challenger: ArmCounts = field(default_factory=ArmCounts)
    paired: PairedCounts | None = None
    timestamp: float | None = None
    challenger_weight: float | None = None
    # Regression: each label's absolute error was counted at most this much (errorSum).
    loss_bound: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Counts | None) -> Counts | None:
        if d is None or isinstance(d, Counts):
            return d
        w = d.get("challengerWeight", d.get("challenger_weight"))
        bound = d.get("lossBound", d.get("loss_bound"))
        ts = d.get("timestamp")
        return cls(
            champion=ArmCounts.from_dict(d.get("champion")),
            challenger=ArmCounts.from_dict(d.get("challenger")),
            paired=PairedCounts.from_dict(d.get("paired")),
            timestamp=None if ts is None else float(ts),
            challenger_weight=None if w is None else float(w),
            loss_bound=None if bound is None else float(bound),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "champion": self.champion.to_dict(),
            "challenger": self.challenger.to_dict(),
        }
        if self.paired is not None:
            out["paired"] = self.paired.to_dict()
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.challenger_weight is not None:
            out["challengerWeight"] = self.challenger_weight
        if self.loss_bound is not None:
            out["lossBound"] = self.loss_bound
        return out

    def same_data_as(self, other: Counts | None) -> bool:
        """True when nothing but the timestamp/weight differs (no new observation)."""
        if other is None:
            return False
        return (
            self.champion == other.champion
            and self.challenger == other.challenger
            and self.paired == other.paired
        )


def increment(new: float, old: float | None) -> float:
    """Growth of a cumulative-since-start count between two evaluations.

    The inputs are already reset-corrected per series by the caller, so a *decrease* of the
    aggregate means series were lost (a pod vanished from the query) or the baseline moved. It
    contributes nothing — never the whole new value, which would count old data twice — and
    the next increment is taken from the lower value.
    """
    if old is None:
        return max(new, 0.0)
    return max(new - old, 0.0)
