"""The demo's retraining pipeline step, run as a Kubernetes Job in the serving image.

The operator creates the Job when a monitor fires (spec.monitoring.retraining.template); the
demo mounts this file from a ConfigMap. It fetches the fresh labelled rows (``FRESH_DATA_URL``,
CSV with a ``label`` column), trains on four fifths of them, measures the rest, and uploads the
model and the held-out fifth (``UPLOAD_URL``) for the release step that profiles it and commits
the new ``spec.model``. Only the standard library, numpy, scikit-learn and skops: what the
serving image has.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request

import numpy as np

FETCH_ATTEMPTS = 30
REQUEST_TIMEOUT_SECONDS = 20


def fetch(url: str) -> bytes:
    """GET ``url``, retried for a while: the data may be written a moment after the Job starts."""
    for attempt in range(FETCH_ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_SECONDS) as answer:
                return answer.read()
        except (urllib.error.URLError, OSError) as error:
            if attempt == FETCH_ATTEMPTS - 1:
                raise
            print(f"fetching {url}: {error}; retrying", flush=True)
            time.sleep(2)
    raise AssertionError("unreachable")


def upload(url: str, data: bytes) -> None:
    request = urllib.request.Request(url, data=data, method="PUT")
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as answer:
        answer.read()


def read_table(data: bytes) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Feature names, the feature matrix and the labels of a CSV with a ``label`` column."""
    rows = list(csv.reader(io.StringIO(data.decode())))
    header, body = rows[0], [r for r in rows[1:] if r]
    label = header.index("label")
    names = [name for i, name in enumerate(header) if i != label]
    features = np.array([[float(v) for i, v in enumerate(r) if i != label] for r in body])
    labels = np.array([int(r[label]) for r in body], dtype=np.int64)
    return names, features, labels


def train(features: np.ndarray, labels: np.ndarray) -> tuple[object, float, int]:
    """A logistic regression on the first four fifths; its accuracy on the last fifth and
    where the held-out part begins."""
    from sklearn.linear_model import LogisticRegression

    split = len(labels) * 4 // 5
    model = LogisticRegression(max_iter=500).fit(features[:split], labels[:split])
    accuracy = float(np.mean(model.predict(features[split:]) == labels[split:]))
    return model, accuracy, split


def holdout_csv(names: list[str], features: np.ndarray, labels: np.ndarray) -> bytes:
    lines = [",".join([*names, "label"])]
    lines += [",".join([*(repr(float(v)) for v in row), str(int(y))])
              for row, y in zip(features, labels, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def main() -> int:
    import skops.io as sio

    source, target = os.environ["FRESH_DATA_URL"], os.environ["UPLOAD_URL"].rstrip("/")
    trigger = os.environ.get("MODELOPS_TRIGGER", "")
    print(f"retraining ({trigger or 'no trigger given'}) on {source}", flush=True)
    names, features, labels = read_table(fetch(source))
    model, accuracy, split = train(features, labels)
    print(f"trained on {split} fresh rows; accuracy on the {len(labels) - split} held out: "
          f"{accuracy:.3f}", flush=True)
    upload(f"{target}/holdout.csv", holdout_csv(names, features[split:], labels[split:]))
    upload(f"{target}/result.json", json.dumps(
        {"accuracy": accuracy, "trainRows": split, "holdoutRows": len(labels) - split,
         "trigger": trigger}).encode())
    # Last: the model's arrival tells the release step that everything is there.
    upload(f"{target}/model.skops", sio.dumps(model))
    print(f"uploaded the model and its holdout to {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
