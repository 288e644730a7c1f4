"""Benchmark: N ModelDeployments created at once, against the floor of writing their children.

On one dev cluster (kwok fake nodes: one per 100 objects, plus one) it runs, in order:

1. the floor: for each object, the Deployment and Service (and the keys Secret when its pods
   mount one) the operator's own builders make, written by a plain client to namespace
   `floor`, timed until every Deployment is Available; then that namespace is deleted;
2. the operator (`kopf run` with the chart's ServiceAccount, tests/harness/): the N
   ModelDeployments created in namespace `bench`, timed until every one is Ready;
3. a no-op resync: the writes while every object goes through its resync timer (0 is right).

Both phases write with the same concurrency and are sampled once a second with one LIST.
Writes are counted by 'VERB resource': the operator's client counter, kopf's PATCHes of
ModelDeployments (API server metrics) and kopf's Events. Results go to
bench-results/bench_operator.json. Environment: MODELOPS_BENCH_OBJECTS (200),
MODELOPS_BENCH_CONCURRENCY (16), MODELOPS_BENCH_RESYNC_SECONDS (30). Run from the repository
root as `python -m benchmarks.bench_operator` (as `make bench` does).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelops_devcluster.cluster import DevCluster, _fake_node, cache_root, wait_for_service_account
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.keys import build_keys_secret
from modelops_operator.constants import DEFAULT_SERVING_IMAGE, LABEL_DEPLOYMENT
from modelops_operator.reconcile import needs_keys, plan_children, receipt_key_policy
from tests.harness.operator_process import (
    OperatorProcess,
    apiserver_writes,
    install_crds,
    service_account_kubeconfig,
)

REPO = Path(__file__).resolve().parents[1]
OBJECTS = int(os.environ.get("MODELOPS_BENCH_OBJECTS", "200"))
CONCURRENCY = int(os.environ.get("MODELOPS_BENCH_CONCURRENCY", "16"))
RESYNC_SECONDS = float(os.environ.get("MODELOPS_BENCH_RESYNC_SECONDS", "30"))
PHASE_TIMEOUT = 900.0
NAMESPACE = "bench"
FLOOR_NAMESPACE = "floor"
# A fake node takes 250 pods; 100 single-replica objects each leaves room for rollout surges.
OBJECTS_PER_NODE = 100
PROGRESS_EVERY = 5.0
ATTEMPTS = 3
MDEP_PATH = "/apis/modelops.io/v1alpha1/namespaces/{}/modeldeployments"
FLOOR_FIELD_MANAGER = "modelops-bench-floor"


class BenchError(RuntimeError):
    """The bench itself could not go on; printed as one line."""


# ----------------------------------------------------------------------------- pure helpers
def nodes_for(objects: int) -> int:
    return math.ceil(objects / OBJECTS_PER_NODE) + 1


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


def counter_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def operator_writes(
    own: Mapping[str, float], apiserver_mdep_patches: float, kopf_events: float
) -> dict[str, float]:
    """Every write the operator caused, by 'VERB resource', largest first, zeros left out.

    kopf's PATCHes of ModelDeployments (finalizer, annotations) are the API server's count
    less any its own client sent, which that client counted already.
    """
    counts = dict(own)
    counts["PATCH modeldeployments (kopf)"] = apiserver_mdep_patches - own.get(
        "PATCH modeldeployments", 0.0
    )
    counts["POST events (kopf)"] = kopf_events
    return dict(sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0])))


def per_object(counts: Mapping[str, float], objects: int) -> dict[str, float]:
    return {k: round(v / objects, 2) for k, v in counts.items()}


def ratio(operator_seconds: float | None, floor_seconds: float | None) -> float | None:
    if not operator_seconds or not floor_seconds:
        return None
    return round(operator_seconds / floor_seconds, 2)


def ratio_line(operator_seconds: float | None, floor_seconds: float | None) -> str:
    value = ratio(operator_seconds, floor_seconds)
    if value is None:
        return "operator / floor: n/a (a phase did not finish)"
    return (f"operator / floor: {value:.2f}x (all Ready after {operator_seconds:.1f} s, "
            f"floor all Available after {floor_seconds:.1f} s)")  # fmt: skip


def resync_runs(log_text: str, namespace: str) -> list[str]:
    """Names of the objects in the operator's "[ns/name] reconciled ..." log lines: once all
    are Ready, every reconcile is a resync."""
    return re.findall(rf"\[{re.escape(namespace)}/([^\]]+)\] reconciled", log_text)


def object_path(manifest: Mapping[str, Any]) -> str:
    """REST path of a namespaced object; its plural is its kind lower-cased plus "s" (true of
    every kind the operator makes for a ModelDeployment)."""
    group_version = manifest["apiVersion"]
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    meta = manifest["metadata"]
    return f"{prefix}/namespaces/{meta['namespace']}/{manifest['kind'].lower()}s/{meta['name']}"


def condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


# ----------------------------------------------------------------------------- the objects
def modeldeployment(i: int) -> dict[str, Any]:
    name = f"model-{i:03d}"
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": name,
                "version": "1.0.0",
                "uri": f"https://models.example.com/m{i}/model.onnx",
                "format": "onnx",
                "digest": "sha256:" + f"{i:064x}",
            },
            "runtime": {"replicas": 1},
        },
    }


def floor_manifests(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the operator writes for one ModelDeployment, from its own builders, in namespace
    `floor`: the keys Secret when its pods mount one, and the children. Without owner
    references: the owner does not exist here, and the garbage collector would delete them."""
    name = body["metadata"]["name"]
    spec = ModelDeploymentSpec.model_validate(body["spec"])
    serving_image = os.environ.get("MODELOPS_SERVING_IMAGE", DEFAULT_SERVING_IMAGE)
    children = plan_children(name, FLOOR_NAMESPACE, "no-owner", spec, serving_image)
    for child in children:
        child["metadata"].pop("ownerReferences", None)
    if not needs_keys(spec, None):
        return children
    secret = build_keys_secret(name, FLOOR_NAMESPACE, time.time(), receipt_key_policy(spec))
    return [secret, *children]


