"""The model server as a real process: V2 endpoints, formats, safety refusals, bad requests."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import HOST, Models, Program, free_port, model_server, v2_request

pytestmark = pytest.mark.slow


def infer(url: str, body: object, model: str = "fraud", **kwargs: object) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=10, **kwargs)


def test_sklearn_predictions_equal_the_models_own(stack, models: Models) -> None:
    rows = models.X[:25]
    response = infer(stack.champion_server.url, v2_request(rows, "req-1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-1" and response.headers["X-Request-Id"] == "req-1"
    assert body["model_name"] == "fraud" and body["model_version"] == "v1"
    (output,) = body["outputs"]
    assert output["name"] == "predict" and output["shape"] == [25]
    assert output["data"] == models.classifier.predict(rows).tolist()


def test_predict_proba_on_request_and_versioned_path(stack, models: Models) -> None:
    rows = models.X[:5]
    body = {**v2_request(rows), "outputs": [{"name": "predict_proba"}]}
    url = f"{stack.champion_server.url}/v2/models/fraud/versions/v1/infer"
    response = httpx.post(url, json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [5, 2]
    expected = models.classifier.predict_proba(rows).ravel()
    np.testing.assert_allclose(output["data"], expected, rtol=1e-12)
    wrong_version = httpx.post(url.replace("/v1/", "/v9/"), json=body)
    assert wrong_version.status_code == 404 and "v9" in wrong_version.json()["error"]


def test_onnx_predictions_equal_onnxruntime(stack, models: Models) -> None:
    rows = models.X[:40]
    response = infer(stack.challenger_server.url, v2_request(rows.astype(np.float32), None, "FP32"))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["label"]["data"] == models.onnx_labels(rows).tolist()
    assert outputs["probabilities"]["shape"] == [40, 2]


def test_health_and_metadata(stack) -> None:
    url = stack.champion_server.url
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{url}/v2/models/fraud/ready").json() == {"name": "fraud", "ready": True}
    meta = httpx.get(f"{url}/v2/models/fraud").json()
    assert meta["versions"] == ["v1"] and meta["platform"] == "sklearn"
    assert meta["inputs"][0]["shape"] == [-1, 4]
    onnx_meta = httpx.get(f"{stack.challenger_server.url}/v2/models/fraud").json()
    assert {o["name"] for o in onnx_meta["outputs"]} == {"label", "probabilities"}
    assert httpx.get(f"{url}/v2/models/other").status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3]}]},
         "has 3 elements but shape [2, 4] needs 8"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]},
         "datatype: 'FP99' is not one of"),
        ({"inputs": []}, "at least one input"),
        ({"id": "x"}, "missing required field 'inputs'"),
        ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
         "expects 4 features"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT8", "data": [1, 2, 3, 999]}]},
         "do not fit INT8"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                      "data": ["a", "b", "c", "d"]}]}, "must be numbers"),
        ([1, 2, 3], "JSON object"),
    ],
)
def test_bad_requests_get_400_with_a_v2_error(stack, body: object, fragment: str) -> None:
    response = infer(stack.champion_server.url, body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_invalid_json_gets_400_and_a_too_large_body_413(stack) -> None:
    url = f"{stack.champion_server.url}/v2/models/fraud/infer"
    broken = httpx.post(url, content=b'{"inputs": [', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    huge = httpx.post(url, content=b" " * (17 * 1024 * 1024))
    assert huge.status_code == 413 and "--max-body-bytes" in huge.json()["error"]


def _run_to_exit(program: Program, log_dir: Path) -> tuple[int, str]:
    program.start(log_dir)
    assert program.process is not None
    code = program.process.wait(60)
    return code, program.log()


def test_pickle_is_refused_without_the_opt_in(models: Models, log_dir: Path, spawn) -> None:
    refused = model_server("fraud", models.classifier_joblib, "sklearn", "v1")
    code, log = _run_to_exit(refused, log_dir)
    assert code != 0 and "refusing to load classifier.joblib" in log
    assert "--allow-unsafe-pickle" in log
    allowed = model_server("fraud", models.classifier_joblib, "sklearn", "v1",
                           "--allow-unsafe-pickle")
    spawn.append(allowed.start(log_dir))
    allowed.wait_ready("/v2/health/ready")
    rows = models.X[:10]
    data = infer(allowed.url, v2_request(rows)).json()["outputs"][0]["data"]
    assert data == models.classifier.predict(rows).tolist()


def test_digest_mismatch_refuses_to_serve_and_says_why(models: Models, log_dir: Path,
                                                       tmp_path: Path) -> None:
    termination_log = tmp_path / "termination-log"
    wrong = "sha256:" + "0" * 64
    program = model_server("fraud", models.classifier_skops, "sklearn", "v1", "--digest", wrong)
    program.args[program.args.index("--termination-log") + 1] = str(termination_log)
    code, log = _run_to_exit(program, log_dir)
    assert code != 0 and "digest mismatch" in log
    assert "digest mismatch" in termination_log.read_text()


def test_matching_digest_and_env_configuration(models: Models, log_dir: Path, spawn) -> None:
    digest = "sha256:" + hashlib.sha256(models.regressor_skops.read_bytes()).hexdigest()
    port = free_port()
    program = Program("serve-env", ["modelops_serving.server"], port, env={
        "MODELOPS_NAME": "price", "MODELOPS_URI": f"file://{models.regressor_skops}",
        "MODELOPS_FORMAT": "sklearn", "MODELOPS_DIGEST": digest, "MODELOPS_PORT": str(port),
        "MODELOPS_HOST": HOST, "MODELOPS_TERMINATION_LOG": "", "MODELOPS_VERSION": "7"})
    spawn.append(program.start(log_dir))
    program.wait_ready("/v2/health/ready")
    rows = models.X[:3]
    response = infer(program.url, v2_request(rows), model="price")
    np.testing.assert_allclose(response.json()["outputs"][0]["data"],
                               models.regressor.predict(rows), rtol=1e-12)


def test_custom_model_class(tmp_path: Path, log_dir: Path, spawn) -> None:
    (tmp_path / "doubler.py").write_text(textwrap.dedent("""
        import json
        import numpy as np

        class Doubler:
            def load(self, path):
                with open(path + "/factor.json") as handle:
                    self.factor = json.load(handle)["factor"]

            def predict(self, inputs):
                return {"doubled": next(iter(inputs.values())) * self.factor}
    """))
    (tmp_path / "factor.json").write_text(json.dumps({"factor": 2}))
    program = model_server("doubler", tmp_path, "custom", "1", "--custom-class", "doubler:Doubler")
    spawn.append(program.start(log_dir))
    program.wait_ready("/v2/health/ready")
    response = infer(program.url, v2_request(np.array([[1.5, 2.0]])), model="doubler")
    assert response.json()["outputs"] == [
        {"name": "doubled", "datatype": "FP64", "shape": [1, 2], "data": [3.0, 4.0]}]


def test_missing_custom_class_is_a_clear_error(tmp_path: Path, log_dir: Path) -> None:
    program = model_server("x", tmp_path, "custom", "1", "--custom-class", "nowhere:Nothing")
    code, log = _run_to_exit(program, log_dir)
    assert code != 0 and "cannot import custom model class nowhere:Nothing" in log
