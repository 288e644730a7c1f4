"""The Helm chart rendered with `helm template` (no cluster): defaults, schema, leader
election, monitors, CRDs, least-privilege RBAC, the roles for users. Skipped where no helm
binary is installed (`make cluster-build` builds one); the server-side dry runs are in
tests/e2e/test_chart.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_operator.api import crdgen
from tests.harness.chart import CHART, HELM_KUBE_VERSION, helm_template


def _find_helm() -> Path | None:
    """The helm `make cluster-build` builds (the Makefile's MODELOPS_CACHE), else one on PATH."""
    cache = os.environ.get("MODELOPS_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelops/devcluster"
    )
    built = Path(cache) / "bin" / "helm"
    if built.is_file():
        return built
    found = shutil.which("helm")
    return Path(found) if found else None


HELM = _find_helm()
pytestmark = pytest.mark.skipif(HELM is None, reason="no helm binary (make cluster-build)")
NAMESPACE = "modelops-system"


def render(*values: str) -> list[dict[str, Any]]:
    assert HELM is not None
    return helm_template(HELM, NAMESPACE, *(arg for v in values for arg in ("--set", v)))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def operator_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's own ClusterRole (the others are the roles for users)."""
    (role,) = [d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"] == "modelops"]
    return role


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_helm_lint_strict_passes() -> None:
    result = subprocess.run(
        [str(HELM), "lint", "--strict", "--kube-version", HELM_KUBE_VERSION, str(CHART)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_defaults_render_the_operator_with_its_crds_and_metrics_service() -> None:
    kinds = sorted(d["kind"] for d in render())
    assert kinds == [
        "ClusterRole",  # the operator's
        "ClusterRole",  # modelops-view, -edit, -approver
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",  # approvals, dataplane keys, lineage
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
    ]


def test_operator_is_one_recreated_locked_down_standalone_replica() -> None:
    docs = render()
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = operator_container(docs)
    assert container["image"] == "modelops/modelops-operator:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"  # images loaded into containerd
    assert "--standalone" in container["args"] and "modelops_operator.main" in container["args"]
    assert not any(a.startswith("--peering") for a in container["args"])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_probes_use_kopfs_health_endpoint() -> None:
    container = operator_container(render())
    liveness = next(a for a in container["args"] if a.startswith("--liveness="))
    assert liveness == "--liveness=http://0.0.0.0:8080/healthz"
    health = next(p for p in container["ports"] if p["name"] == "health")
    assert health["containerPort"] == 8080
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe


def test_metrics_service_reaches_the_port_the_operator_serves() -> None:
    docs = render()
    container = operator_container(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = next(p for p in container["ports"] if p["name"] == "metrics")
    assert env["MODELOPS_METRICS_PORT"] == str(port["containerPort"]) == "9090"
    (service,) = by_kind(docs, "Service")
    assert service["metadata"]["name"] == "modelops-metrics"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    (deployment,) = by_kind(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    docs = render("metrics.enabled=false")
    assert by_kind(docs, "Service") == []
    assert "MODELOPS_METRICS_PORT" not in str(operator_container(docs)["env"])


@pytest.mark.parametrize(
    "value",
    [
        "bogus=1",  # unknown at the top
        "metrics.bogus=1",  # unknown one level down
        "replicas=2",  # a plausible typo of replicaCount
        "replicaCount=0",
        "image.pullPolicy=Sometimes",
        "podMonitor.interval=often",
        "watchNamespaces={Team_A}",  # not a namespace name
    ],
)
def test_schema_refuses_unknown_and_mistyped_values(value: str) -> None:
    assert HELM is not None
    result = subprocess.run(
        [str(HELM), "template", "modelops", str(CHART), "--kube-version", HELM_KUBE_VERSION,
         "--set", value],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


def test_two_replicas_elect_a_leader_with_a_disruption_budget() -> None:
    docs = render("replicaCount=2")
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    container = operator_container(docs)
    assert "--peering=modelops" in container["args"] and "--standalone" not in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELOPS_PEERING_LIFETIME_SECONDS"]["value"] == "20"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    crds = {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")}
    assert "clusterkopfpeerings.kopf.dev" in crds
    role = operator_role(docs)
    peering = [r for r in role["rules"] if r["apiGroups"] == ["kopf.dev"]]
    assert {v for r in peering for v in r["verbs"]} == {"list", "watch", "create", "get", "patch"}
    for rule in peering:
        if {"get", "patch"} & set(rule["verbs"]):
            assert rule["resourceNames"] == ["modelops"]  # only the release's peering object


def test_one_replica_without_peering_has_no_peering_rights_nor_pdb() -> None:
    docs = render()
    role = operator_role(docs)
    assert not [r for r in role["rules"] if "kopf.dev" in r["apiGroups"]]
    assert by_kind(docs, "PodDisruptionBudget") == []
    # Peering with one replica: rolling upgrades, still no budget that would block drains.
    docs = render("leaderElection.enabled=true")
    assert "--peering=modelops" in operator_container(docs)["args"]
    assert by_kind(docs, "PodDisruptionBudget") == []


CLUSTER_SCOPED = (
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


def render_release(release: str, *values: str) -> list[dict[str, Any]]:
    assert HELM is not None
    out = subprocess.run(
        [str(HELM), "template", release, str(CHART), "--namespace", NAMESPACE,
         "--kube-version", HELM_KUBE_VERSION, *(a for v in values for a in ("--set", v))],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_shards_serve_their_namespaces_and_share_no_cluster_object() -> None:
    """Sharding by namespace: one release per shard, the CRDs from one of them. Two releases
    must not claim the same cluster-scoped object (Helm refuses to adopt another release's),
    and each release's admission policies guard its own ServiceAccount."""
    first = render_release("shard-a", "watchNamespaces={team-a,team-b}", "replicaCount=2")
    second = render_release("shard-b", "watchNamespaces={team-c}", "crds.install=false")
    args = [operator_container(docs)["args"] for docs in (first, second)]
    assert "--all-namespaces" not in args[0] + args[1]
    assert [a for a in args[0] if a.startswith("--namespace")] == [
        "--namespace=team-a", "--namespace=team-b"]  # fmt: skip
    assert [a for a in args[1] if a.startswith("--namespace")] == ["--namespace=team-c"]
    assert "--peering=shard-a-modelops" in args[0]  # each shard elects its own leader

    def cluster_names(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in CLUSTER_SCOPED}

    assert not cluster_names(first) & cluster_names(second)
    assert by_kind(second, "CustomResourceDefinition") == []
    (keys_policy,) = [p for p in by_kind(second, "ValidatingAdmissionPolicy")
                      if p["metadata"]["name"].endswith("-dataplane-keys")]  # fmt: skip
    assert "shard-b-modelops" in keys_policy["spec"]["matchConditions"][0]["expression"]
    assert "--all-namespaces" in operator_container(render())["args"]  # the default: all


def test_monitors_are_off_by_default() -> None:
    kinds = {d["kind"] for d in render()}
    assert not {"ServiceMonitor", "PodMonitor"} & kinds


def test_pod_monitor_scrapes_every_model_pods_metrics_port() -> None:
    docs = render("podMonitor.enabled=true", "podMonitor.additionalLabels.release=kps")
    (monitor,) = by_kind(docs, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "modelops"}
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert endpoint["honorLabels"] is False
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets == {
        "namespace": ["__meta_kubernetes_namespace"],
        "pod": ["__meta_kubernetes_pod_name"],
    }


def test_service_monitor_selects_the_metrics_service() -> None:
    docs = render("serviceMonitor.enabled=true")
    (monitor,) = by_kind(docs, "ServiceMonitor")
    (service,) = by_kind(docs, "Service")
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    with pytest.raises(subprocess.CalledProcessError):
        render("serviceMonitor.enabled=true", "metrics.enabled=false")


def test_crds_are_templates_kept_on_uninstall() -> None:
    crds = {d["metadata"]["name"]: d for d in by_kind(render(), "CustomResourceDefinition")}
    assert set(crds) == {
        "modeldeployments.modelops.io",
        "championchallengers.modelops.io",
        "lineagerecords.modelops.io",
    }
    for name, text in crdgen.render().items():
        plain = yaml.safe_load(text)
        rendered = crds[plain["metadata"]["name"]]
        assert rendered["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert rendered == plain, name  # verbatim: the gates' placeholders are not templated
    assert by_kind(render("crds.install=false"), "CustomResourceDefinition") == []
    assert by_kind(render("crds.install=false", "replicaCount=2"), "CustomResourceDefinition") == []


def test_rbac_has_no_wildcards_and_never_lists_secrets() -> None:
    for docs in (render(), render("replicaCount=2")):
        role = operator_role(docs)
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], rule
            assert "deletecollection" not in rule["verbs"]
            # Deleting is for two things only: a challenger Deployment once traffic has left
            # it, and lineage records beyond the retention policy (never updated).
            if "delete" in rule["verbs"]:
                assert rule["resources"] in (["deployments"], ["lineagerecords"]), rule
            if "lineagerecords" in rule["resources"]:
                assert not {"update", "patch"} & set(rule["verbs"]), rule
            # Secrets: get by name, create and rotate the data plane's keys (patch, confined
            # by the modelops-dataplane-keys policy); never list, watch, update or delete.
            if "secrets" in rule["resources"]:
                assert rule["resources"] == ["secrets"]
                assert rule["verbs"] == ["get", "create", "patch"]


def rules_of(role: dict[str, Any]) -> dict[str, set[str]]:
    """resource -> verbs granted on it (in group modelops.io only)."""
    granted: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["modelops.io"], rule
        for resource in rule["resources"]:
            granted.setdefault(resource, set()).update(rule["verbs"])
    return granted


def user_roles(*values: str) -> dict[str, dict[str, Any]]:
    names = {"modelops-view", "modelops-edit", "modelops-approver"}
    roles = by_kind(render(*values), "ClusterRole")
    return {r["metadata"]["name"]: r for r in roles if r["metadata"]["name"] in names}


def test_operator_writes_lineage_records_once_and_never_rewrites_them() -> None:
    records = [r for r in operator_role(render())["rules"] if "lineagerecords" in r["resources"]]
    assert records == [
        {
            "apiGroups": ["modelops.io"],
            "resources": ["lineagerecords"],
            "verbs": ["list", "create", "delete"],  # what lineage/store.py calls
        }
    ]


def test_user_roles_view_edit_aggregate_and_approver_stands_alone() -> None:
    roles = user_roles()
    assert set(roles) == {"modelops-view", "modelops-edit", "modelops-approver"}
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    labels = {
        name: {k.removeprefix(aggregate) for k, v in role["metadata"]["labels"].items()
               if k.startswith(aggregate) and v == "true"}
        for name, role in roles.items()
    }  # fmt: skip
    assert labels == {
        "modelops-view": {"view"},
        "modelops-edit": {"edit", "admin"},
        "modelops-approver": set(),  # approving is granted on purpose, never by aggregation
    }
    for role in roles.values():  # same metadata as the chart's other objects
        assert role["metadata"]["labels"]["app.kubernetes.io/instance"] == "modelops"
    renamed = {r["metadata"]["name"] for r in by_kind(render("fullnameOverride=ml"), "ClusterRole")}
    assert renamed == {"ml", "ml-view", "ml-edit", "ml-approver"}  # the release's prefix


def test_view_reads_everything_and_edit_never_writes_lineage_records() -> None:
    roles = user_roles()
    read = {"get", "list", "watch"}
    view = rules_of(roles["modelops-view"])
    for resource in ("modeldeployments", "championchallengers", "lineagerecords"):
        assert view[resource] == read, resource
    assert not {v for verbs in view.values() for v in verbs} - read
    edit = rules_of(roles["modelops-edit"])
    write = {"create", "update", "patch", "delete"}
    assert edit["modeldeployments"] >= write and edit["championchallengers"] >= write
    assert edit["modeldeployments/scale"] >= {"update", "patch"}
    assert edit["lineagerecords"] == read  # audit records: only the operator writes them
    # Approving and ordering are not editing: the admission policy checks these.
    assert "championchallengers/approval" not in edit
    assert "championchallengers/command" not in edit
    for role in roles.values():
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], rule
            assert "deletecollection" not in rule["verbs"]


def test_approver_may_update_exactly_what_the_admission_policy_checks() -> None:
    approver = rules_of(user_roles()["modelops-approver"])
    assert approver == {
        "championchallengers": {"get", "list", "watch", "patch"},  # the plugin's merge patch
        "championchallengers/approval": {"update"},
        "championchallengers/command": {"update"},
    }
    policy = (CHART / "templates" / "approval-policy.yaml").read_text()
    for subresource in ("approval", "command"):
        assert f"subresource('{subresource}')" in policy
    assert policy.count(".check('update')") == 2


def test_user_roles_can_be_left_out() -> None:
    assert user_roles("userRoles.create=false") == {}
    operator_role(render("userRoles.create=false"))  # the operator's own role stays
