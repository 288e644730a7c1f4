"""The command line: verbs, and global flags that are valid before or after the verb.

argparse gives a flag defined on both the main parser and a subparser the subparser's default,
which would erase `-n NS` given before the verb; the global flags therefore default to
SUPPRESS (absent unless given) and `global_flags()` reads them with their real defaults.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from .connection import Target
from .errors import EXIT_USAGE, CliError

OUTPUTS = ("table", "json", "yaml", "name", "jsonl")
SHELLS = ("bash", "zsh")
SHORT_WITH_VALUE = "nod"  # -n NAMESPACE, -o OUTPUT, -d DIRECTORY
# Verbs that read from more than one namespace with -A.
ACROSS_NAMESPACES = ("list", "history", "export")
LIST_KINDS = {
    "challenges": "ChampionChallenger",
    "cc": "ChampionChallenger",
    "championchallengers": "ChampionChallenger",
    "deployments": "ModelDeployment",
    "mdep": "ModelDeployment",
    "modeldeployments": "ModelDeployment",
}
# What `list` shows without a kind: the challenges, with the deployment each gates.
DEFAULT_LIST_KIND = "challenges"

DESCRIPTION = """\
Look at model deployments and their challenges, act on a challenge, read the lineage.

  kubectl modelops list [deployments] [-A]
  kubectl modelops get|status <cc> [--watch] [--timeout 10m]
  kubectl modelops approve|rollback|pause|resume <cc>
  kubectl modelops promote <cc> --force
  kubectl modelops history <mdep|cc>      kubectl modelops export [-A] [--since 24h]
  kubectl modelops card <mdep> [-d DIR]   kubectl modelops dashboard [--port 3100]
  kubectl modelops completion bash|zsh    kubectl modelops version

Global flags go anywhere: -n/--namespace, -A/--all-namespaces, --context, --kubeconfig,
-o/--output table|json|yaml|name|jsonl, --request-timeout. See docs/cli.md.
"""


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one line with the way to help, exit 2 (like every other failure)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message, f"see `{self.prog} --help`", code=EXIT_USAGE)


def _global_flags() -> OneLineParser:
    flags = OneLineParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = flags.add_argument_group("global flags (before or after the verb)")
    group.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    group.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace (list, history, export)",
    )
    group.add_argument("--context", help="kubeconfig context (default: the current one)")
    group.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
    group.add_argument("-o", "--output", choices=OUTPUTS, help="output format (default: table)")
    group.add_argument(
        "--request-timeout", help="per-request timeout: seconds or 30s, 1m; 0 waits forever"
    )
    return flags


def build_parser() -> OneLineParser:
    shared = _global_flags()
    parser = OneLineParser(
        prog="kubectl modelops",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[shared],
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, summary: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=summary, description=summary, parents=[shared])

    listing = verb("list", "challenges and the deployments they gate (or: list deployments)")
    listing.add_argument("kind", nargs="?", default=DEFAULT_LIST_KIND, choices=sorted(LIST_KINDS))
    for name, summary in (
        ("get", "one challenge: phase, models, traffic, each gate's evidence"),
        ("status", "the same as get; with --watch, exits non-zero if it rolls back"),
    ):
        getter = verb(name, summary)
        getter.add_argument("name", help="ChampionChallenger")
        getter.add_argument("-w", "--watch", action="store_true", help="re-render on changes")
        getter.add_argument(
            "--timeout", default="10m", help="with --watch: give up after this long (10m)"
        )
    verb("report", "the challenge and every concluded challenge in its status").add_argument(
        "name", help="ChampionChallenger"
    )
    for name, summary in (
        ("approve", "approve the challenger that awaits approval, in your name"),
        ("rollback", "stop the challenge now and keep the champion"),
        ("pause", "stop evaluating and moving traffic (spec.paused=true)"),
        ("resume", "continue a paused challenge (spec.paused=false)"),
    ):
        verb(name, summary).add_argument("name", help="ChampionChallenger")
    promote = verb("promote", "promote the challenger now, skipping the remaining gates")
    promote.add_argument("name", help="ChampionChallenger")
    promote.add_argument("--force", action="store_true", help="confirm skipping the gates")
    history = verb("history", "the lineage of a deployment: every promotion, rollback, approval")
    history.add_argument("name", nargs="?", help="ModelDeployment or ChampionChallenger")
    export = verb("export", "every LineageRecord as JSON lines, for an external audit store")
    export.add_argument("--since", help="only records decided since: RFC 3339 or 24h, 7d")
    card = verb("card", "write the model card (Markdown and HTML) of a deployment")
    card.add_argument("name", help="ModelDeployment")
    card.add_argument("-d", "--directory", default=".", help="where to write (default: .)")
    dashboard = verb("dashboard", "serve the web dashboard on this machine")
    dashboard.add_argument("--port", type=int, default=3100, help="port (3100)")
    dashboard.add_argument("--address", default="127.0.0.1", help="address (127.0.0.1)")
    dashboard.add_argument("--no-browser", action="store_true", help="do not open a browser")
    verb("completion", "print a shell completion script").add_argument("shell", choices=SHELLS)
    verb("version", "the plugin's version")
    return parser


def _kubectl_short_forms(argv: list[str]) -> list[str]:
    """kubectl reads `-n=risk` as `-n risk`; argparse would take the namespace "=risk"."""
    split: list[str] = []
    for word in argv:
        if len(word) > 3 and word[0] == "-" and word[1] in SHORT_WITH_VALUE and word[2] == "=":
            split += [word[:2], word[3:]]
        else:
            split.append(word)
    return split


def parse(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(_kubectl_short_forms(argv))
    if getattr(args, "all_namespaces", False) and args.verb not in ACROSS_NAMESPACES:
        raise CliError(
            f"-A/--all-namespaces does not apply to {args.verb}",
            f"use -n NAMESPACE (-A works with {', '.join(ACROSS_NAMESPACES)})",
            code=EXIT_USAGE,
        )
    if args.verb == "promote" and not args.force:
        raise CliError(
            "promote skips the remaining gates", "pass --force to confirm", code=EXIT_USAGE
        )
    return args


def global_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "namespace": getattr(args, "namespace", None),
        "all_namespaces": getattr(args, "all_namespaces", False),
        "context": getattr(args, "context", None),
        "kubeconfig": getattr(args, "kubeconfig", None),
        "output": getattr(args, "output", None),
        "request_timeout": getattr(args, "request_timeout", None),
    }


def target(args: argparse.Namespace) -> Target:
    flags = global_flags(args)
    return Target(
        kubeconfig=flags["kubeconfig"],
        context=flags["context"],
        namespace=flags["namespace"],
        request_timeout=flags["request_timeout"],
    )
