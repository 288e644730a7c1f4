# ruff: noqa: RUF002, RUF003  (mathematical notation: ×, − are intended)
"""The drift benchmark's comparison with Alibi Detect's online detectors, at equal false-alarm rate.

Alibi Detect's online detectors look at one request (instance) at a time and are calibrated to
an expected run time (ERT) in instances by bootstrap; modelops' e-detector looks at per-minute
bin counts and is calibrated by ``alarmEvery``. Both are given the same rate here: an ERT of
``ert_minutes`` of traffic, and ``alarmEvery`` of the same length.

Why not the acceptance scenario's 90 days: Alibi's thresholds are the 1 − β quantiles of
bootstrapped streams with β ≈ 1/(features × ERT) (a Bonferroni-like split across features), so
it needs more than features × ERT bootstrap streams (its own check refuses fewer), each costing
O((reference rows + 2 × window)²). 90 days at 300 requests a minute is 39 million instances,
so 780 million streams; this 2-core machine makes 40,000 to 80,000 a minute. An ERT of 10
minutes (3,000 instances, 120,000 streams: twice the least Alibi accepts, 40 × the ERT where
Alibi's docs ask for 10 ×) takes two to three minutes to calibrate.

The streams are the same for every method: raw rows (20 standard normal features, one moved by
``shift_sd`` standard deviations after ``warmup_minutes``) arriving as a Poisson stream of
``requests_per_minute``; Alibi reads them row by row, modelops gets each minute's counts in its
profile's bins, with missed scrapes (a look with no data, its rows arriving with the next
look). The diurnal cycle and bursts of the other scenarios are left out: Alibi's ERT counts
instances, so with varying traffic its expected time between false alarms would vary with
the hour and the two rates would no longer be equal.

Only CVMDriftOnline (continuous features) is run. FETDriftOnline tests binary data; it could
watch "above the reference median" indicators, but that discards most of a 0.3 SD shift's
evidence, and its calibration bootstraps every feature separately through scipy's
hypergeometric CDF (about 10 s per 1,000 streams for 20 features here): 120,000 streams would
take 20 minutes on their own.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.thirdparty_servers import CACHE, ensure_venv
from modelops_operator.monitoring.detectors import BinnedDrift, alarm_threshold

ALIBI_PINS = ("alibi-detect==0.13.0",)
ALIBI_VENV = CACHE / "alibi-venv"
ALIBI_SCRIPT = Path(__file__).resolve().parent / "alibi_online.py"
LOOK_SECONDS = 60.0
LABELS = {"modelops": "modelops (e-detector)", "alibi_cvm": "Alibi CVMDriftOnline"}


@dataclass(frozen=True)
class AlibiPlan:
    features: int = 20
    bins: int = 10
    requests_per_minute: float = 300.0
    reference_rows: int = 5000  # the training sample modelops' profile is built from
    # Alibi's per-instance cost and its calibration grow with its reference set: it gets the
    # first rows of the same training sample.
    alibi_reference_rows: int = 500
    window_sizes: tuple[int, ...] = (100,)
    ert_minutes: float = 10.0
    bootstraps_per_ert: float = 40.0
    missed_scrapes: float = 0.01
    shift_sd: float = 0.3
    healthy_hours: float = 3.0
    shift_runs: int = 20
    warmup_minutes: int = 5
    watch_minutes: int = 60
    seed: int = 0

    @property
    def ert_rows(self) -> int:
        return round(self.requests_per_minute * self.ert_minutes)

    @property
    def n_bootstraps(self) -> int:
        return round(self.bootstraps_per_ert * self.ert_rows)


# --- streams ---------------------------------------------------------------------------------


def profile_of(sample: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges (F, K−1), frequencies (F, K)) of a training sample (rows, F): its quantiles as
    bins, as ``simulate.build_profile`` and ``modelops profile`` make them."""
    edges = np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1], axis=0).T
    counts = np.stack(
        [
            np.bincount(np.searchsorted(edges[f], sample[:, f], side="right"), minlength=bins)
            for f in range(sample.shape[1])
        ]
    )
    return edges, counts / len(sample)


