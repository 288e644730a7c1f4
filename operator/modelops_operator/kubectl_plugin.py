"""`kubectl modelops`: look at a challenge, approve it, force or stop it.

    kubectl modelops status  <cc> [-n NS]
    kubectl modelops approve <cc> [-n NS]        # the challenger that awaits approval
    kubectl modelops promote <cc> --force [-n NS]
    kubectl modelops rollback <cc> [-n NS]

Approvals and commands are annotations that name the person giving them; the API server's
`modelops-approvals` ValidatingAdmissionPolicy rejects any that names someone else, or comes
from someone without update on `championchallengers/approval` (or `/command`). The name used
here is the one the API server reports for the caller (SelfSubjectReview), never a guess.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.types import PatchType

from .constants import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_APPROVED_VERSION,
    ANNOTATION_COMMAND,
    ANNOTATION_COMMAND_BY,
)

ChampionChallenger = create_namespaced_resource(
    "modelops.io", "v1alpha1", "ChampionChallenger", "championchallengers"
)

APPROVED_VERSION = ANNOTATION_APPROVED_VERSION
APPROVED_BY = ANNOTATION_APPROVED_BY
COMMAND = ANNOTATION_COMMAND
COMMAND_BY = ANNOTATION_COMMAND_BY


class PluginError(RuntimeError):
    pass


def whoami(client: Client) -> str:
    review = client.create(SelfSubjectReview())
    user = review.status.userInfo.username if review.status and review.status.userInfo else None
    if not user:
        raise PluginError("the API server did not say who you are (SelfSubjectReview)")
    return str(user)


def format_status(cc: dict[str, Any]) -> str:
    """A person's view of one challenge: phase, models, traffic, each gate's evidence."""
    meta, status = cc["metadata"], cc.get("status") or {}
    champion = (status.get("champion") or {}).get("version", "-")
    challenger = (status.get("challenger") or {}).get("version", "-")
    lines = [
        f"{meta['namespace']}/{meta['name']}: {status.get('phase', 'Idle')}",
        f"  champion {champion}   challenger {challenger}   "
        f"traffic {status.get('trafficPercent', 0)}%   decision {status.get('decision') or '-'}",
    ]
    if status.get("message"):
        lines.append(f"  {status['message']}")
    gates = status.get("gates") or []
    if gates:
        lines.append(f"  {'GATE':<18}{'VERDICT':<9}{'ESTIMATE':>10}  {'INTERVAL':<22}SAMPLES")
        for gate in gates:
            interval = "-"
            if gate.get("lower") is not None or gate.get("upper") is not None:
                interval = f"[{_num(gate.get('lower'))}, {_num(gate.get('upper'))}]"
            samples = gate.get("samples") or {}
            lines.append(
                f"  {gate['name']:<18}{gate.get('verdict', '-'):<9}"
                f"{_num(gate.get('estimate')):>10}  {interval:<22}"
                f"{samples.get('champion', 0)}/{samples.get('challenger', 0)}"
            )
    approval = status.get("approval")
    if approval:
        lines.append(
            f"  approved by {approval['approvedBy']} at {approval['approvedAt']} "
            f"for {approval['version']}"
        )
    return "\n".join(lines)


def format_report(cc: dict[str, Any]) -> str:
    """The audit trail: the current state, then every concluded challenge with its evidence."""
    status = cc.get("status") or {}
    lines = [format_status(cc), "", "history (newest last):"]
    history = status.get("history") or []
    if not history:
        lines.append("  no challenge has concluded yet")
    for entry in history:
        lines.append(
            f"  {entry.get('time', '-')}  {entry.get('action', '-'):<10} "
            f"{entry.get('version', '-')} (champion was {entry.get('previous') or '-'})"
        )
        lines.append(f"    {entry.get('reason', '')}")
        for gate in entry.get("evidence") or []:
            lines.append(
                f"    {gate.get('name', '-'):<18}{gate.get('verdict', '-'):<9}"
                f"{_num(gate.get('estimate')):>10}  "
                f"[{_num(gate.get('lower'))}, {_num(gate.get('upper'))}]"
            )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _patch_annotations(client: Client, name: str, namespace: str, annotations: dict[str, str]):
    return client.patch(
        ChampionChallenger,
        name,
        {"metadata": {"annotations": annotations}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


def _running_challenge(cc: Any) -> tuple[str, str]:
    """(challenger version, challenge id) of the challenge now running, or ("", "")."""
    status = cc.get("status") or {}
    challenger = (status.get("challenger") or {}).get("version") or ""
    return challenger, str((status.get("machine") or {}).get("challengeId") or "")


def approve(client: Client, name: str, namespace: str) -> str:
    cc = client.get(ChampionChallenger, name, namespace=namespace)
    status = cc.get("status") or {}
    challenger, challenge_id = _running_challenge(cc)
    if status.get("phase") != "AwaitingApproval" or not challenge_id:
        raise PluginError(
            f"{namespace}/{name} is {status.get('phase', 'Idle')}, not AwaitingApproval: "
            "nothing to approve"
        )
    user = whoami(client)
    # The challenge id (version and start), not the bare version: an approval never carries
    # over to a later challenge of the same version.
    annotations = {APPROVED_VERSION: challenge_id, APPROVED_BY: user}
    _patch_annotations(client, name, namespace, annotations)
    return f"approved {challenger} ({challenge_id}) of {namespace}/{name} as {user}"


def command(client: Client, name: str, namespace: str, action: str) -> str:
    """Ask for `promote` or `rollback` of the current challenger.

    The value names the challenge (`rollback/1.2.0-1795392000`: version and start), so an
    order given for one challenge is never carried out on a later one.
    """
    cc = client.get(ChampionChallenger, name, namespace=namespace)
    status = cc.get("status") or {}
    challenger, challenge_id = _running_challenge(cc)
    if status.get("phase") not in ("Progressing", "AwaitingApproval") or not challenge_id:
        raise PluginError(
            f"{namespace}/{name} is {status.get('phase', 'Idle')}: no challenge to {action}"
        )
    user = whoami(client)
    value = f"{action}/{challenge_id}"
    _patch_annotations(client, name, namespace, {COMMAND: value, COMMAND_BY: user})
    return f"{action} of {challenger} requested for {namespace}/{name} as {user}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubectl modelops",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", "--namespace", default=None, help="namespace (default: context's)")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in ("status", "report", "approve", "rollback"):
        sub.add_parser(verb).add_argument("name", help="ChampionChallenger name")
    promote = sub.add_parser("promote", help="promote now, skipping the gates (needs --force)")
    promote.add_argument("name")
    promote.add_argument("--force", action="store_true", required=True)
    args = parser.parse_args(argv)
    try:
        client = Client(field_manager="kubectl-modelops")
        namespace = args.namespace or client.namespace
        if args.verb in ("status", "report"):
            show = format_status if args.verb == "status" else format_report
            print(show(client.get(ChampionChallenger, args.name, namespace=namespace)))
        elif args.verb == "approve":
            print(approve(client, args.name, namespace))
        else:
            print(command(client, args.name, namespace, args.verb))
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ApiError as error:
        print(f"error: {error.status.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
