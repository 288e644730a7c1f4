"""Model formats and model servers on the real node, through the operator.

Models are trained here by their own libraries (XGBoost, LightGBM, MLflow), served over HTTP
from the host like a model registry, fetched and verified by the pods, and asked for
predictions through their Services; every answer is compared with the library's prediction
on the same rows. MLServer (built from its PyPI package by `make images`) then challenges our
server and, promoted, is challenged by it in turn: the gates decide for both the same way.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import joblib
import numpy as np
import pytest

from modelops_demo.models import MODEL_PLAN, TRAIN_SEED, build_demo_models, draw_rows
from modelops_devcluster.realnode import image_reference
from modelops_serving.digests import file_digest, path_digest
from tests.harness.operator_process import OperatorProcess

from ..operator_fixtures import crds, get_json, operator_identity, wait_until  # noqa: F401
from .conftest import serve_directory, service_url
from .test_challenge import ServedModel, challenge, deploy, start_load, wait_phase

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS, _ = draw_rows(40, TRAIN_SEED + 7)


@dataclass(frozen=True)
class Trained:
    uri: str
    digest: str
    estimator: Any  # what answers locally, for the comparison


@pytest.fixture(scope="module")
def registry(real_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Models of every new format, and the demo's champion as a joblib file for MLServer."""
    import lightgbm
    import mlflow.sklearn
    import xgboost
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    directory = tmp_path_factory.mktemp("registry")
    features, labels = draw_rows(3000, TRAIN_SEED)
    boosted = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(features, labels)
    boosted.save_model(directory / "fraud.ubj")
    leaves = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(features, labels)
    leaves.booster_.save_model(directory / "fraud.txt")
    logistic = LogisticRegression(max_iter=300).fit(features, labels)
    mlflow.sklearn.save_model(logistic, directory / "mlflow",
                              signature=infer_signature(features, logistic.predict(features)))
    with tarfile.open(directory / "fraud-mlflow.tar.gz", "w:gz") as archive:
        archive.add(directory / "mlflow", arcname=".")
    demo = build_demo_models(directory / "demo")
    import skops.io as sio

    for name in ("champion", "better"):
        estimator = sio.load(demo[name].path)
        joblib.dump(estimator, directory / f"{name}.joblib")
    with serve_directory(real_cluster, directory) as base:
        yield {
            "xgboost": Trained(f"{base}/fraud.ubj", file_digest(directory / "fraud.ubj"),
                               boosted),
            "lightgbm": Trained(f"{base}/fraud.txt", file_digest(directory / "fraud.txt"),
                                leaves),
            # The archive's digest is the tree digest of what it unpacks to.
            "mlflow": Trained(f"{base}/fraud-mlflow.tar.gz", path_digest(directory / "mlflow"),
                              logistic),
            "champion": ServedModel(MODEL_PLAN["champion"][0], f"{base}/champion.joblib",
                                    file_digest(directory / "champion.joblib")),
            "better": ServedModel(MODEL_PLAN["better"][0], f"{base}/better.joblib",
                                  file_digest(directory / "better.joblib")),
        }


def apply_model(cluster: Any, namespace: str, name: str, fmt: str, uri: str, digest: str,
                runtime: dict[str, Any] | None = None) -> None:
    manifest = {
        "apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "fraud", "version": "1.0.0", "uri": uri, "format": fmt,
                           "digest": digest},
                 "runtime": runtime or {}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def v2_request(rows: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}]}


def predictions(url: str, rows: np.ndarray) -> np.ndarray:
    answer = httpx.post(f"{url}/v2/models/fraud/infer", json=v2_request(rows), timeout=30)
    assert answer.status_code == 200, answer.text
    (output,) = [o for o in answer.json()["outputs"] if o["name"] == "predict"]
    return np.asarray(output["data"], dtype=np.float64)


def stalled_message(cluster: Any, namespace: str, name: str) -> str:
    def message() -> str | None:
        conditions = (get_json(cluster, "-n", namespace, f"mdep/{name}").get("status") or {}
                      ).get("conditions") or []
        stalled = [c for c in conditions if c["type"] == "Stalled" and c["status"] == "True"]
        return stalled[0]["message"] if stalled else None

    return wait_until(message, timeout=180, what=f"mdep/{name} to be Stalled")


def test_xgboost_lightgbm_and_mlflow_models_answer_with_their_own_predictions(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, registry: dict
) -> None:
    cluster = real_cluster.cluster
    for fmt in ("xgboost", "lightgbm", "mlflow"):
        apply_model(cluster, namespace, f"fraud-{fmt}", fmt, registry[fmt].uri,
                    registry[fmt].digest)
    for fmt in ("xgboost", "lightgbm", "mlflow"):
        cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"mdep/fraud-{fmt}",
                        "--timeout=240s", timeout=250)
    for fmt in ("xgboost", "lightgbm", "mlflow"):
        url = service_url(real_cluster, namespace, f"fraud-{fmt}")
        expected = registry[fmt].estimator.predict(ROWS)
        np.testing.assert_array_equal(predictions(url, ROWS), expected)
        metadata = httpx.get(f"{url}/v2/models/fraud", timeout=10).json()
        assert metadata["platform"] == {"mlflow": "mlflow_sklearn"}.get(fmt, fmt)
    # The MLflow signature is the served model's input description.
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 6]}]


