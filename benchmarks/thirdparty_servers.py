"""The model servers the serving benchmark compares ours with: MLServer and KServe's Python server.

Each is installed from PyPI into its own virtualenv under ~/.cache/modelops/bench (their pins
conflict with ours and with each other) and serves the joblib copy of the benchmark's model
over the V2 REST protocol at ``/v2/models/fraud/infer``, answering the very request body the
other scenarios get. A venv is remade when its pins change (they are stamped in it); when one
cannot be installed (no registry), its scenarios are skipped with one line.

MLServer 1.7.1 with its scikit-learn runtime, twice: default settings (``parallel_workers: 1``,
inference in one worker process beside the HTTP front) and ``parallel_workers: 0`` (inference
on the event loop, as ours runs); ``debug`` off, so no access log.

KServe 0.21.0 (package ``kserve``): KServe's own sklearnserver is not on PyPI (it ships only in
KServe's container image), so KServe is measured the way its users serve a model of their own
in Python: benchmarks/kserve_predictor.py, a ``kserve.Model`` subclass whose load and predict
do what sklearnserver's do, started by ``kserve.ModelServer``. Settings, for a comparison on
equal terms with ours (one process, the model called on the event loop, silent per request):

- ``--workers 1``: one uvicorn process, ModelServer's default, as ours and pw0 MLServer run;
  the model's ``predict`` is synchronous, so KServe calls it on the event loop;
- ``--enable_grpc false``: only REST is measured, and ours serves no gRPC (an idle gRPC server
  would also take a port of its own);
- ``--enable_latency_logging false``, uvicorn's access log and KServe's per-request timing
  lines (``kserve.trace``) turned down to WARNING, and FastAPI's deprecation warning for the
  ``ORJSONResponse`` KServe answers with ignored (it was printed on every request): ours and
  MLServer log nothing per request;
- scikit-learn and joblib pinned to the versions that wrote the model, so the pickle loads
  without version warnings and predicts with the same code as ours;
- KServe's default event loop (uvloop) and everything else as installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelops" / "bench"
MLSERVER_VENV = CACHE / "mlserver-venv"
# uvloop 0.22+ breaks MLServer 1.7.1's parallel workers (get_event_loop without a loop).
MLSERVER_PINS = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22")
KSERVE_VENV = CACHE / "kserve-venv"
KSERVE_VERSION = "0.21.0"
KSERVE_PREDICTOR = Path(__file__).resolve().parent / "kserve_predictor.py"
PINS_STAMP = "modelops-pins.txt"
MODEL_NAME = "fraud"


def kserve_pins() -> tuple[str, ...]:
    import joblib
    import sklearn

    return (f"kserve=={KSERVE_VERSION}", f"scikit-learn=={sklearn.__version__}",
            f"joblib=={joblib.__version__}")


def ensure_venv(venv: Path, pins: tuple[str, ...], what: str) -> Path | None:
    """The venv's bin directory with exactly ``pins`` installed (made, or remade when its stamp
    names other pins); None, after one line, when they cannot be installed."""
    stamp = venv / PINS_STAMP
    wanted = "\n".join(pins) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return venv / "bin"
    if venv.exists():
        shutil.rmtree(venv)
    print(f">> installing {' '.join(pins)} into {venv}", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *pins], check=True,
                       timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"!! {what} not available, its comparison is skipped: {exc}", flush=True)
        return None
    stamp.write_text(wanted)
    return venv / "bin"


@dataclass
class Launch:
    """One third-party scenario: how to start it and where it answers."""
    scenario: str
    argv: list[str]
    port: int
    cwd: Path | None = None


def mlserver_launch(scenario: str, binary: Path, directory: Path, joblib_path: Path,
                    parallel_workers: int, host: str, free_port: Callable[[], int]) -> Launch:
    http_port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "settings.json").write_text(json.dumps({
        "http_port": http_port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": parallel_workers, "debug": False, "host": host}))
    (directory / "model-settings.json").write_text(json.dumps({
        "name": MODEL_NAME, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(joblib_path), "version": "v1"}}))
    return Launch(scenario, [str(binary), "start", str(directory)], http_port, cwd=directory)


def kserve_launch(python: Path, joblib_path: Path, host: str,
                  free_port: Callable[[], int]) -> Launch:
    port = free_port()
    return Launch("kserve", [
        str(python), str(KSERVE_PREDICTOR), "--model_path", str(joblib_path), "--host", host,
        "--model_name", MODEL_NAME, "--http_port", str(port), "--workers", "1",
        "--enable_grpc", "false", "--enable_latency_logging", "false"], port)


def launches(work: Path, joblib_path: Path, host: str,
             free_port: Callable[[], int]) -> list[Launch]:
    """Every third-party scenario this machine can run (installing what it needs first)."""
    found = []
    bin_dir = ensure_venv(MLSERVER_VENV, MLSERVER_PINS, "MLServer")
    if bin_dir:
        for scenario, workers in (("mlserver", 1), ("mlserver-pw0", 0)):
            found.append(mlserver_launch(scenario, bin_dir / "mlserver", work / scenario,
                                         joblib_path, workers, host, free_port))
    bin_dir = ensure_venv(KSERVE_VENV, kserve_pins(), "KServe")
    if bin_dir:
        found.append(kserve_launch(bin_dir / "python", joblib_path, host, free_port))
    return found
