"""Governance end to end: a promotion that waits for a person's approval and a rollback leave
LineageRecords that `kubectl get` lists by label and that nobody can edit; `history` and `card`
show them, and the card renders in headless Chromium (its screenshot is in the test's output).

Pods on the real node, Prometheus in the cluster, the operator as a host process with the
chart's ServiceAccount (like test_challenge, whose helpers this module reuses).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.chart import render_template
from tests.harness.operator_process import OperatorProcess

from ..operator_fixtures import crds, get_json, operator_identity, wait_until  # noqa: F401 - fixtures
from .test_challenge import TARGET, challenge, deploy, models, start_load, wait_phase  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
LINEAGE_POLICY = "lineage-policy.yaml"
CC = f"{TARGET}-gate"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync")  # fmt: skip


def plugin(cluster: Any, namespace: str, *args: str, check: bool = True) -> Any:
    """`kubectl modelops …` as the cluster's admin, flags after the verb as people type them."""
    result = subprocess.run(
        [sys.executable, "-m", "modelops_operator.kubectl_plugin", *args, "-n", namespace],
        env=cluster.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


def records(cluster: Any, namespace: str, *selector: str) -> list[dict[str, Any]]:
    wanted = ",".join((f"modelops.io/deployment={TARGET}", *selector))
    found = get_json(cluster, "-n", namespace, "lineagerecords", "-l", wanted)["items"]
    return sorted(found, key=lambda r: r["spec"]["decidedAt"])


def events_of(found: list[dict[str, Any]]) -> list[str]:
    return [r["spec"]["event"] for r in found]


def test_an_approved_promotion_and_a_rollback_leave_records_nobody_can_edit(
    real_cluster: Any,
    namespace: str,
    challenge_operator: OperatorProcess,
    models: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    cluster = real_cluster.cluster
    cluster.kubectl(
        "apply", "--server-side", "-f", "-",
        input=render_template(Path(cluster.bin_dir) / "helm", LINEAGE_POLICY),
    )
    deploy(cluster, namespace, models["champion"], approval={"required": True})
    load = start_load(real_cluster, namespace)
    try:
        challenge(cluster, namespace, models["better"])
        waiting = wait_phase(cluster, namespace, "AwaitingApproval")
        assert waiting["challenger"]["version"] == models["better"].version
        assert "Approved" not in events_of(records(cluster, namespace))
        approved = plugin(cluster, namespace, "approve", CC)
        assert "approved" in approved.stdout
        wait_phase(cluster, namespace, "Promoted")
        challenge(cluster, namespace, models["worse"])
        wait_phase(cluster, namespace, "RolledBack")
    finally:
        final = load.stop()
    assert final["requests"]["failed"] == 0, final["recentErrors"]

    found = records(cluster, namespace)
    assert events_of(found) == ["RolledOut", "Approved", "Promoted", "RolledBack"]
    first, approval, promoted, rolled_back = (r["spec"] for r in found)
    assert first["model"]["version"] == models["champion"].version
    assert first["model"]["digest"] == models["champion"].digest
    assert first["source"]["changedBy"] == "kubectl-client-side-apply"  # who set spec.model
    admin = approval["decidedBy"]
    assert admin and approval["approval"]["approvedBy"] == admin
    assert (promoted["model"]["version"], promoted["previous"]["version"]) == (
        models["better"].version, models["champion"].version)  # fmt: skip
    assert promoted["approval"]["approvedBy"] == admin and promoted["decidedBy"] == "modelops"
    assert promoted["challengeId"] == approval["challengeId"]
    (gate,) = promoted["evidence"]
    assert (gate["name"], gate["verdict"], gate["margin"]) == ("accuracy", "Pass", 0.02)
    assert gate["lower"] >= -0.02 and gate["samples"]["challenger"] > 0
    assert (rolled_back["model"]["version"], rolled_back["outcome"]) == (
        models["worse"].version, models["better"].version)  # fmt: skip
    assert rolled_back["evidence"][0]["verdict"] == "Fail"
    # Selectable by label, as an auditor would ask for them.
    assert events_of(records(cluster, namespace, "modelops.io/event=RolledBack")) == ["RolledBack"]

    # Never rewritten: the CRD refuses a changed spec, the admission policy changed labels.
    name = found[2]["metadata"]["name"]
    edit = cluster.kubectl("patch", "-n", namespace, f"lineagerecord/{name}", "--type=merge",
                           "-p", json.dumps({"spec": {"decidedBy": "mallory"}}), check=False)
    assert edit.returncode != 0 and "never rewritten" in edit.stderr, edit.stderr
    relabel = wait_until(
        lambda: (lambda r: r if r.returncode != 0 else None)(cluster.kubectl(
            "label", "--overwrite", "-n", namespace, f"lineagerecord/{name}",
            "modelops.io/event=RolledBack", check=False)),
        timeout=30, what="the lineage admission policy to refuse a relabel",
    )  # fmt: skip
    assert "never rewritten" in relabel.stderr, relabel.stderr
    assert get_json(cluster, "-n", namespace, f"lineagerecord/{name}")["spec"] == found[2]["spec"]

    # What people read: the history and the model card, from the same records.
    history = json.loads(plugin(cluster, namespace, "history", TARGET, "-o", "json").stdout)
    assert [r["spec"]["event"] for r in history["items"]] == events_of(found)
    table = plugin(cluster, namespace, "history", TARGET).stdout
    assert "Approved" in table and admin in table and "accuracy" in table
    written = json.loads(plugin(cluster, namespace, "card", TARGET, "-d", str(tmp_path),
                                "-o", "json").stdout)  # fmt: skip
    markdown = Path(written["markdown"]).read_text()
    assert f"Promoted {models['better'].version}" in markdown
    assert f"Approved by {admin}" in markdown
    assert f"RolledBack {models['worse'].version}" in markdown
    render_in_chromium(Path(written["html"]), tmp_path)


def render_in_chromium(page: Path, directory: Path) -> None:
    """Chromium loads the card (no network, a fresh profile): its DOM holds every section and
    both challenges' plots, and the screenshot is kept for a person to look at."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    profile = directory / "chromium-profile"
    screenshot = directory / "card.png"
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,2400"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    for heading in ("Identity", "Lineage", "Challenges", "Approvals"):
        assert f"<h2>{heading}</h2>" in dom
    assert dom.count("<svg") == 2  # one evidence plot per concluded challenge
    subprocess.run([*common, f"--screenshot={screenshot}", page.as_uri()], capture_output=True,
                   timeout=120, check=True)  # fmt: skip
    assert screenshot.stat().st_size > 10_000
    print(f"[governance] the model card rendered by Chromium: {screenshot}")