class Writer:
    """Sends writes with a few retries and counts them by 'VERB resource', as the operator's
    client counts its own, so both phases' writes read alike."""

    def __init__(self, api: httpx.Client) -> None:
        self.api = api
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def create(self, manifest: Mapping[str, Any]) -> None:
        """POST; an object that already exists (a retried POST that landed) is fine."""
        collection = object_path(manifest).rsplit("/", 1)[0]
        self._send("POST", collection, json.dumps(manifest), {"Content-Type": "application/json"})

    def apply(self, manifest: Mapping[str, Any]) -> None:
        """Server-side apply with force, as the operator applies its children."""
        self._send("PATCH", object_path(manifest), json.dumps(manifest),
                   {"Content-Type": "application/apply-patch+yaml"},
                   {"fieldManager": FLOOR_FIELD_MANAGER, "force": "true"})  # fmt: skip

    def _send(
        self, method: str, path: str, content: str, headers: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        resource = path.split("/namespaces/", 1)[1].split("/")[1]
        failure = ""
        for attempt in range(ATTEMPTS):
            with self._lock:
                self.counts[f"{method} {resource}"] += 1
            try:
                response = self.api.request(
                    method, path, content=content, headers=headers, params=params
                )
            except httpx.TransportError as error:
                failure = repr(error)
            else:
                if response.is_success or (method == "POST" and response.status_code == 409):
                    return
                failure = f"{response.status_code} {response.text[:200]}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # a refusal, not a busy server: retrying gives the same answer
            time.sleep(1 + attempt)
        raise BenchError(f"{method} {path}: {failure}")


# ----------------------------------------------------------------------------- a burst
@dataclass
class Burst:
    """N objects written by CONCURRENCY workers while the main thread samples which are done.
    Times are seconds from the burst's start."""

    label: str
    done_word: str
    total: int
    started: float = field(default_factory=time.monotonic)
    accepted: dict[str, float] = field(default_factory=dict)  # its last write answered
    done: dict[str, float] = field(default_factory=dict)  # first sample that saw it done
    failures: dict[str, str] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def finished(self) -> bool:
        answered = len(self.accepted) + len(self.failures) == self.total
        return answered and len(self.done) + len(self.failures) >= self.total

    def progress(self) -> str:
        line = (f"[{self.label}] {self.elapsed():4.0f} s  created {len(self.accepted)}/"
                f"{self.total}  {self.done_word} {len(self.done)}/{self.total}")  # fmt: skip
        return line + (f"  failed {len(self.failures)}" if self.failures else "")

    def summary(self) -> dict[str, Any]:
        latencies = [max(t - self.accepted[n], 0.0) for n, t in self.done.items()
                     if n in self.accepted]  # fmt: skip
        complete = len(self.done) == self.total
        return {
            "apply_seconds": round(max(self.accepted.values(), default=0.0), 2),
            "all_done_seconds": round(max(self.done.values()), 1) if complete else None,
            "done_count": len(self.done),
            "per_object_p50_seconds": _rounded(percentile(latencies, 50)),
            "per_object_p95_seconds": _rounded(percentile(latencies, 95)),
            "failures": dict(list(self.failures.items())[:3]),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run_burst(
    burst: Burst, names: Iterable[str], write_one: Callable[[str], None],
    sample_done: Callable[[], set[str]],
) -> Burst:  # fmt: skip
    def write(name: str) -> None:
        try:
            write_one(name)
        except BenchError as error:
            burst.failures[name] = str(error)
        else:
            burst.accepted[name] = burst.elapsed()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for name in names:
            pool.submit(write, name)
        next_progress = PROGRESS_EVERY
        while not burst.finished() and burst.elapsed() < PHASE_TIMEOUT:
            sampled_at = burst.elapsed()
            try:
                for name in sample_done() - burst.done.keys():
                    burst.done[name] = sampled_at
            except (httpx.HTTPError, ValueError):
                pass  # a busy API server: the next sample catches up
            if burst.elapsed() >= next_progress:
                print(burst.progress(), flush=True)
                next_progress += PROGRESS_EVERY
            time.sleep(max(0.0, 1.0 - (burst.elapsed() - sampled_at)))
        pool.shutdown(cancel_futures=True)  # after a timeout, unsent writes are dropped
    print(burst.progress(), flush=True)
    return burst


# ----------------------------------------------------------------------------- the cluster
def items(api: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    response = api.get(path, params=params, timeout=60)
    response.raise_for_status()
    return list(response.json()["items"])


def ready_modeldeployments(api: httpx.Client) -> set[str]:
    return {m["metadata"]["name"] for m in items(api, MDEP_PATH.format(NAMESPACE))
            if condition_true(m, "Ready")}  # fmt: skip


def available_floor_objects(api: httpx.Client) -> set[str]:
    """Objects (by the label naming them) whose Deployment has all its pods available."""
    deployments = items(api, f"/apis/apps/v1/namespaces/{FLOOR_NAMESPACE}/deployments")
    return {
        d["metadata"]["labels"][LABEL_DEPLOYMENT]
        for d in deployments
        if (d.get("status") or {}).get("availableReplicas", 0) >= d["spec"]["replicas"]
    }


def add_fake_nodes(api: httpx.Client, count: int, timeout: float = 120) -> None:
    """Grow to `count` kwok nodes (the cluster made kwok-node-0) and wait until all are Ready."""
    for i in range(1, count):
        response = api.post("/api/v1/nodes", json=_fake_node(f"kwok-node-{i}"))
        if response.status_code not in (201, 409):
            raise BenchError(f"creating node kwok-node-{i}: {response.text[:200]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = items(api, "/api/v1/nodes", labelSelector="type=kwok")
        if sum(condition_true(n, "Ready") for n in nodes) >= count:
            print(f"[bench] {count} kwok nodes Ready", flush=True)
            return
        time.sleep(0.5)
    raise BenchError(f"{count} kwok nodes not Ready after {timeout:.0f} s")


def create_namespace(cluster: DevCluster, api: httpx.Client, namespace: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    api.post("/api/v1/namespaces", json=body).raise_for_status()
    wait_for_service_account(cluster, namespace)


def delete_namespace(api: httpx.Client, namespace: str, timeout: float = 600) -> float | None:
    """Delete it and wait until it is gone: its objects carry the operator's labels, so the
    operator would watch and index them. Returns the seconds it took, None after `timeout`."""
    started = time.monotonic()
    api.delete(f"/api/v1/namespaces/{namespace}").raise_for_status()
    next_progress = started + PROGRESS_EVERY
    while api.get(f"/api/v1/namespaces/{namespace}").status_code != 404:
        if time.monotonic() > started + timeout:
            print(f"[{namespace}] namespace still there after {timeout:.0f} s; going on")
            return None
        if time.monotonic() >= next_progress:
            pods = len(items(api, f"/api/v1/namespaces/{namespace}/pods"))
            print(f"[{namespace}] deleting the namespace: {pods} pods left", flush=True)
            next_progress += PROGRESS_EVERY
        time.sleep(1)
    seconds = time.monotonic() - started
    print(f"[{namespace}] namespace deleted in {seconds:.0f} s", flush=True)
    return seconds


def kopf_events(api: httpx.Client) -> int:
    events = items(api, f"/api/v1/namespaces/{NAMESPACE}/events")
    return sum(
        int(e.get("count") or 1)
        for e in events
        if (e.get("source") or {}).get("component") == "kopf"
        or e.get("reportingComponent") == "kopf"
    )


@dataclass(frozen=True)
class WriteCounters:
    """The three write counters at one moment."""

    own: dict[str, float]
    apiserver_mdep_patches: float
    events: float

    @classmethod
    def read(cls, operator: OperatorProcess, api: httpx.Client) -> WriteCounters:
        metrics = api.get("/metrics", timeout=60).text
        patches = apiserver_writes(metrics, {"modeldeployments"}).get("PATCH modeldeployments", 0)
        return cls(operator.writes(), patches, kopf_events(api))

    def since(self, before: WriteCounters) -> dict[str, float]:
        return operator_writes(
            counter_delta(before.own, self.own),
            self.apiserver_mdep_patches - before.apiserver_mdep_patches,
            self.events - before.events,
        )


def wait_for_quiet_writes(operator: OperatorProcess, api: httpx.Client, limit: float = 60) -> None:
    """Let trailing status writes land: until the operator's and kopf's counts hold for 5 s.
    Events are left out, as a resync may post some every period."""

    def counts() -> tuple[float, float]:
        now = WriteCounters.read(operator, api)
        return sum(now.own.values()), now.apiserver_mdep_patches

    deadline, previous = time.monotonic() + limit, counts()
    while time.monotonic() < deadline:
        time.sleep(5)
        if (current := counts()) == previous:
            return
        previous = current


# ----------------------------------------------------------------------------- phases
def floor_phase(cluster: DevCluster, bodies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    manifests = {name: floor_manifests(body) for name, body in bodies.items()}
    with cluster.api() as api:
        create_namespace(cluster, api, FLOOR_NAMESPACE)
        writer = Writer(api)

        def write_one(name: str) -> None:
            # As the operator does: the keys Secret created once, the children applied.
            for manifest in manifests[name]:
                (writer.create if manifest["kind"] == "Secret" else writer.apply)(manifest)

        burst = Burst("floor", "Available", len(bodies))
        run_burst(burst, manifests, write_one, lambda: available_floor_objects(api))
        deleted = delete_namespace(api, FLOOR_NAMESPACE)
    return {
        **burst.summary(),
        "writes_per_object": per_object(writer.counts, len(bodies)),
        "namespace_deleted_seconds": _rounded(deleted),
    }


def operator_phase(
    cluster: DevCluster, workdir: Path, bodies: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    kubeconfig = workdir / "operator.kubeconfig"
    service_account_kubeconfig(
        cluster.kubectl, cluster.bin_dir / "helm", cluster.api_url, cluster.ca_file, kubeconfig
    )
    log = REPO / "bench-results" / "bench_operator.log"
    with cluster.api() as api:
        create_namespace(cluster, api, NAMESPACE)
        operator = OperatorProcess.start(kubeconfig, log, resync_seconds=RESYNC_SECONDS)
        try:
            before, cpu_before = WriteCounters.read(operator, api), operator.cpu_seconds()
            writer = Writer(api)
            burst = Burst("operator", "Ready", len(bodies))
            run_burst(burst, bodies, lambda name: writer.create(bodies[name]),
                      lambda: ready_modeldeployments(api))  # fmt: skip
            wait_for_quiet_writes(operator, api)
            writes = WriteCounters.read(operator, api).since(before)
            cpu = operator.cpu_seconds() - cpu_before
            noop = noop_resync(operator, api, len(bodies))
            rss_mib = operator.peak_rss_kib() / 1024
        finally:
            operator.stop()
    return {
        **burst.summary(),
        "writes_per_object": per_object(writes, len(bodies)),
        "writes_per_object_total": round(sum(writes.values()) / len(bodies), 2),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mib": round(rss_mib, 1),
        "noop_resync": noop,
    }


def noop_resync(operator: OperatorProcess, api: httpx.Client, objects: int) -> dict[str, Any]:
    """Writes while every object's resync timer runs at least once, after all are Ready."""
    before, cpu_before = WriteCounters.read(operator, api), operator.cpu_seconds()
    log_offset = operator.log_path.stat().st_size
    started = time.monotonic()
    deadline = started + 3 * RESYNC_SECONDS + 60
    runs: list[str] = []
    while time.monotonic() < deadline:
        time.sleep(PROGRESS_EVERY)
        with operator.log_path.open("rb") as log:
            log.seek(log_offset)
            runs = resync_runs(log.read().decode(errors="replace"), NAMESPACE)
        print(f"[no-op resync] {time.monotonic() - started:4.0f} s  resynced "
              f"{len(set(runs))}/{objects}", flush=True)  # fmt: skip
        if time.monotonic() - started >= RESYNC_SECONDS and len(set(runs)) >= objects:
            break
    time.sleep(2)  # the last runs' Events are posted just after their log lines
    writes = WriteCounters.read(operator, api).since(before)
    return {
        "window_seconds": round(time.monotonic() - started, 1),
        "objects_resynced": len(set(runs)),
        "resync_runs": len(runs),
        "writes_total": sum(writes.values()),
        "writes": writes,
        "cpu_seconds": round(operator.cpu_seconds() - cpu_before, 1),
    }


def run(cluster: DevCluster, workdir: Path) -> dict[str, Any]:
    nodes = nodes_for(OBJECTS)
    with cluster.api() as api:
        add_fake_nodes(api, nodes)
    install_crds(cluster.kubectl)
    bodies = {b["metadata"]["name"]: b for b in map(modeldeployment, range(OBJECTS))}
    floor = floor_phase(cluster, bodies)
    operator = operator_phase(cluster, workdir, bodies)
    return {
        "objects": OBJECTS,
        "kwok_nodes": nodes,
        "concurrency": CONCURRENCY,
        "resync_seconds": RESYNC_SECONDS,
        "ratio_operator_to_floor": ratio(operator["all_done_seconds"], floor["all_done_seconds"]),
        "floor": floor,
        "operator": operator,
    }


# ----------------------------------------------------------------------------- report
def _writes_text(writes: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in writes.items()) or "none"


def _phase_line(label: str, phase: Mapping[str, Any], done_word: str, total: int) -> str:
    done = phase["all_done_seconds"]
    done_text = f"{done} s" if done is not None else f"n/a ({phase['done_count']}/{total})"
    return (f"{label:9} created in {phase['apply_seconds']} s; all {done_word} after {done_text}; "
            f"per object p50 {phase['per_object_p50_seconds']} s, "
            f"p95 {phase['per_object_p95_seconds']} s")  # fmt: skip


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    floor, operator = results["floor"], results["operator"]
    noop, total = operator["noop_resync"], results["objects"]
    floor_total = sum(floor["writes_per_object"].values())
    lines = [
        ratio_line(operator["all_done_seconds"], floor["all_done_seconds"]),
        f"{total} objects, {results['kwok_nodes']} kwok nodes, {results['concurrency']} writes "
        f"in flight, resync every {results['resync_seconds']:g} s",
        _phase_line("floor", floor, "Available", total),
        f"          writes/object {floor_total:g}: {_writes_text(floor['writes_per_object'])}",
        _phase_line("operator", operator, "Ready", total),
        f"          writes/object {operator['writes_per_object_total']:g}: "
        f"{_writes_text(operator['writes_per_object'])}",
        f"          peak RSS {operator['peak_rss_mib']} MiB; CPU {operator['cpu_seconds']} s "
        f"from the first POST until writes settled",
        f"no-op resync of all {total}: {noop['writes_total']:g} writes in "
        f"{noop['window_seconds']} s ({noop['objects_resynced']}/{total} objects resynced, "
        f"{noop['resync_runs']} runs): {_writes_text(noop['writes'])}; CPU {noop['cpu_seconds']} s",
    ]
    lines += [f"failed: {name}: {why}" for phase in (floor, operator)
              for name, why in phase["failures"].items()]  # fmt: skip
    return lines


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    """A terminated bench stops what it started (the `finally`s): its cluster and operator."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
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
        except BenchError as error:
            print(f"bench failed: {error}")
            return 2
        finally:
            cluster.stop(progress=lambda m: None)
    (out_dir / "bench_operator.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(summary_lines(results)))
    print(f"results: {out_dir / 'bench_operator.json'}")
    everything_done = all(results[p]["done_count"] == OBJECTS for p in ("floor", "operator"))
    return 0 if everything_done else 1


if __name__ == "__main__":
    sys.exit(main())
