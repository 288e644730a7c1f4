"""Benchmark: 200 ModelDeployments applied at once -> time until all are Ready.

Starts its own dev cluster (etcd, kube-apiserver, KCM, scheduler, kwok) and runs the operator
as a subprocess with the chart's ServiceAccount token, exactly as the e2e tests do. Prints:

- seconds from `kubectl apply` of the 200 objects until every one has Ready=True (and the
  median/95th percentile of per-object time to Ready, sampled once a second);
- the operator's peak RSS (VmHWM of the `kopf run` process);
- write requests per object, counted three ways and summed:
  * the operator's own client (lightkube): `modelops_operator_api_writes_total`, which an httpx
    request hook increments for every POST/PUT/PATCH/DELETE it sends (applies, status patches);
  * kopf's own writes to ModelDeployments (finalizer and last-handled annotation): the delta of
    `apiserver_request_total{verb="PATCH",resource="modeldeployments",subresource=""}`; nobody
    else PATCHes them during the run (kubectl creates them with POST);
  * Events posted by the operator: events in the namespace whose source is kopf.

Results go to bench-results/bench_operator.json. Set MODELOPS_BENCH_OBJECTS to change 200. Run
from the repository root as `python -m benchmarks.bench_operator` (as `make bench` does): the
operator harness it shares with the e2e tests is test code, `tests/harness/`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.operator_process import (
    OperatorProcess,
    apiserver_writes,
    install_crds,
    service_account_kubeconfig,
)

REPO = Path(__file__).resolve().parents[1]
OBJECTS = int(os.environ.get("MODELOPS_BENCH_OBJECTS", "200"))
NAMESPACE = "bench"
TIMEOUT = 900


def manifests(count: int) -> list[dict]:
    docs = []
    for i in range(count):
        docs.append(
            {
                "apiVersion": "modelops.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": f"model-{i:03d}", "namespace": NAMESPACE},
                "spec": {
                    "model": {
                        "name": f"model-{i:03d}",
                        "version": "1.0.0",
                        "uri": f"https://models.example.com/m{i}/model.onnx",
                        "format": "onnx",
                        "digest": "sha256:" + f"{i:064x}",
                    },
                    "runtime": {"replicas": 1},
                },
            }
        )
    return docs


def ready_names(cluster) -> set[str]:
    items = json.loads(cluster.kubectl("get", "mdep", "-n", NAMESPACE, "-o", "json").stdout)
    return {
        item["metadata"]["name"]
        for item in items["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in item.get("status", {}).get("conditions", [])
        )
    }


def available_deployments(cluster) -> int:
    """Child Deployments whose pods are all available (what the cluster, not we, controls)."""
    items = json.loads(cluster.kubectl("get", "deploy", "-n", NAMESPACE, "-o", "json").stdout)
    return sum(
        1
        for d in items["items"]
        if d.get("status", {}).get("availableReplicas", 0) >= d["spec"]["replicas"]
    )


def kopf_events(cluster) -> int:
    items = json.loads(cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json").stdout)
    return sum(
        int(e.get("count") or 1)
        for e in items["items"]
        if (e.get("source") or {}).get("component") == "kopf"
        or e.get("reportingComponent") == "kopf"
    )


def run(cluster, workdir: Path) -> dict[str, object]:
    install_crds(cluster.kubectl)
    kubeconfig = workdir / "operator.kubeconfig"
    service_account_kubeconfig(
        cluster.kubectl, cluster.bin_dir / "helm", cluster.api_url, cluster.ca_file, kubeconfig
    )
    cluster.kubectl("create", "namespace", NAMESPACE)
    operator = OperatorProcess.start(kubeconfig, REPO / "bench-results" / "bench_operator.log")
    try:
        server_before = apiserver_writes(
            cluster.kubectl("get", "--raw", "/metrics").stdout, {"modeldeployments"}
        )
        # "At once": one POST per object from one client, without kubectl's client-side
        # throttling (which alone spreads 200 applies over more than a minute).
        path = f"/apis/modelops.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"
        started = time.monotonic()
        with cluster.api() as api:
            for body in manifests(OBJECTS):
                api.post(path, json=body).raise_for_status()
        applied = time.monotonic() - started
        first_ready: dict[str, float] = {}
        children_available: float | None = None
        while len(first_ready) < OBJECTS and time.monotonic() - started < TIMEOUT:
            now = time.monotonic() - started
            for name in ready_names(cluster) - first_ready.keys():
                first_ready[name] = now
            if children_available is None and available_deployments(cluster) == OBJECTS:
                children_available = now
            time.sleep(1)
        all_ready = max(first_ready.values()) if len(first_ready) == OBJECTS else None
        time.sleep(5)  # let trailing status writes and events land before counting
        operator_writes = operator.writes()
        server_after = apiserver_writes(
            cluster.kubectl("get", "--raw", "/metrics").stdout, {"modeldeployments"}
        )
        kopf_patches = server_after.get("PATCH modeldeployments", 0) - server_before.get(
            "PATCH modeldeployments", 0
        )
        events = kopf_events(cluster)
        own = sum(operator_writes.values())
        per_object = (own + kopf_patches + events) / OBJECTS
        times = sorted(first_ready.values())
        return {
            "objects": OBJECTS,
            "apply_seconds": round(applied, 2),
            "all_ready_seconds": None if all_ready is None else round(all_ready, 1),
            "all_deployments_available_seconds": None
            if children_available is None
            else round(children_available, 1),
            "ready_count": len(first_ready),
            "time_to_ready_p50_seconds": round(statistics.median(times), 1) if times else None,
            "time_to_ready_p95_seconds": round(times[int(0.95 * (len(times) - 1))], 1)
            if times
            else None,
            "operator_peak_rss_mib": round(operator.peak_rss_kib() / 1024, 1),
            "writes_per_object": round(per_object, 2),
            "writes_operator_client": operator_writes,
            "writes_kopf_patches_on_modeldeployments": kopf_patches,
            "writes_events_by_operator": events,
        }
    finally:
        operator.stop()


def main() -> int:
    from modelops_devcluster.cluster import DevCluster, cache_root

    if not (cache_root() / "bin" / "kube-apiserver").exists():
        print("skipped: no dev-cluster binaries (run `make cluster-build` first)")
        return 0
    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        workdir = Path(tmp)
        cluster = DevCluster.start(workdir / "cluster", progress=lambda m: print(f"[cluster] {m}"))
        try:
            results = run(cluster, workdir)
        finally:
            cluster.stop(progress=lambda m: None)
    (out_dir / "bench_operator.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{OBJECTS} ModelDeployments applied at once:")
    print(f"  all Ready after          {results['all_ready_seconds']} s "
          f"(p50 {results['time_to_ready_p50_seconds']} s, "
          f"p95 {results['time_to_ready_p95_seconds']} s)")  # fmt: skip
    print(
        f"  child Deployments all available after {results['all_deployments_available_seconds']} s"
    )
    print(f"  objects created in       {results['apply_seconds']} s (one POST each)")
    print(f"  operator peak RSS        {results['operator_peak_rss_mib']} MiB")
    print(f"  write requests / object  {results['writes_per_object']}")
    print(f"    operator client        {results['writes_operator_client']}")
    print(f"    kopf PATCH mdep        {results['writes_kopf_patches_on_modeldeployments']}")
    print(f"    events by operator     {results['writes_events_by_operator']}")
    print(f"results: {out_dir / 'bench_operator.json'}")
    return 0 if results["ready_count"] == OBJECTS else 1


if __name__ == "__main__":
    sys.exit(main())
