"""Benchmark: the dev cluster's real node — start-up, image import, pod start, teardown.

Starts its own cluster with a real node (the images of `make images`), then measures:

- cluster start to node Ready, split into control plane, containerd, image import, kubelet;
- pod scheduled -> Ready, from the pods' own condition timestamps, for
  * the floor: a pod whose one container is the pause program (sandbox + one container),
  * a model pod: the fetch init container, the model server loading iris and the sidecar
    (what the operator's builders make for the example), two replicas;
  and the ratio model / floor;
- teardown time and what was left (must be nothing).

Prints one line a figure and writes bench-results/bench_realnode.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from modelops_devcluster.cluster import DevCluster, wait_for_service_account
from modelops_devcluster.nodeconfig import PAUSE_IMAGE
from modelops_devcluster.realnode import image_archives, image_reference
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.workload import build_model_deployment

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 3
NAMESPACE = "bench"


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def scheduled_to_ready(pod: dict[str, Any]) -> float:
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    return stamp(conditions["Ready"]["lastTransitionTime"]) - stamp(
        conditions["PodScheduled"]["lastTransitionTime"])


def wait_ready(cluster: DevCluster, selector: str, count: int, timeout: float = 300) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector,
                                          "-o", "json").stdout)["items"]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions") or [])]
        if len(ready) >= count:
            return ready
        time.sleep(0.5)
    raise TimeoutError(f"{count} pods {selector} not Ready in {timeout:.0f} s")


def floor_pod(name: str, image: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"bench": "floor"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "pause", "image": image,
                                     "imagePullPolicy": "Never"}]}}


def model_deployment(round_: int) -> dict[str, Any]:
    """The example's model (it ships in the serving image), two replicas."""
    example = yaml.safe_load((REPO / "examples" / "modeldeployment-sklearn.yaml").read_text())
    spec = ModelDeploymentSpec.model_validate(example["spec"])
    deployment = build_model_deployment(f"iris{round_}", NAMESPACE, spec)
    deployment["spec"]["template"]["metadata"]["labels"]["bench"] = f"model{round_}"
    return deployment


def main() -> int:
    figures: dict[str, Any] = {}
    progress: list[tuple[float, str]] = []
    began = time.monotonic()

    def note(message: str) -> None:
        progress.append((time.monotonic() - began, message))
        print(f"[bench_realnode] {time.monotonic() - began:6.1f} s  {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-realnode-") as tmp:
        cluster = DevCluster.start(Path(tmp) / "cluster", fake_node=False, gateway_api=False,
                                   real_node_images=image_archives(), progress=note)
        try:
            figures["cluster_start_to_coredns_ready_s"] = round(time.monotonic() - began, 1)
            for at, message in progress:
                if "Ready (" in message and "node" in message:
                    figures["cluster_start_to_node_ready_s"] = round(at, 1)
                if message.startswith("imported"):
                    figures.setdefault("image_import_s", 0.0)
                    figures["image_import_s"] += float(message.split("(")[1].split(" s")[0])
            cluster.kubectl("create", "namespace", NAMESPACE)
            wait_for_service_account(cluster, NAMESPACE)
            pause = image_reference(PAUSE_IMAGE)
            floors, models = [], []
            for round_ in range(ROUNDS):
                cluster.kubectl("apply", "-f", "-",
                                input=json.dumps(floor_pod(f"floor{round_}", pause)))
                floors += [scheduled_to_ready(p)
                           for p in wait_ready(cluster, "bench=floor", round_ + 1)[-1:]]
                cluster.kubectl("apply", "-f", "-", input=json.dumps(model_deployment(round_)))
                models += [scheduled_to_ready(p)
                           for p in wait_ready(cluster, f"bench=model{round_}", 2)]
                note(f"round {round_ + 1}: floor {floors[-1]:.1f} s, model pods "
                     f"{models[-2]:.1f} / {models[-1]:.1f} s")
            figures["floor_pod_scheduled_to_ready_s"] = statistics.median(floors)
            figures["model_pod_scheduled_to_ready_s"] = statistics.median(models)
            figures["model_over_floor"] = round(
                figures["model_pod_scheduled_to_ready_s"]
                / max(figures["floor_pod_scheduled_to_ready_s"], 0.5), 1)
        finally:
            node = cluster.node
            stopping = time.monotonic()
            cluster.stop(progress=lambda _: None)
            figures["teardown_s"] = round(time.monotonic() - stopping, 1)
            figures["left_after_teardown"] = node.leftovers() if node else []
    for archive in image_archives():
        figures[f"archive_mb:{archive.name}"] = round(archive.stat().st_size / 1e6)
    for key, value in figures.items():
        print(f">> {key}: {value}")
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench_realnode.json").write_text(json.dumps(figures, indent=2))
    return 0 if not figures["left_after_teardown"] else 1


if __name__ == "__main__":
    sys.exit(main())
