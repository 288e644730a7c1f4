"""The serving benchmark's figures: steal, hop cost over a quiet host, paired rounds, verdicts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.bench_serving import (
    FLOOR,
    MIN_QUIET_SLICES,
    Result,
    Slice,
    added_by_alternation,
    paired,
    pin_group,
    steal_percent,
    targets_met,
    versus_ours,
    versus_table,
)


def test_steal_is_the_share_of_ticks_the_hypervisor_took() -> None:
    before = [100, 0, 50, 800, 0, 0, 0, 50, 0, 0]
    after = [160, 0, 70, 880, 0, 0, 0, 90, 0, 0]  # 200 ticks, 40 of them stolen
    assert steal_percent(before, after) == pytest.approx(20.0)


def slices(steal: float, count: int, direct: float, sidecar: float) -> list[Slice]:
    return [Slice(steal, {"direct": [direct] * 5, "sidecar": [sidecar] * 5})
            for _ in range(count)]


def test_a_hop_is_judged_over_the_quiet_slices_and_also_over_the_whole_run() -> None:
    run = (slices(3.0, MIN_QUIET_SLICES, 1.0, 1.3)
           + slices(30.0, 3 * MIN_QUIET_SLICES, 1.5, 2.5))
    added = added_by_alternation(run)["sidecar"]
    assert added.quiet == pytest.approx(0.3)
    assert added.overall == pytest.approx(1.0)  # most of the run was stolen
    assert added.quiet_share == pytest.approx(0.25)


def test_too_little_quiet_time_gives_no_quiet_figure() -> None:
    run = slices(3.0, MIN_QUIET_SLICES - 1, 1.0, 1.3) + slices(30.0, 20, 1.5, 2.5)
    added = added_by_alternation(run)["sidecar"]
    assert added.quiet is None


def hops(steal: float, count: int, direct: float, **added_ms: float) -> list[Slice]:
    return [Slice(steal, {"direct": [direct] * 5,
                          **{hop.replace("_", "+"): [direct + ms] * 5 for hop, ms in
                             added_ms.items()}}) for _ in range(count)]


def result(scenario: str, rps: float, p50: float, p99: float = 10.0) -> Result:
    return Result(scenario, 16, rps, p50, p99, 0, "wrk", {})


def test_paired_rounds_compare_each_round_with_direct_in_the_same_round() -> None:
    rounds = {("direct", 16): [result("direct", 1000, 10), result("direct", 500, 20),
                               result("direct", 1000, 10)],
              ("sidecar", 16): [result("sidecar", 800, 11), result("sidecar", 450, 22),
                                result("sidecar", 900, 10.5)]}
    median, _, _, share = paired(rounds)[("sidecar", 16)]
    # Unpaired medians would give 800/1000; paired: 0.8, 0.9, 0.9.
    assert share == pytest.approx(0.9)
    assert median == pytest.approx(1.0)


def test_verdicts_name_the_figure_and_say_met_or_missed() -> None:
    """The data-plane targets: the sidecar adds no more than nginx at c=1, router+sidecar no
    more than twice nginx, the sidecar keeps 90% of direct throughput at c=16."""
    quiet = added_by_alternation(hops(3.0, MIN_QUIET_SLICES, 1.0, sidecar=0.6, nginx=0.5,
                                      router_sidecar=0.9))
    pairs = {("sidecar", 16): (0.1, 0.0, 0.2, 0.85)}
    results = [result("direct", 1200, 10, 20), result("mlserver", 300, 40, 80)]
    latency, router, throughput, versus = targets_met(pairs, {1: quiet}, results)
    assert "+0.600 vs +0.500 ms -> MISSED" in latency and "steal < 10%" in latency
    assert "+0.900 vs 2 x +0.500 ms -> met" in router
    assert "85.0% -> MISSED" in throughput
    assert "x4.00" in versus and versus.endswith("met")


def test_net_http_floor_says_whether_the_sidecar_target_lies_below_it() -> None:
    """The bare ReverseProxy's hop against nginx's: when it alone adds more, no proxy built on
    net/http can meet the target, and what the sidecar adds over it is its own work."""
    slices = hops(3.0, MIN_QUIET_SLICES, 1.0, sidecar=0.2, nginx=0.13)
    for piece in slices:
        piece.latencies[FLOOR] = [1.15] * 5
    sidecar, floor, own = targets_met({}, {1: added_by_alternation(slices)}, [])
    assert sidecar.endswith("-> MISSED")
    assert "+0.150 ms at p50 c=1, nginx +0.130" in floor
    assert floor.endswith("lies below what net/http costs by itself")
    assert own == "the sidecar's own work over that floor: +0.050 ms at p50 c=1"


def test_the_model_server_on_its_own_core_is_a_verdict_of_its_own() -> None:
    own_core = {("sidecar", 16): (0.05, 0.0, 0.1, 0.97)}
    shared, pinned = targets_met({("sidecar", 16): (0.1, 0.0, 0.2, 0.71)}, {}, [], own_core)
    assert shared.endswith("71.0% -> MISSED")
    assert "a core of its own" in pinned and pinned.endswith("97.0% -> met")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_pinning_a_process_group_pins_every_thread_of_it() -> None:
    code = ("import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); "
            "print(flush=True); time.sleep(30)")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               start_new_session=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"\n"
        cpu = max(os.sched_getaffinity(0))
        pin_group(process.pid, {cpu})
        tasks = os.listdir(f"/proc/{process.pid}/task")
        assert len(tasks) == 2
        assert all(os.sched_getaffinity(int(task)) == {cpu} for task in tasks)
    finally:
        process.kill()
        process.wait()


def test_a_noisy_host_judges_by_the_whole_runs_and_says_so() -> None:
    noisy = added_by_alternation(hops(30.0, 20, 1.0, sidecar=0.2, nginx=0.3))
    (latency,) = targets_met({}, {1: noisy, 20: noisy}, [])
    assert "whole runs, steal included" in latency and latency.endswith("met")


def test_cpu_per_request_is_reported_for_each_hop() -> None:
    results = [Result("sidecar", 16, 1000, 1, 2, 0, "wrk", {"sidecar": 80.0, "server": 400.0}),
               Result("nginx", 16, 1000, 1, 2, 0, "wrk", {"nginx": 60.0})]
    (cpu,) = targets_met({}, {}, results)
    assert cpu == "CPU per request at c=16 (us, each hop's own processes): sidecar 80, nginx 60"


def served(scenario: str, concurrency: int, rps: float, p50: float, p99: float,
           cpu: dict[str, float]) -> Result:
    return Result(scenario, concurrency, rps, p50, p99, 0, "wrk", cpu)


def test_third_party_servers_are_compared_with_ours_figure_by_figure() -> None:
    results = [served("direct", 1, 900, 1.0, 2.0, {"server": 400}),
               served("direct", 16, 4000, 4.0, 10.0, {"server": 250}),
               served("sidecar", 16, 3600, 4.4, 11.0, {"server": 250, "sidecar": 200}),
               served("kserve", 1, 450, 2.0, 3.0, {"kserve": 1000, "server": 45}),
               served("kserve", 16, 1000, 16.0, 40.0, {"kserve": 900})]
    # Hops are no third-party server, MLServer did not run, and a figure counts the server's own
    # CPU only (not a neighbour that woke up during its round).
    ours, kserve = versus_ours(results)
    assert ours["server"] == "ours" and "ratio_to_ours" not in ours
    assert ours["cpu_us_per_request c=16"] == 250
    assert kserve["server"] == "kserve"
    assert kserve["requests_per_second c=16"] == 1000
    assert kserve["ratio_to_ours"] == {
        "requests_per_second c=16": 0.25, "p50_ms c=1": 2.0, "p99_ms c=1": 1.5,
        "p50_ms c=16": 4.0, "p99_ms c=16": 4.0, "cpu_us_per_request c=1": 2.5,
        "cpu_us_per_request c=16": 3.6}
    header, our_line, kserve_line = versus_table([ours, kserve])
    assert header.split()[:3] == ["server", "req/s", "c=16"]
    assert our_line.split() == ["ours", "4000.0", "1.00", "2.00", "4.00", "10.00", "400", "250"]
    assert "1000.0 (x0.25)" in kserve_line and "900 (x3.60)" in kserve_line


def test_a_concurrency_not_measured_leaves_a_gap_and_no_ratio() -> None:
    results = [served("direct", 16, 4000, 4.0, 10.0, {"server": 250}),
               served("mlserver", 16, 800, 20.0, 60.0, {"mlserver": 1200})]
    ours, mlserver = versus_ours(results)
    assert ours["p50_ms c=1"] is None
    assert mlserver["ratio_to_ours"]["p50_ms c=1"] is None  # type: ignore[index]
    assert versus_table([ours, mlserver])[2].split()[:4] == ["mlserver", "800.0", "(x0.20)", "-"]
    assert versus_ours(results[1:]) == []  # nothing to compare with without our server
