"""Acting on a challenge: approve it, order a promotion or a rollback, pause or resume it.

Approvals and orders are annotations that name the person giving them; the API server's
`modelops-approvals` ValidatingAdmissionPolicy rejects any that names someone else, or comes
from someone without update on `championchallengers/approval` (or `/command`). The name used
here is the one the API server reports for the caller (SelfSubjectReview), never a guess.

Pause and resume set `spec.paused`, the one spec field this plugin writes: a GitOps tool that
applies the object may set it back, so both say so.
"""

from __future__ import annotations

from typing import Any

from lightkube import Client
from lightkube.resources.authentication_v1 import SelfSubjectReview

from ..constants import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_APPROVED_VERSION,
    ANNOTATION_COMMAND,
    ANNOTATION_COMMAND_BY,
    CC_KIND,
)
from .errors import CliError, Request, talking_to
from .output import Result
from .resources import get, merge_patch

# Who applies an object, from the marks Argo CD and Flux leave on what they apply.
GITOPS_MARKS = {
    "argocd.argoproj.io/tracking-id": "Argo CD",
    "argocd.argoproj.io/instance": "Argo CD",
    "kustomize.toolkit.fluxcd.io/name": "Flux",
    "helm.toolkit.fluxcd.io/name": "Flux",
}


def whoami(client: Client) -> str:
    with talking_to(Request("create", "selfsubjectreviews.authentication.k8s.io", "", None)):
        review = client.create(SelfSubjectReview())
    user = review.status.userInfo.username if review.status and review.status.userInfo else None
    if not user:
        raise CliError(
            "the API server did not say who you are (SelfSubjectReview)",
            "approvals need an authenticated user; check your kubeconfig's credentials",
        )
    return str(user)


def _running_challenge(cc: dict[str, Any]) -> tuple[str, str]:
    """(challenger version, challenge id) of the challenge now running, or ("", "")."""
    status = cc.get("status") or {}
    challenger = (status.get("challenger") or {}).get("version") or ""
    return challenger, str((status.get("machine") or {}).get("challengeId") or "")


def _action_result(
    action: str, cc: dict[str, Any], message: str, by: str, **details: Any
) -> Result:
    meta = cc["metadata"]
    document = {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ActionResult",
        "action": action,
        "name": meta["name"],
        "namespace": meta["namespace"],
        "by": by,
        **details,
        "message": message,
    }
    return Result(document, message, [f"championchallenger.modelops.io/{meta['name']}"])


def approve(client: Client, name: str, namespace: str) -> Result:
    cc = get(client, CC_KIND, name, namespace)
    status = cc.get("status") or {}
    challenger, challenge_id = _running_challenge(cc)
    if status.get("phase") != "AwaitingApproval" or not challenge_id:
        raise CliError(
            f"{namespace}/{name} is {status.get('phase', 'Idle')}, not AwaitingApproval: "
            "nothing to approve",
            f"wait for the gates (kubectl modelops status {name} --watch)",
        )
    user = whoami(client)
    # The challenge id (version and start), not the bare version: an approval never carries
    # over to a later challenge of the same version.
    annotations = {ANNOTATION_APPROVED_VERSION: challenge_id, ANNOTATION_APPROVED_BY: user}
    merge_patch(
        client,
        CC_KIND,
        name,
        namespace,
        {"metadata": {"annotations": annotations}},
        grant_also="update on championchallengers/approval",
    )
    message = f"approved {challenger} ({challenge_id}) of {namespace}/{name} as {user}"
    return _action_result(
        "approve", cc, message, user, version=challenger, challengeId=challenge_id
    )


def order(client: Client, name: str, namespace: str, action: str) -> Result:
    """Ask for `promote` or `rollback` of the current challenger.

    The value names the challenge (`rollback/1.2.0-1795392000`: version and start), so an
    order given for one challenge is never carried out on a later one.
    """
    cc = get(client, CC_KIND, name, namespace)
    status = cc.get("status") or {}
    challenger, challenge_id = _running_challenge(cc)
    if status.get("phase") not in ("Progressing", "AwaitingApproval") or not challenge_id:
        raise CliError(
            f"{namespace}/{name} is {status.get('phase', 'Idle')}: no challenge to {action}",
            "orders apply while a challenge is Progressing or AwaitingApproval",
        )
    user = whoami(client)
    value = f"{action}/{challenge_id}"
    merge_patch(
        client,
        CC_KIND,
        name,
        namespace,
        {"metadata": {"annotations": {ANNOTATION_COMMAND: value, ANNOTATION_COMMAND_BY: user}}},
        grant_also="update on championchallengers/command",
    )
    message = f"{action} of {challenger} requested for {namespace}/{name} as {user}"
    return _action_result(action, cc, message, user, version=challenger, challengeId=challenge_id)


def gitops_owner(cc: dict[str, Any]) -> str:
    """The GitOps tool that applies this object, when it left its mark; "" otherwise."""
    meta = cc.get("metadata") or {}
    marks = {**(meta.get("labels") or {}), **(meta.get("annotations") or {})}
    for key, tool in GITOPS_MARKS.items():
        if key in marks:
            return tool
    return ""


def revert_warning(cc: dict[str, Any]) -> str:
    owner = gitops_owner(cc)
    who = f"{owner} applies this object and" if owner else "a GitOps tool applying this object"
    return (
        f"warning: spec.paused is part of spec: {who} may set it back on its next sync; "
        "to keep it, change spec.paused in Git"
    )


def set_paused(client: Client, name: str, namespace: str, paused: bool) -> tuple[Result, str]:
    """(the result, the GitOps warning to print on stderr)."""
    action = "pause" if paused else "resume"
    cc = get(client, CC_KIND, name, namespace)
    if bool((cc.get("spec") or {}).get("paused")) == paused:
        state = "paused" if paused else "not paused"
        message = f"{namespace}/{name} is already {state}"
        return _action_result(action, cc, message, "", paused=paused, changed=False), ""
    patched = merge_patch(client, CC_KIND, name, namespace, {"spec": {"paused": paused}})
    try:
        user = whoami(client)
    except CliError:
        # Only reported, never written: a cluster without SelfSubjectReview still pauses.
        user = ""
    done = "paused" if paused else "resumed"
    phase = (patched.get("status") or {}).get("phase", "Idle")
    message = f"{done} {namespace}/{name} ({phase})"
    return (
        _action_result(action, patched, message, user, paused=paused, changed=True),
        revert_warning(patched),
    )
