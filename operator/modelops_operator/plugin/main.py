"""`kubectl modelops`: parse, connect, run one verb, print its result in the chosen format.

Whatever fails ends here as one line on stderr (errors.CliError) and an exit code: 1 for what
the cluster or the objects refused, 2 for a wrong command line, 130 for Ctrl-C. A bug of the
plugin itself is one line too; MODELOPS_DEBUG=1 shows its traceback.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from lightkube import Client

from ..constants import CC_KIND, MDEP_KIND
from . import actions, records, views, watching
from .arguments import LIST_KINDS, global_flags, parse, target
from .completion import complete, script
from .connection import connect
from .durations import parse_duration, parse_time
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, CliError, talking_to
from .output import Result, object_name, render
from .resources import find, get, list_objects, request, with_kind


def plugin_version() -> str:
    try:
        return metadata.version("modelops")
    except metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


def _say(text: str) -> None:
    if text:
        print(text, flush=True)


def _warn(text: str) -> None:
    if text:
        print(text, file=sys.stderr, flush=True)


def _usage(what: str, fix: str) -> CliError:
    return CliError(what, fix, code=EXIT_USAGE)


def show_challenge(cc: dict[str, Any], output: str, detail: Callable[[dict[str, Any]], str]) -> str:
    obj = with_kind(cc, CC_KIND)
    return render(Result(obj, detail(cc), [object_name(obj)]), output)


def list_verb(client: Client, namespace: str, args: argparse.Namespace, every: bool) -> Result:
    kind = LIST_KINDS[args.kind]
    found = [with_kind(o, kind) for o in list_objects(client, kind, None if every else namespace)]
    draw = views.challenges_table if kind == CC_KIND else views.deployments_table
    return Result(found, draw(found, every), [object_name(o) for o in found])


def challenge_named(client: Client, name: str, namespace: str) -> dict[str, Any]:
    """The challenge, or an error that says so when the name is a ModelDeployment's."""
    cc = find(client, CC_KIND, name, namespace)
    if cc is not None:
        return cc
    if find(client, MDEP_KIND, name, namespace) is not None:
        gating = [
            c["metadata"]["name"]
            for c in list_objects(client, CC_KIND, namespace)
            if ((c.get("spec") or {}).get("targetRef") or {}).get("name") == name
        ]
        raise CliError(
            f'"{name}" in namespace "{namespace}" is a ModelDeployment, not a ChampionChallenger',
            f"the challenges gating it: {', '.join(gating)}"
            if gating
            else "no ChampionChallenger gates it (kubectl modelops list deployments)",
        )
    return get(client, CC_KIND, name, namespace)  # raises the usual not-found line


def get_verb(client: Client, namespace: str, args: argparse.Namespace, output: str) -> int:
    detail = views.format_report if args.verb == "report" else views.format_status
    if not getattr(args, "watch", False):
        _say(show_challenge(challenge_named(client, args.name, namespace), output, detail))
        return 0
    try:
        timeout = parse_duration(args.timeout)
    except ValueError:
        raise _usage(
            f"invalid --timeout {args.timeout!r}", "give a duration like 90s or 10m"
        ) from None
    separator = "" if output in ("table", "yaml") else None
    first = [True]

    def emit(text: str) -> None:
        if not first[0] and separator is not None:
            print("---" if output == "yaml" else separator)
        first[0] = False
        _say(text)

    cc = watching.watch(
        client, args.name, namespace, timeout, lambda o: show_challenge(o, output, detail), emit
    )
    if args.verb == "status" and watching.failed(cc):
        status = cc.get("status") or {}
        phase = status.get("phase")
        fix = (
            "the champion kept serving; fix the model and change spec.model again"
            if phase == "RolledBack"
            else f"see its conditions: kubectl describe cc {args.name} -n {namespace}"
        )
        raise CliError(f"{namespace}/{args.name} {phase}: {status.get('message') or phase}", fix)
    return 0


