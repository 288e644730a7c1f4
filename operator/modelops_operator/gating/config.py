# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Gate and decision configuration, built from the ChampionChallenger's typed spec.

The operator validates the spec once into the API models and calls :meth:`GatingConfig.from_spec`;
defaults come from those models only (per gate type: ``api.championchallenger.GATE_DEFAULTS``;
``spec.decision``: the ``Decision`` model). ``from_dict`` serves Python callers (tests,
simulations) and reads a gate through the same model, so it gets the same defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

from ..api.championchallenger import GATE_TYPES, ChampionChallengerSpec, Decision, Gate

TESTS = ("nonInferiority", "superiority")
RATE_GATE_TYPES = ("errorRate", "latency", "prometheus")
# spec.decision's defaults, as the API model states them (the dataclass below copies none).
_SPEC_DECISION = Decision.model_validate({})

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int | timedelta | None) -> float | None:
    """Seconds from ``"90s"``, ``"1h30m"``, ``"250ms"``, a number of seconds or a timedelta."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r} (use forms like 250ms, 30s, 5m, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _get(d: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if n in d and d[n] is not None:
            return d[n]
    return default


@dataclass(frozen=True)
class GateConfig:
    """One gate. Margins follow the CRD: relative for rates, absolute for accuracy and drift.

    * ``errorRate`` / ``latency``: ``margin`` is a relative increase: 0.2 allows the challenger's
      rate to be up to 1.2 × the champion's (non-inferiority). Tested on the ratio with the
      rate-ratio e-process (:mod:`.rateratio`). ``latency_threshold`` (seconds) is the bound a
      request must beat; slow requests come from the latency histogram.
    * ``accuracy``: ``margin`` is an absolute drop in accuracy (0.01 = one point) when feedback
      is classification (correct/total), or the allowed increase of the mean per-request loss
      (in the loss's units) when feedback is regression (error sums). Paired counts (shadow mode)
      are used when present.
    * ``predictionDrift``: ``margin`` is the largest acceptable edge-KS distance (0–1).
    * ``prometheus``: a custom metric. With per-arm ``{"events", "total"}`` counts it is a rate
      gate like ``errorRate``; with ``{"value"}`` it is a Flagger-style ``threshold_range`` check
      on the challenger's value, which blocks promotion while out of range but carries no
      statistical guarantee and never rolls back on its own.

    ``absolute_margin`` (rate gates): a tolerance on the rate *difference* (0.001 = 0.1 percentage
    points). Non-inferiority then passes when the challenger's rate is shown to be at most
    max((1 + margin) × champion's, champion's + absolute_margin); rollback needs it shown above
    both its harm ratio and champion's + absolute_margin. None or 0: ratio only. A gate built
    from the spec gets its type's default (``GATE_DEFAULTS``) when the field is absent; without
    one, a rate gate can never pass while neither model has events (a ratio needs events).

    ``test`` is ``nonInferiority`` (pass when the challenger is not worse than the margin) or
    ``superiority`` (pass when it is better than the champion). In both, the gate *fails*
    (rollback) when the challenger is shown worse than ``harm_margin`` (default: the margin).
    """

    name: str
    type: str
    margin: float
    test: str = "nonInferiority"
    harm_margin: float | None = None
    latency_threshold: float | None = None
    threshold_range: tuple[float | None, float | None] | None = None
    reference: Mapping[float, float] | None = None  # predictionDrift: fixed reference buckets
    tau: float | None = None  # normal-mixture scale; default: the margin (see gates.py)
    burn_in: int | None = None
    absolute_margin: float | None = None

    def __post_init__(self) -> None:
        if self.type not in GATE_TYPES:
            raise ValueError(f"gate {self.name!r}: unknown type {self.type!r}; one of {GATE_TYPES}")
        if self.test not in TESTS:
            raise ValueError(f"gate {self.name!r}: test must be one of {TESTS}, not {self.test!r}")
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise ValueError(f"gate {self.name!r}: margin must be a finite number >= 0")
        if self.type == "latency" and self.latency_threshold is None:
            raise ValueError(f"gate {self.name!r}: a latency gate needs latencyThreshold")
        if self.absolute_margin is not None:
            if not 0 <= self.absolute_margin <= 1:
                raise ValueError(f"gate {self.name!r}: absoluteMargin must be in [0, 1]")
            if self.absolute_margin and self.type not in RATE_GATE_TYPES:
                raise ValueError(
                    f"gate {self.name!r}: absoluteMargin applies to {RATE_GATE_TYPES} gates only"
                )

    @property
    def effective_absolute_margin(self) -> float:
        """The absolute tolerance in force (0: the ratio test alone decides)."""
        return self.absolute_margin or 0.0

    @property
    def effective_harm_margin(self) -> float:
        return self.margin if self.harm_margin is None else self.harm_margin

    @classmethod
    def from_gate(cls, gate: Gate) -> GateConfig:
        """From one validated ``spec.gates[]`` entry; unset margins take the type's defaults."""
        limits = gate.threshold_range
        return cls(
            name=gate.name,
            type=gate.type,
            margin=gate.margin_in_force,
            test=gate.test,
            harm_margin=gate.harm_margin,
            latency_threshold=parse_duration(gate.latency_threshold),
            threshold_range=(limits.min, limits.max) if limits is not None else None,
            tau=gate.tau,
            absolute_margin=gate.absolute_margin_in_force,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | GateConfig) -> GateConfig:
        """From a spec.gates[] entry as a dict (camelCase or snake_case keys), validated by the
        API model. ``reference`` and ``burnIn`` exist only here (not in the CRD)."""
        if isinstance(d, GateConfig):
            return d
        fields = dict(d)
        reference = fields.pop("reference", None)
        burn_in = _get(fields, "burnIn", "burn_in")
        fields.pop("burnIn", None)
        fields.pop("burn_in", None)
        gate = cls.from_gate(Gate.model_validate(fields))
        if reference is None and burn_in is None:
            return gate
        if isinstance(reference, Mapping):
            reference = {float(k): float(v) for k, v in reference.items()}
        return replace(gate, reference=reference, burn_in=burn_in)

    def fingerprint(self) -> str:
        """Short hash of everything that defines the gate's nulls (state resets when it changes)."""
        fields = asdict(self)
        if fields["absolute_margin"] is None:
            # Keeps the fingerprints of gates without the field as they were before it existed,
            # so an operator upgrade does not restart their evidence.
            del fields["absolute_margin"]
        blob = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True)