def stream_rows(
    plan: AlibiPlan, minutes: int, shift_at: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(rows (N, F), the minute each row arrived (N,)): Poisson arrivals, feature 0 moved by
    ``shift_sd`` from minute ``shift_at`` on (never when None)."""
    per_minute = rng.poisson(plan.requests_per_minute, minutes)
    row_minutes = np.repeat(np.arange(minutes), per_minute)
    rows = rng.standard_normal((row_minutes.size, plan.features))
    if shift_at is not None:
        rows[row_minutes >= shift_at, 0] += plan.shift_sd
    return rows.astype(np.float32), row_minutes


def minute_counts(
    rows: np.ndarray, row_minutes: np.ndarray, edges: np.ndarray, minutes: int
) -> np.ndarray:
    """(minutes, F, K) counts of each minute's rows in each feature's bins (``edges`` (F, K−1),
    a value on an edge goes to the bin above, as in the profile)."""
    features, bins = edges.shape[0], edges.shape[1] + 1
    which = np.stack(
        [np.searchsorted(edges[f], rows[:, f], side="right") for f in range(features)], axis=1
    )
    flat = (row_minutes[:, None] * features + np.arange(features)) * bins + which
    return (
        np.bincount(flat.ravel(), minlength=minutes * features * bins)
        .reshape(minutes, features, bins)
        .astype(float)
    )


def scraped(counts: np.ndarray, missed: np.ndarray) -> np.ndarray:
    """What each look sees: nothing when its scrape was missed (``missed`` (T,)), and then the
    missed minutes' counts together with the next look's."""
    seen = np.zeros_like(counts)
    carried = np.zeros_like(counts[0])
    for minute, look in enumerate(counts):
        carried = carried + look
        if not missed[minute] or minute == len(counts) - 1:
            seen[minute], carried = carried, np.zeros_like(carried)
    return seen


# --- modelops' detector ----------------------------------------------------------------------


def modelops_alarm_minutes(
    looks: np.ndarray, reference: np.ndarray, plan: AlibiPlan
) -> list[list[int]]:
    """Per run, the looks at which modelops' detector alarmed (``looks`` (T, R, F, K)); it is
    restarted after each alarm, as the operator does once its condition is raised."""
    runs = looks.shape[1]
    threshold = alarm_threshold(plan.ert_minutes * 60, LOOK_SECONDS)
    mask = np.ones(reference.shape, dtype=bool)
    detector = BinnedDrift(reference, mask, plan.reference_rows, threshold, runs=runs)
    alarms: list[list[int]] = [[] for _ in range(runs)]
    for minute, counts in enumerate(looks):
        detector.update(counts)
        fired = detector.alarmed()
        detector.reset(fired)
        for run in np.flatnonzero(fired):
            alarms[run].append(minute)
    return alarms


# --- Alibi Detect, in its own virtualenv ------------------------------------------------------


def run_alibi(
    plan: AlibiPlan, reference: np.ndarray, streams: list[tuple[np.ndarray, int | None]]
) -> dict[str, Any] | str:
    """Alibi's alarm rows per stream (``streams``: rows and the first row to stop after), or
    why it could not run."""
    print(
        f"   Alibi Detect's virtualenv: {ALIBI_VENV} (made on first use, a few minutes)",
        flush=True,
    )
    bin_dir = ensure_venv(ALIBI_VENV, ALIBI_PINS, "Alibi Detect")
    if bin_dir is None:
        return f"{ALIBI_PINS[0]} could not be installed"
    with tempfile.TemporaryDirectory(prefix="modelops-alibi-") as work:
        directory = Path(work)
        np.save(directory / "reference.npy", reference)
        listed = []
        for number, (rows, stop_after) in enumerate(streams):
            np.save(directory / f"stream-{number:03d}.npy", rows)
            listed.append({"file": f"stream-{number:03d}.npy", "stop_at_first_after": stop_after})
        scenario = {
            "ert": plan.ert_rows,
            "window_sizes": list(plan.window_sizes),
            "n_bootstraps": plan.n_bootstraps,
            "seed": plan.seed,
            "streams": listed,
        }
        (directory / "scenario.json").write_text(json.dumps(scenario))
        # transformers (an Alibi dependency) warns on import that no deep-learning framework
        # is installed: none is needed here.
        env = dict(os.environ, TRANSFORMERS_VERBOSITY="error")
        try:
            subprocess.run(
                [str(bin_dir / "python"), str(ALIBI_SCRIPT), str(directory)],
                check=True,
                timeout=3600,
                env=env,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return f"Alibi Detect's run failed: {exc}"
        return json.loads((directory / "alibi.json").read_text())


# --- the scenario ----------------------------------------------------------------------------


@dataclass
class Outcome:
    healthy_alarms: int
    delays: list[float]  # per shifted run, minutes from the shift to the first alarm (nan: none)


def outcome_entry(outcome: Outcome, plan: AlibiPlan) -> dict[str, Any]:
    delays = np.array(outcome.delays, dtype=float)
    found = delays[~np.isnan(delays)]
    return {
        "healthy_alarms": outcome.healthy_alarms,
        "alarms_per_day": outcome.healthy_alarms / (plan.healthy_hours / 24),
        "detected_within_hour": float(np.mean(delays < 60)),
        "median_delay_minutes": float(np.median(found)) if found.size else None,
        "delays_minutes": [None if math.isnan(d) else d for d in outcome.delays],
    }


def first_delay(alarm_minutes: list[int], shift_at: int) -> float:
    after = [m - shift_at for m in alarm_minutes if m >= shift_at]
    return float(after[0]) if after else math.nan


def compare(plan: AlibiPlan) -> dict[str, Any]:
    """Both methods on the same streams: false alarms on a healthy stream of ``healthy_hours``,
    then ``shift_runs`` streams shifted after ``warmup_minutes``, watched for
    ``watch_minutes``."""
    rng = np.random.default_rng(plan.seed)
    training = rng.standard_normal((plan.reference_rows, plan.features))
    edges, reference = profile_of(training, plan.bins)
    healthy_minutes = round(plan.healthy_hours * 60)
    shifted_minutes = plan.warmup_minutes + plan.watch_minutes
    healthy = stream_rows(plan, healthy_minutes, None, rng)
    shifted = [
        stream_rows(plan, shifted_minutes, plan.warmup_minutes, rng) for _ in range(plan.shift_runs)
    ]

    def looks(rows: np.ndarray, row_minutes: np.ndarray, minutes: int) -> np.ndarray:
        missed = rng.random(minutes) < plan.missed_scrapes
        return scraped(minute_counts(rows, row_minutes, edges, minutes), missed)

    ours_healthy = modelops_alarm_minutes(
        looks(*healthy, healthy_minutes)[:, None], reference, plan
    )
    ours_shifted = modelops_alarm_minutes(
        np.stack([looks(*s, shifted_minutes) for s in shifted], axis=1), reference, plan
    )
    outcomes = {
        "modelops": Outcome(
            len(ours_healthy[0]), [first_delay(m, plan.warmup_minutes) for m in ours_shifted]
        )
    }
    first_shifted_row = [int(np.searchsorted(m, plan.warmup_minutes)) for _, m in shifted]
    alibi = run_alibi(
        plan,
        training[: plan.alibi_reference_rows].astype(np.float32),
        [(healthy[0], None)]
        + [(rows, first) for (rows, _), first in zip(shifted, first_shifted_row, strict=True)],
    )
    if isinstance(alibi, dict):
        alarm_rows = alibi["alarm_rows"]
        outcomes["alibi_cvm"] = Outcome(
            len(alarm_rows[0]),
            [
                first_delay([int(m[i]) for i in rows], plan.warmup_minutes)
                for (_, m), rows in zip(shifted, alarm_rows[1:], strict=True)
            ],
        )
    return {
        "plan": {**asdict(plan), "ert_rows": plan.ert_rows, "n_bootstraps": plan.n_bootstraps},
        "configured_alarms_per_day": 24 * 60 / plan.ert_minutes,
        "methods": {name: outcome_entry(o, plan) for name, o in outcomes.items()},
        "alibi_seconds": None if isinstance(alibi, str) else alibi["seconds"],
        "alibi_calibration_seconds": (
            None if isinstance(alibi, str) else alibi["calibration_seconds"]
        ),
        "alibi_skipped": alibi if isinstance(alibi, str) else None,
    }


def render(result: dict[str, Any]) -> str:
    plan = result["plan"]
    lines = [
        f"{plan['features']} features, {plan['requests_per_minute']:g} requests/min (Poisson, "
        f"missed scrapes), equal rate: Alibi ERT {plan['ert_rows']:,} instances = alarmEvery "
        f"{plan['ert_minutes']:g} min (≤ {result['configured_alarms_per_day']:g} a day)",
        f"{'method':<24}{'false alarms/day':>18}{'found ≤ 1 h':>14}{'median delay':>14}",
    ]
    for method, entry in result["methods"].items():
        delay = entry["median_delay_minutes"]
        lines.append(
            f"{LABELS[method]:<24}{entry['alarms_per_day']:>18.1f}"
            f"{entry['detected_within_hour']:>13.0%} "
            f"{'never' if delay is None else f'{delay:.0f} min':>13}"
        )
    if result["alibi_skipped"]:
        lines.append(f"!! Alibi Detect skipped: {result['alibi_skipped']}")
    lines.append(
        f"healthy: one stream of {plan['healthy_hours']:g} h; shift of {plan['shift_sd']:g} SD "
        f"in one feature after {plan['warmup_minutes']} min: {plan['shift_runs']} runs watched "
        f"{plan['watch_minutes']} min; Alibi: reference {plan['alibi_reference_rows']} rows, "
        f"windows {plan['window_sizes']}, {plan['n_bootstraps']:,} bootstraps"
    )
    return "\n".join(lines)


def main() -> None:
    """A quick look without the rest of the drift benchmark."""
    started = time.monotonic()
    print(render(compare(AlibiPlan(healthy_hours=1.0, shift_runs=5))))
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