def card_verb(client: Client, namespace: str, args: argparse.Namespace) -> Result:
    try:
        from ..lineage.card import write_card
    except ImportError:
        raise CliError(
            "this build of the plugin cannot write model cards (modelops_operator.lineage.card)",
            "install a modelops release that has them",
        ) from None
    directory = Path(args.directory)
    try:
        with talking_to(request("get", MDEP_KIND, namespace, args.name)):
            markdown, html = write_card(client, namespace, args.name, directory)
    except OSError as error:
        raise CliError(
            f"cannot write the card into {directory} ({error.strerror or error})",
            "pass a writable directory with -d",
        ) from None
    document = {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelCard",
        "deployment": args.name,
        "namespace": namespace,
        "markdown": str(markdown),
        "html": str(html),
    }
    return Result(document, f"markdown: {markdown}\nhtml:     {html}", [str(markdown), str(html)])


def dashboard_verb(client: Client, namespace: str, args: argparse.Namespace, output: str) -> int:
    try:
        from ..dashboard import serve
    except ImportError:
        raise CliError(
            "this build of the plugin has no dashboard (modelops_operator.dashboard)",
            "install a modelops release that has it",
        ) from None
    def announce(url: str) -> None:
        # Once bound: with --port 0 only the server knows which port it got.
        document = {"kind": "Dashboard", "url": url, "namespace": namespace}
        text = f"modelops dashboard on {url} (Ctrl-C stops it)"
        _say(render(Result(document, text, [url]), output))

    try:
        with talking_to(request("list", CC_KIND, namespace)):
            serve(client, namespace, args.address, args.port, not args.no_browser, announce)
    except OSError as error:
        raise CliError(
            f"cannot serve on {args.address}:{args.port} ({error.strerror or error})",
            "pick another --port, or stop what uses it",
        ) from None
    return 0


def run(args: argparse.Namespace) -> int:
    flags = global_flags(args)
    output = flags["output"] or ("jsonl" if args.verb == "export" else "table")
    if args.verb == "version":
        document = {
            "kind": "Version",
            "clientVersion": plugin_version(),
            "python": platform.python_version(),
        }
        text = f"kubectl-modelops {document['clientVersion']}"
        _say(render(Result(document, text, [document["clientVersion"]]), output))
        return 0
    if args.verb == "completion":
        sys.stdout.write(script(args.shell))
        return 0
    client, namespace = connect(target(args))
    every = bool(flags["all_namespaces"])
    if args.verb in ("get", "status", "report"):
        return get_verb(client, namespace, args, output)
    if args.verb == "dashboard":
        return dashboard_verb(client, namespace, args, output)
    note = ""
    if args.verb == "list":
        result = list_verb(client, namespace, args, every)
    elif args.verb == "approve":
        result = actions.approve(client, args.name, namespace)
    elif args.verb in ("promote", "rollback"):
        result = actions.order(client, args.name, namespace, args.verb)
    elif args.verb in ("pause", "resume"):
        result, note = actions.set_paused(client, args.name, namespace, args.verb == "pause")
    elif args.verb == "history":
        result, note = records.history(client, args.name, namespace, every)
    elif args.verb == "export":
        since = None
        if args.since:
            try:
                since = parse_time(args.since)
            except ValueError:
                raise _usage(
                    f"invalid --since {args.since!r}", "give RFC 3339 or a duration like 24h"
                ) from None
        result = records.export(client, namespace, every, since)
    elif args.verb == "card":
        result = card_verb(client, namespace, args)
    else:  # the parser knows no other verb
        raise _usage(f"unknown verb {args.verb}", "see `kubectl modelops --help`")
    _say(render(result, output))
    _warn(note)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["__complete"]:
        return complete(argv[1:])
    try:
        return run(parse(argv))
    except CliError as error:
        print(error.line(), file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (`| head`) left: say nothing more, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as error:
        if os.environ.get("MODELOPS_DEBUG"):
            raise
        print(
            f"error: kubectl-modelops failed unexpectedly ({type(error).__name__}: {error}); "
            "run again with MODELOPS_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_ERROR
