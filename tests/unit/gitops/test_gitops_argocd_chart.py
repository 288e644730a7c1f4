"""The chart renders the shipped Lua files, unchanged but for Argo CD's account, as argocd-cm
keys, and lets that account approve. Skipped where no helm binary is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.argocd_lua import ACTIONS, SCRIPTS, run_script
from tests.harness.chart import helm_template
from tests.harness.gitops_documents import ChallengeRun, challenge_spec
from tests.unit.chart.test_chart_render import HELM

pytestmark = pytest.mark.skipif(HELM is None, reason="no helm binary (make cluster-build)")
DEFAULT_ACCOUNT = "system:serviceaccount:argocd:argocd-server"
ACCOUNT = "system:serviceaccount:gitops:argocd-server"


def render(*values: str) -> list[dict[str, Any]]:
    assert HELM is not None
    return helm_template(HELM, "modelops-system", *(a for v in values for a in ("--set", v)))


def named(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return found


def test_nothing_for_argo_cd_unless_asked() -> None:
    assert not [d for d in render() if "argocd" in d["metadata"]["name"]]


def test_the_configmap_carries_the_shipped_scripts_with_argo_cds_account() -> None:
    docs = render("gitops.argocd.enabled=true", f"gitops.argocd.serviceAccount={ACCOUNT}")
    data = named(docs, "ConfigMap", "-argocd-cm")["data"]
    for kind in ("ModelDeployment", "ChampionChallenger"):
        shipped = (SCRIPTS / f"{kind.lower()}-health.lua").read_text()
        assert data[f"resource.customizations.health.modelops.io_{kind}"] == shipped
    actions = yaml.safe_load(data["resource.customizations.actions.modelops.io_ChampionChallenger"])
    assert actions["discovery.lua"] == (SCRIPTS / "actions/discovery.lua").read_text()
    rendered = {d["name"]: d["action.lua"] for d in actions["definitions"]}
    assert list(rendered) == list(ACTIONS)
    for name, script in rendered.items():
        shipped = (SCRIPTS / f"actions/{name}.lua").read_text()
        assert script == shipped.replace(f'"{DEFAULT_ACCOUNT}"', f'"{ACCOUNT}"')
        assert DEFAULT_ACCOUNT not in script


def test_the_rendered_approval_names_the_configured_account(tmp_path: Path) -> None:
    docs = render("gitops.argocd.enabled=true", f"gitops.argocd.serviceAccount={ACCOUNT}")
    data = named(docs, "ConfigMap", "-argocd-cm")["data"]
    actions = yaml.safe_load(data["resource.customizations.actions.modelops.io_ChampionChallenger"])
    script = next(d["action.lua"] for d in actions["definitions"] if d["name"] == "approve")
    (tmp_path / "approve.lua").write_text(script)
    body = ChallengeRun(spec=challenge_spec(approval=True)).gates_passed().body()
    approved = run_script(tmp_path / "approve.lua", body)
    assert approved["metadata"]["annotations"]["modelops.io/approved-by"] == ACCOUNT


def test_the_account_may_approve_and_command_nothing_more() -> None:
    docs = render("gitops.argocd.enabled=true", f"gitops.argocd.serviceAccount={ACCOUNT}")
    role = named(docs, "ClusterRole", "-argocd-actions")
    assert role["rules"] == [
        {
            "apiGroups": ["modelops.io"],
            "resources": ["championchallengers/approval", "championchallengers/command"],
            "verbs": ["update"],
        }
    ]
    binding = named(docs, "ClusterRoleBinding", "-argocd-actions")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": ACCOUNT}
    ]