class DecisionPolicy:
    """spec.decision: error rates, exposure and time limits (durations in seconds).

    * ``alpha``: bound on P(false promotion) — per gate, and overall by intersection–union.
    * ``rollback_alpha``: bound on P(false rollback), split evenly (Bonferroni) over the gates
      that can roll back. Defaults to ``alpha``.
    * ``min_samples``: requests *each* arm must have answered before a promotion.
    * ``min_duration``: seconds since the challenge began before a promotion (default 0; at
      least an hour is wise, or a full diurnal cycle when traffic varies).
    * ``max_duration`` / ``on_timeout``: after this long without a decision, ``rollback``
      (default) or ``hold`` (keep both running, a person decides).
    * ``warm_up``: seconds after a pod starts during which its counts are left out (the
      counter ledger's rule, :mod:`..promsource.ledger`).
    * ``srm_alpha``: level of the sample-ratio-mismatch alarm (only when the configured
      challenger weight is passed with the counts).
    """

    alpha: float = _SPEC_DECISION.alpha
    rollback_alpha: float | None = _SPEC_DECISION.rollback_alpha
    interval: float = parse_duration(_SPEC_DECISION.interval) or 0.0
    min_samples: int = _SPEC_DECISION.min_samples
    min_duration: float = parse_duration(_SPEC_DECISION.min_duration) or 0.0
    max_duration: float | None = parse_duration(_SPEC_DECISION.max_duration)
    on_timeout: str = _SPEC_DECISION.on_timeout
    warm_up: float = parse_duration(_SPEC_DECISION.warm_up) or 0.0
    srm_alpha: float = 0.001  # not in the CRD: the alarm only pauses, a person decides

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if self.rollback_alpha is not None and not 0 < self.rollback_alpha < 1:
            raise ValueError("rollbackAlpha must be in (0, 1)")
        if self.on_timeout not in ("rollback", "hold"):
            raise ValueError("onTimeout must be rollback or hold")

    @property
    def effective_rollback_alpha(self) -> float:
        return self.alpha if self.rollback_alpha is None else self.rollback_alpha

    @classmethod
    def from_decision(cls, decision: Decision) -> DecisionPolicy:
        """From the validated ``spec.decision`` (its defaults already applied)."""
        return cls(
            alpha=decision.alpha,
            rollback_alpha=decision.rollback_alpha,
            interval=parse_duration(decision.interval) or 0.0,
            min_samples=decision.min_samples,
            min_duration=parse_duration(decision.min_duration) or 0.0,
            max_duration=parse_duration(decision.max_duration),
            on_timeout=decision.on_timeout,
            warm_up=parse_duration(decision.warm_up) or 0.0,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | DecisionPolicy | None) -> DecisionPolicy:
        """For Python callers: a ``spec.decision``-like dict, read leniently (no CRD bounds),
        absent keys taking the dataclass defaults (which are the API model's)."""
        if isinstance(d, DecisionPolicy):
            return d
        d = d or {}
        default = cls()
        max_d = _get(d, "maxDuration", "max_duration")
        return cls(
            alpha=float(_get(d, "alpha", default=default.alpha)),
            rollback_alpha=_opt_float(_get(d, "rollbackAlpha", "rollback_alpha")),
            interval=parse_duration(_get(d, "interval", default=default.interval)) or 0.0,
            min_samples=int(_get(d, "minSamples", "min_samples", default=default.min_samples)),
            min_duration=parse_duration(
                _get(d, "minDuration", "min_duration", default=default.min_duration)
            )
            or 0.0,
            max_duration=parse_duration(max_d) if max_d is not None else default.max_duration,
            on_timeout=str(_get(d, "onTimeout", "on_timeout", default=default.on_timeout)),
            warm_up=parse_duration(_get(d, "warmUp", "warm_up", default=default.warm_up)) or 0.0,
            srm_alpha=float(_get(d, "srmAlpha", "srm_alpha", default=default.srm_alpha)),
        )


@dataclass(frozen=True)
class GatingConfig:
    """Gates plus policy, built from a whole ChampionChallenger ``spec``."""

    gates: tuple[GateConfig, ...]
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)

    @classmethod
    def from_spec(cls, spec: ChampionChallengerSpec | Mapping[str, Any]) -> GatingConfig:
        """From the typed spec (a camelCase dict is validated into it first). Raises
        ``ValueError`` (pydantic's ``ValidationError`` is one) for a configuration the engine
        cannot run."""
        if not isinstance(spec, ChampionChallengerSpec):
            spec = ChampionChallengerSpec.model_validate(spec)
        return cls(
            gates=gates_from([GateConfig.from_gate(g) for g in spec.gates]),
            policy=DecisionPolicy.from_decision(spec.decision),
        )


def gates_from(gates: Sequence[Mapping[str, Any] | GateConfig]) -> tuple[GateConfig, ...]:
    out = tuple(GateConfig.from_dict(g) for g in gates)
    names = [g.name for g in out]
    if len(set(names)) != len(names):
        raise ValueError(f"gate names must be unique: {names}")
    return out
