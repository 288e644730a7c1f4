"""Model formats beyond scikit-learn and ONNX: XGBoost and LightGBM native files and MLflow
model directories, made by the libraries themselves and served by our runtimes. Each answer is
compared with the library's own prediction on the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression

from modelops_serving.runtimes import ModelLoadError, load_runtime

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

X, Y = load_iris(return_X_y=True)
XR, YR = load_diabetes(return_X_y=True)


def predict(runtime, x: np.ndarray, output: str = "predict") -> np.ndarray:
    return runtime.predict({"input-0": x}, ("input-0",), (output,))[output]


@pytest.mark.parametrize("suffix", [".ubj", ".json"])
def test_an_xgboost_classifier_file_answers_as_its_wrapper(tmp_path: Path, suffix: str) -> None:
    model = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, Y)
    model.save_model(tmp_path / f"model{suffix}")
    runtime = load_runtime("xgboost", tmp_path)
    assert runtime.platform == "xgboost"
    np.testing.assert_array_equal(predict(runtime, X), model.predict(X))
    np.testing.assert_allclose(predict(runtime, X, "predict_proba"), model.predict_proba(X),
                               rtol=1e-6)


def test_a_binary_xgboost_classifier_and_a_regressor(tmp_path: Path) -> None:
    binary = xgb.XGBClassifier(n_estimators=5).fit(X, Y == 2)
    binary.save_model(tmp_path / "binary.ubj")
    runtime = load_runtime("xgboost", tmp_path / "binary.ubj")
    np.testing.assert_array_equal(predict(runtime, X), binary.predict(X))
    np.testing.assert_allclose(predict(runtime, X, "predict_proba"), binary.predict_proba(X),
                               rtol=1e-6)
    regressor = xgb.XGBRegressor(n_estimators=5).fit(XR, YR)
    regressor.save_model(tmp_path / "reg.json")
    runtime = load_runtime("xgboost", tmp_path / "reg.json")
    np.testing.assert_allclose(predict(runtime, XR), regressor.predict(XR), rtol=1e-6)
    assert [o.name for o in runtime.outputs] == ["predict"]


def test_a_lightgbm_text_model_answers_as_its_wrapper(tmp_path: Path) -> None:
    model = lgb.LGBMClassifier(n_estimators=8, verbose=-1).fit(X, Y)
    model.booster_.save_model(tmp_path / "model.txt")
    runtime = load_runtime("lightgbm", tmp_path)
    np.testing.assert_array_equal(predict(runtime, X), model.predict(X))
    np.testing.assert_allclose(predict(runtime, X, "predict_proba"), model.predict_proba(X),
                               rtol=1e-9)
    regressor = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(XR, YR)
    regressor.booster_.save_model(tmp_path / "reg.lgb")
    runtime = load_runtime("lightgbm", tmp_path / "reg.lgb")
    np.testing.assert_allclose(predict(runtime, XR), regressor.predict(XR), rtol=1e-9)


def test_a_booster_refuses_the_wrong_width_and_takes_missing_values(tmp_path: Path) -> None:
    model = xgb.XGBClassifier(n_estimators=3).fit(X, Y)
    model.save_model(tmp_path / "model.ubj")
    runtime = load_runtime("xgboost", tmp_path)
    from modelops_serving.v2protocol import ProtocolError

    with pytest.raises(ProtocolError, match="expects 4 features"):
        predict(runtime, X[:, :3])
    with_nan = X[:2].copy()
    with_nan[0, 1] = np.nan
    np.testing.assert_array_equal(predict(runtime, with_nan), model.predict(with_nan))


def test_a_file_that_is_not_a_model_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"xgboost cannot load model\.ubj"):
        load_runtime("xgboost", tmp_path)
    (tmp_path / "model.txt").write_text("tree\nnonsense\n")
    with pytest.raises(ModelLoadError, match=r"lightgbm cannot load model\.txt"):
        load_runtime("lightgbm", tmp_path / "model.txt")


# MLflow directories, written by MLflow itself.
mlflow_sklearn = pytest.importorskip("mlflow.sklearn")


def test_an_mlflow_sklearn_directory_with_its_signature(tmp_path: Path) -> None:
    from mlflow.models import infer_signature

    model = LogisticRegression(max_iter=500).fit(X, Y)
    mlflow_sklearn.save_model(model, tmp_path / "m", signature=infer_signature(X, model.predict(X)))
    runtime = load_runtime("mlflow", tmp_path / "m")
    assert runtime.platform == "mlflow_sklearn"
    assert [t.as_metadata() for t in runtime.inputs] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}
    ]
    np.testing.assert_array_equal(predict(runtime, X), model.predict(X))


def test_mlflow_column_signatures_put_named_inputs_in_the_models_order(tmp_path: Path) -> None:
    import pandas as pd
    from mlflow.models import infer_signature

    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    model = LogisticRegression(max_iter=500).fit(frame.to_numpy(), Y)
    mlflow_sklearn.save_model(model, tmp_path / "m", signature=infer_signature(frame))
    runtime = load_runtime("mlflow", tmp_path / "m" / "MLmodel")
    assert [t.name for t in runtime.inputs] == ["sl", "sw", "pl", "pw"]
    # The columns arrive in another order; the model still sees its own.
    columns = {name: frame[name].to_numpy() for name in ["pw", "sl", "pl", "sw"]}
    answer = runtime.predict(columns, tuple(columns), ("predict",))["predict"]
    np.testing.assert_array_equal(answer, model.predict(X))


def test_mlflow_xgboost_and_lightgbm_flavors(tmp_path: Path) -> None:
    import mlflow.lightgbm
    import mlflow.xgboost

    booster = xgb.XGBClassifier(n_estimators=5).fit(X, Y)
    mlflow.xgboost.save_model(booster, tmp_path / "x")
    runtime = load_runtime("mlflow", tmp_path / "x")
    assert runtime.platform == "mlflow_xgboost"
    np.testing.assert_array_equal(predict(runtime, X), booster.predict(X))

    wrapped = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, Y)
    mlflow.lightgbm.save_model(wrapped, tmp_path / "l")
    # Saved with skops: the types it needs beyond skops' defaults must be trusted by name.
    with pytest.raises(ModelLoadError, match=r"lightgbm\.sklearn\.LGBMClassifier"):
        load_runtime("mlflow", tmp_path / "l")
    trusted = ("lightgbm.sklearn.LGBMClassifier", "lightgbm.basic.Booster",
               "collections.OrderedDict")
    runtime = load_runtime("mlflow", tmp_path / "l", trusted_types=trusted)
    np.testing.assert_array_equal(predict(runtime, X), wrapped.predict(X))


def test_a_pickled_mlflow_model_needs_unsafe_pickle(tmp_path: Path) -> None:
    model = LogisticRegression(max_iter=500).fit(X, Y)
    mlflow_sklearn.save_model(model, tmp_path / "m", serialization_format="cloudpickle")
    with pytest.raises(ModelLoadError, match="unpickling runs arbitrary code"):
        load_runtime("mlflow", tmp_path / "m")
    runtime = load_runtime("mlflow", tmp_path / "m", allow_unsafe_pickle=True)
    np.testing.assert_array_equal(predict(runtime, X), model.predict(X))


def test_mlflow_directories_we_cannot_serve_say_why(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no MLmodel file"):
        load_runtime("mlflow", tmp_path)
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
        "    python_model: python_model.pkl\n"
    )
    with pytest.raises(ModelLoadError, match="MLServer's MLflow runtime"):
        load_runtime("mlflow", tmp_path)
    (tmp_path / "MLmodel").write_text("flavors:\n  sklearn:\n    pickled_model: ../../etc/passwd\n")
    with pytest.raises(ModelLoadError, match="is not a file in the model directory"):
        load_runtime("mlflow", tmp_path)
    (tmp_path / "MLmodel").write_text("flavors: [unclosed\n")
    with pytest.raises(ModelLoadError, match="not valid YAML"):
        load_runtime("mlflow", tmp_path)
