"""The API server, not the operator, filters the Deployments, Services and Pods it streams."""

from __future__ import annotations

import kopf

from modelops_operator.handlers.modeldeployment import watch_only_managed_children


def resource(group: str, version: str, plural: str) -> kopf.Resource:
    return kopf.Resource(group, version, plural, namespaced=True, preferred=True)


def test_children_are_selected_by_the_api_server() -> None:
    configured = kopf.OperatorSettings()
    watch_only_managed_children(settings=configured)
    selectors = configured.watching.label_selectors
    for kind in [("apps", "v1", "deployments"), ("", "v1", "services"), ("", "v1", "pods")]:
        assert selectors.collect(resource(*kind)) == ["app.kubernetes.io/managed-by=modelops"]
    # Only those: the operator's own kinds, and same-named kinds of other groups, stay whole.
    for kind in [
        ("modelops.io", "v1alpha1", "modeldeployments"),
        ("metrics.k8s.io", "v1beta1", "pods"),
        ("", "v1", "configmaps"),
    ]:
        assert selectors.collect(resource(*kind)) == []
