# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Anytime-valid champion/challenger gating: pure functions and small dataclasses.

Checking a fixed-horizon test every interval inflates its error rate (a 5% test peeked at 100
times promotes a bad model ~37% of the time). Every test here is an e-process or a confidence
sequence, so P(false promotion) ≤ alpha however often, and for however long, it is evaluated.
See ``docs/gating.md`` for the methods, citations, defaults and measured figures.

The interface the controller calls
==================================

::

    from modelops_operator.gating import GatingConfig, evaluate

    cfg = GatingConfig.from_spec(spec)    # the validated ChampionChallengerSpec: gates + decision
    decision = evaluate(cfg.gates, counts, elapsed, state=previous_state, policy=cfg.policy)
    decision.to_status()                  # decision, message, gates[] for the CRD status
    decision.state.to_dict()              # persist, pass back next time (see below)
    if decision.action is Action.PROMOTE: ...            # or ROLLBACK / WAIT

Inputs
------
``gates``
    :class:`GateConfig` (``GatingConfig.from_spec``), or ``spec.gates`` entries as dicts
    (camelCase or snake_case, validated by the API's ``Gate`` model): ``name``, ``type``
    (``errorRate`` | ``latency`` | ``accuracy`` | ``predictionDrift`` | ``prometheus``),
    ``test`` (``nonInferiority`` | ``superiority``), ``margin`` (relative increase for
    errorRate/latency — 0.2 means the challenger may have up to 1.2× the champion's rate;
    absolute drop for accuracy — 0.01 is one point; largest edge-KS distance for drift; unset:
    the type's default, ``api.championchallenger.GATE_DEFAULTS``), ``latencyThreshold``
    ("250ms"), ``thresholdRange`` (prometheus), optional ``harmMargin``, ``absoluteMargin``,
    ``tau``.
``counts``
    :class:`Counts` or its dict: **cumulative** counts per arm since the challenge began (raw
    counter differences, not ``increase()``): requests, errors, latency histogram buckets (or
    ``slow`` per bound), feedback correct/total, regression ``errorSum``/``squaredErrorSum``,
    prediction-histogram buckets, custom per-gate counts, and in shadow mode ``paired`` outcome
    counts (both / championOnly / challengerOnly / neither). Optional ``timestamp`` (stale
    detection) and ``challengerWeight`` (enables the sample-ratio-mismatch alarm). ``None`` means
    the query failed.
``elapsed``
    Time since the challenge began: seconds, ``timedelta`` or ``"1h30m"``.
``state``
    The previous ``decision.state`` (object or ``to_dict()``), ``None`` on the first look.
``policy``
    ``spec.decision`` as :class:`DecisionPolicy` or dict: ``alpha`` (0.05), ``interval``,
    ``minSamples`` (200 per arm), ``minDuration`` (0), ``maxDuration`` (24h), ``onTimeout``
    (``rollback`` | ``hold``), ``rollbackAlpha`` (= alpha).

Output
------
:class:`Decision`: ``action`` (:class:`Action` PROMOTE / ROLLBACK / WAIT), ``reason`` (one line,
e.g. "errors: not enough data: 140 of ≥ 400 challenger requests needed at the current rate"),
``reasons``, ``gates`` (one :class:`GateReport` each: verdict Pass / Fail / Pending / NoData,
estimate, lower, upper, samples, statistic (e-values, always-valid p-values, thresholds),
message, plan), ``state``, ``timed_out``, ``hold``, ``srm_alarm``. ``to_status()`` gives exactly
``decision``/``message``/``gates[]`` for the CRD status; ``to_dict()`` the full camelCase dump.

What must be persisted
----------------------
``decision.state.to_dict()`` after **every** evaluation, and passed back next time. It holds:
the last cumulative counts (to form per-look increments and detect stale data); per rate gate
the conditional-binomial log-likelihood on a 301-point log-ratio grid (needed because the split
may change between looks, so the evidence cannot be rebuilt from cumulative counts alone); per
gate the running maxima of both e-processes (verdicts are sticky: once sup E ≥ 1/α a gate stays
decided, exactly the event Ville's inequality bounds) and the running confidence interval; the
SRM e-process; per betting gate (absoluteMargin, accuracy) its log wealth per null and bet.
About 3 kB per rate gate, 4 kB more per betting e-process. If the state is lost, the next call
pools everything seen so far into one look: still a valid test when the split was constant,
approximately so otherwise, and verdicts restart from that pooled evidence.

Decision rule
-------------
ROLLBACK if any gate fails (its harm e-process reaches K/α_r; Bonferroni over the K gates that
can roll back). Else WAIT on a sample-ratio mismatch. Else PROMOTE if every gate passes (its
non-inferiority e-process reaches 1/α, intersection–union: overall P(false promotion) ≤ α) and
each arm has ``minSamples`` requests and ``minDuration`` has passed. Else, at ``maxDuration``,
``onTimeout``. Else WAIT. Missing or stale data is always WAIT, never a pass or a failure.

Methods (details and citations in the module docstrings)
--------------------------------------------------------
* :mod:`.rateratio` — errors and slow requests: conditional-binomial rate-ratio e-process with a
  discrete half-normal prior (Lindon & Malek 2022; Lindon, Sanden & Shirikian 2022). Exact for
  Poisson arrivals, robust to the split changing between canary steps.
* :mod:`.betting` — accuracy (split or paired shadow) and the absolute route of rate gates:
  betting e-processes, one look-interval at a time (each interval a stratum, so a split change
  with a moving base rate or mix manufactures no evidence; Waudby-Smith & Ramdas 2024 for
  betting confidence sequences), exact at every sample size.
* :mod:`.mixture` — regression loss: one-sided normal-mixture mSPRT / confidence sequence
  (Robbins 1970; Johari, Pekelis & Walsh 2022; Howard et al. 2021) on interval-stratified
  differences, plug-in variance after a burn-in (asymptotic validity, Waudby-Smith et al. 2024).
* :mod:`.drift` — prediction distributions from histogram buckets: time-uniform DKW bands on the
  bucket edges (Howard & Ramdas 2022); PSI reported beside its no-drift expectation, not used.
* :mod:`.planning` — time to a likely decision at the current traffic (:func:`plan_gate`).
* :mod:`.simulate` — vectorised simulation of the engine and of two baselines (Flagger-style
  threshold counting, a fixed-horizon test repeated every look); ``modelops gating simulate``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import DecisionPolicy, GateConfig, GatingConfig, parse_duration
from .counts import ArmCounts, Counts, PairedCounts

if TYPE_CHECKING:
    from . import betting
    from .engine import Action, Decision, GatingState, evaluate
    from .gates import FAIL, NODATA, PASS, PENDING, GateReport, GateState
    from .planning import Plan, Traffic, plan_gate, traffic_from_counts

# The statistics need numpy and scipy (28 MiB of the operator's memory). The spec side above
# does not, and an operator whose fleet runs no challenge never evaluates one: the rest is
# imported on first use (PEP 562), not with the package.
_LAZY = {
    "betting": ".betting",
    **dict.fromkeys(("Action", "Decision", "GatingState", "evaluate"), ".engine"),
    **dict.fromkeys(("FAIL", "NODATA", "PASS", "PENDING", "GateReport", "GateState"), ".gates"),
    **dict.fromkeys(("Plan", "Traffic", "plan_gate", "traffic_from_counts"), ".planning"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name], __name__)
    return module if name == "betting" else getattr(module, name)

__all__ = [
    "FAIL",
    "NODATA",
    "PASS",
    "PENDING",
    "Action",
    "ArmCounts",
    "Counts",
    "Decision",
    "DecisionPolicy",
    "GateConfig",
    "GateReport",
    "GateState",
    "GatingConfig",
    "GatingState",
    "PairedCounts",
    "Plan",
    "Traffic",
    "betting",
    "evaluate",
    "parse_duration",
    "plan_gate",
    "traffic_from_counts",
]
