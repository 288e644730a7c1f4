"""``modelops profile``: a real scikit-learn model and a CSV table in, the profile and its digest
out; bad tables refused with the column named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelops_operator.cli import main
from modelops_operator.monitoring.profile import (
    MAX_FEATURES,
    ProfileError,
    build_profile,
    digest,
)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_profile_of_a_classifier_from_a_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    sio.dump(model, tmp_path / "model.skops")
    header = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    table = _write_csv(
        tmp_path / "holdout.csv",
        header,
        [[*row, int(label)] for row, label in zip(x, y, strict=True)],
    )
    out = tmp_path / "profile.json"

    code = main(
        [
            "profile",
            str(table),
            "--model",
            str(tmp_path / "model.skops"),
            "--label",
            "species",
            "-o",
            str(out),
        ]
    )

    assert code == 0
    profile = json.loads(out.read_text())
    assert f"digest: {digest(out.read_bytes())}" in capsys.readouterr().out
    assert profile["rows"] == 150
    assert [f["name"] for f in profile["features"]] == header[:4]
    petal = profile["features"][2]
    assert petal["min"] == pytest.approx(x[:, 2].min()) and petal["max"] == pytest.approx(
        x[:, 2].max()
    )
    assert sum(petal["frequencies"]) == pytest.approx(1.0)
    # The sidecar's bin rule: x goes to the first edge >= x; the profile's shares follow it.
    index = np.searchsorted(petal["edges"], x[:, 2], side="left")
    assert np.bincount(index, minlength=len(petal["frequencies"])) / 150 == pytest.approx(
        petal["frequencies"]
    )
    assert profile["holdout"] == {
        "metric": "accuracy",
        "value": pytest.approx(model.score(x, y)),
        "rows": 150,
    }
    assert profile["prediction"]["classes"] == [0.0, 1.0, 2.0]
    assert len(profile["confidence"]["quantiles"]) == 11


def test_categorical_columns_keep_the_frequent_categories_and_an_other_bin() -> None:
    colours = ["red"] * 50 + ["blue"] * 30 + ["green"] * 15 + ["pink"] * 5
    profile = build_profile({"colour": colours, "size": [str(i) for i in range(100)]}, bins=3)
    colour = profile["features"][0]
    assert colour["categories"] == ["red", "blue"]
    assert colour["frequencies"] == pytest.approx([0.5, 0.3, 0.2])
    assert profile["features"][1]["type"] == "numeric"


def test_bad_tables_are_refused_naming_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ProfileError, match="not in the table: speed"):
        build_profile({"a": ["1", "2"]}, features=["speed"])
    with pytest.raises(ProfileError, match="at most 50"):
        build_profile({f"f{i}": ["1", "2"] for i in range(MAX_FEATURES + 1)})
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    assert main(["profile", str(ragged), "-o", str(tmp_path / "p.json")]) == 2
    assert "line 3 has 1 values" in capsys.readouterr().err
