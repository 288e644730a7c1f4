"""Where a change of spec.model came from, read off the ModelDeployment's metadata.

GitOps tools leave their mark on what they apply: Argo CD a tracking annotation (or the
instance label in its label tracking mode), Flux the labels of the Kustomization or
HelmRelease that applied it, Helm its release annotations. None of them writes the Git
revision on the object, so a pipeline that wants it recorded sets `modelops.io/source-revision`
(and `modelops.io/source-repository`), e.g. through Argo CD's `commonAnnotations` with
`${ARGOCD_APP_REVISION}` or Flux's post-build substitution. The field manager that last set
spec.model, and when, comes from managedFields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.lineagerecord import ChangeSource
from ..observe import owns_model

ANNOTATION_SOURCE_REVISION = "modelops.io/source-revision"
ANNOTATION_SOURCE_REPOSITORY = "modelops.io/source-repository"
ARGOCD_TRACKING_ID = "argocd.argoproj.io/tracking-id"
FLUX_KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace")
FLUX_HELMRELEASE = ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace")
HELM_RELEASE = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")


def _tool_and_application(
    labels: Mapping[str, str], annotations: Mapping[str, str]
) -> tuple[str, str]:
    tracking = annotations.get(ARGOCD_TRACKING_ID, "")
    if tracking:
        # "<app>:<group>/<kind>:<namespace>/<name>": the Application is the part before ':'.
        return "argocd", tracking.split(":", 1)[0]
    for tool, (name_key, namespace_key) in (
        ("flux", FLUX_KUSTOMIZATION),
        ("flux", FLUX_HELMRELEASE),
    ):
        if name_key in labels:
            kind = "Kustomization" if name_key == FLUX_KUSTOMIZATION[0] else "HelmRelease"
            return tool, f"{kind} {labels.get(namespace_key, '')}/{labels[name_key]}"
    if HELM_RELEASE[0] in annotations:
        return "helm", f"{annotations.get(HELM_RELEASE[1], '')}/{annotations[HELM_RELEASE[0]]}"
    return "", ""


def model_manager(managed_fields: list[Mapping[str, Any]] | None) -> tuple[str, str]:
    """(manager, time) of the newest managedFields entry that owns spec.model."""
    owners = [entry for entry in managed_fields or () if owns_model(entry)]
    if not owners:
        return "", ""
    newest = max(owners, key=lambda entry: str(entry.get("time") or ""))
    return str(newest.get("manager") or ""), str(newest.get("time") or "")


def change_source(metadata: Mapping[str, Any]) -> ChangeSource:
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    tool, application = _tool_and_application(labels, annotations)
    manager, changed_at = model_manager(metadata.get("managedFields"))
    return ChangeSource(
        tool=tool or manager,
        application=application,
        repository=annotations.get(ANNOTATION_SOURCE_REPOSITORY, "")[:2048],
        revision=annotations.get(ANNOTATION_SOURCE_REVISION, "")[:256],
        changed_by=manager,
        changed_at=changed_at or None,  # type: ignore[arg-type]  # pydantic parses RFC 3339
    )