def test_broken_models_stall_naming_the_field_and_saying_why(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, registry: dict
) -> None:
    cluster = real_cluster.cluster
    xgb, archive = registry["xgboost"], registry["mlflow"]
    # An XGBoost file declared as LightGBM: the server cannot load it.
    apply_model(cluster, namespace, "wrong-format", "lightgbm", xgb.uri, xgb.digest)
    # The archive with another model's digest: the fetch refuses what it unpacked.
    apply_model(cluster, namespace, "wrong-digest", "mlflow", archive.uri, xgb.digest)
    # No such archive.
    apply_model(cluster, namespace, "missing", "mlflow", archive.uri.replace("fraud-", "gone-"),
                archive.digest)
    message = stalled_message(cluster, namespace, "wrong-format")
    assert "lightgbm cannot load" in message and "spec.model.format" in message, message
    message = stalled_message(cluster, namespace, "wrong-digest")
    assert "digest" in message and "spec.model.digest" in message, message
    message = stalled_message(cluster, namespace, "missing")
    assert "404" in message and "spec.model.uri" in message, message


@pytest.mark.timeout(1500)
def test_mlserver_challenges_our_server_and_is_challenged_by_it(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, registry: dict
) -> None:
    """The champion on our server, a better model on MLServer promoted over it, then the same
    model on our server challenging MLServer: identical answers from the two servers, every
    request counted by the sidecars, every label matched, no failed request."""
    cluster = real_cluster.cluster
    trusted = {"options": {"allowUnsafePickle": True}}  # both servers unpickle the joblib file
    mlserver = {"server": "mlserver", "image": image_reference("modelops.dev/mlserver"),
                "imagePullPolicy": "Never", **trusted}
    # The second challenge is the same model on another server: the two arms' accuracies
    # differ only by which rows each got, and a 0.02 margin took 3 to 7 minutes of load to
    # clear (the estimate's luck). 0.05 answers "no worse" in about a minute; the first
    # challenge's model is 0.2 better and passes either way.
    deploy(cluster, namespace, registry["champion"], runtime=trusted,
           gates=[{"name": "accuracy", "type": "accuracy", "margin": 0.05}])
    load = start_load(real_cluster, namespace)
    try:
        better = registry["better"]
        challenge(cluster, namespace, better, runtime=mlserver)
        compare_arms(real_cluster, namespace)
        promoted = wait_phase(cluster, namespace, "Promoted", timeout=400)
        assert promoted["champion"]["version"] == better.version
        champion = get_json(cluster, "-n", namespace, "mdep/fraud")["status"]["champion"]
        assert json.loads(champion["serving"])["runtime"]["server"] == "mlserver"

        # The same model again, as a new version on our server.
        ours = ServedModel("1.1.1", better.uri, better.digest)
        challenge(cluster, namespace, ours, runtime={"server": "modelops", "image": None,
                                                     "imagePullPolicy": "IfNotPresent"})
        compare_arms(real_cluster, namespace)
        promoted = wait_phase(cluster, namespace, "Promoted", timeout=400)
        assert promoted["champion"]["version"] == "1.1.1"
    finally:
        final = load.stop()
    print("load:", json.dumps(final, indent=1))
    assert final["requests"]["ok"] > 500
    assert final["requests"]["failed"] == 0, final["recentErrors"]
    assert final["feedback"]["failed"] == 0, final["recentErrors"]
    assert final["feedback"]["unmatched"] == 0, final.get("recentUnmatched")
    # The sidecars counted both servers' answers and scored their labels (over the whole run:
    # the pods that served 1.1.0 are gone, and their series with them).
    def by_version(metric: str) -> dict[str, float]:
        query = (f"sum by (version) (max_over_time({metric}{{namespace=\"{namespace}\"}}[20m]))")
        return {r["metric"]["version"]: float(r["value"][1]) for r in real_cluster.query(query)}

    counted, scored = by_version("modelops_requests_total"), by_version("modelops_feedback_total")
    for version in (better.version, "1.1.1"):
        assert counted.get(version, 0) > 50, counted
        assert scored.get(version, 0) > 20, scored


def compare_arms(real_cluster: Any, namespace: str) -> None:
    """Both arms answer the same rows the same, whichever server each runs."""
    cluster = real_cluster.cluster
    wait_until(lambda: cluster.kubectl("get", "-n", namespace, "deployment/fraud-challenger",
                                       check=False).returncode == 0,
               timeout=60, what="the challenger Deployment")
    cluster.kubectl("rollout", "status", "-n", namespace, "deployment/fraud-challenger",
                    "--timeout=180s", timeout=190)
    arms = {role: service_url(real_cluster, namespace, f"fraud-{role}")
            for role in ("champion", "challenger")}
    rows = draw_rows(50, TRAIN_SEED + 11)[0]
    champion, challenger = (predictions(arms[r], rows) for r in ("champion", "challenger"))
    assert champion.shape == challenger.shape == (50,)
    # Different models, same task: what matters is that each server answers with its model.
    served = get_json(cluster, "-n", namespace, "mdep/fraud")["status"]
    assert served["challenger"]["version"] != served["champion"]["version"]
