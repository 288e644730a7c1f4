"""Alibi Detect's online Cramér-von Mises detector on the drift benchmark's streams.

Runs in the Alibi Detect virtualenv that benchmarks/alibi_comparison.py makes (alibi-detect
0.13 needs numpy < 2, ours has numpy 2), never in the project's: ``python alibi_online.py DIR``.
DIR holds ``scenario.json`` (the detector's settings and the streams, in order), the reference
rows (``reference.npy``) and one ``.npy`` of rows per stream, all written by the benchmark; the
rows an alarm was raised at go to ``DIR/alibi.json``.

Each stream starts from a fresh detector state; after an alarm the detector is reset (as
modelops' detector is once its condition is raised) and goes on, so a healthy stream counts
every false alarm. A stream with ``stop_at_first_after`` ends at its first alarm on or after
that row (the shift's detection), to save time.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from alibi_detect.cd import CVMDriftOnline


def forget_history(detector: CVMDriftOnline) -> None:
    """Keep only the last window of the detector's history.

    The detector keeps every instance, statistic and prediction it has seen and copies them all
    at each instance, so a long stream costs quadratic time; only the last ``max_ws`` instances
    and the last statistic are ever read again, so its decisions do not change.
    """
    keep = detector.max_ws
    if len(detector.xs) > 2 * keep:
        detector.xs = detector.xs[-keep:]
        detector.test_stats = detector.test_stats[-1:]
        detector.drift_preds = detector.drift_preds[-1:]


def alarm_rows(detector: CVMDriftOnline, rows: np.ndarray, stop_at_first_after: int | None) -> list:
    """Rows (0-based) at which the detector alarmed, resetting it after each alarm."""
    detector.reset_state()
    alarms = []
    for index, row in enumerate(rows):
        if detector.predict(row, return_test_stat=False)["data"]["is_drift"]:
            alarms.append(index)
            detector.reset_state()
            if stop_at_first_after is not None and index >= stop_at_first_after:
                break
        forget_history(detector)
    return alarms


def main(directory: Path) -> int:
    scenario = json.loads((directory / "scenario.json").read_text())
    # The thresholds are bootstrapped with numpy's global generator.
    np.random.seed(scenario["seed"])
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector = CVMDriftOnline(
            np.load(directory / "reference.npy"),
            ert=scenario["ert"],
            window_sizes=scenario["window_sizes"],
            n_bootstraps=scenario["n_bootstraps"],
            verbose=False,
        )
    calibrated = time.monotonic()
    print(
        f"   alibi CVM: thresholds from {scenario['n_bootstraps']:,} bootstrap streams in "
        f"{calibrated - started:.0f} s",
        flush=True,
    )
    results = []
    for number, stream in enumerate(scenario["streams"], start=1):
        rows = np.load(directory / stream["file"])
        results.append(alarm_rows(detector, rows, stream.get("stop_at_first_after")))
        if number % 5 == 0 or number == len(scenario["streams"]):
            print(
                f"   alibi CVM: {number} of {len(scenario['streams'])} streams "
                f"({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    (directory / "alibi.json").write_text(
        json.dumps(
            {
                "alarm_rows": results,
                "calibration_seconds": calibrated - started,
                "seconds": time.monotonic() - started,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
