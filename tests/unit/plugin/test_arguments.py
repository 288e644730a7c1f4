"""Global flags are valid before or after the verb, and usage mistakes are one line, exit 2."""

from __future__ import annotations

import pytest

from modelops_operator.plugin.arguments import global_flags, parse
from modelops_operator.plugin.errors import EXIT_USAGE, CliError

VERB_LINES = {
    "list": ["list"],
    "list deployments": ["list", "deployments"],
    "get": ["get", "fraud-canary"],
    "status": ["status", "fraud-canary"],
    "report": ["report", "fraud-canary"],
    "approve": ["approve", "fraud-canary"],
    "promote": ["promote", "fraud-canary", "--force"],
    "rollback": ["rollback", "fraud-canary"],
    "pause": ["pause", "fraud-canary"],
    "resume": ["resume", "fraud-canary"],
    "history": ["history", "fraud"],
    "export": ["export"],
    "card": ["card", "fraud"],
    "dashboard": ["dashboard"],
    "version": ["version"],
}
FLAGS = ["-n", "risk", "--context", "prod", "--kubeconfig", "/k", "-o", "json",
         "--request-timeout", "5s"]  # fmt: skip
EXPECTED = {
    "namespace": "risk",
    "all_namespaces": False,
    "context": "prod",
    "kubeconfig": "/k",
    "output": "json",
    "request_timeout": "5s",
}


@pytest.mark.parametrize("line", list(VERB_LINES.values()), ids=list(VERB_LINES))
@pytest.mark.parametrize("where", ["before", "after", "between"])
def test_global_flags_anywhere(line: list[str], where: str) -> None:
    if where == "before":
        argv = [*FLAGS, *line]
    elif where == "after":
        argv = [*line, *FLAGS]
    else:  # some before the verb, the rest after its arguments
        argv = [*FLAGS[:4], *line, *FLAGS[4:]]
    assert global_flags(parse(argv)) == EXPECTED


def test_equals_and_attached_forms() -> None:
    args = parse(["get", "--namespace=risk", "-ojson", "fraud-canary", "--context=prod"])
    flags = global_flags(args)
    assert args.name == "fraud-canary"
    assert (flags["namespace"], flags["output"], flags["context"]) == ("risk", "json", "prod")
    kubectl_style = parse(["card", "fraud", "-n=risk", "-o=yaml", "-d=/tmp/cards"])
    assert global_flags(kubectl_style)["namespace"] == "risk"
    assert global_flags(kubectl_style)["output"] == "yaml"
    assert kubectl_style.directory == "/tmp/cards"


def test_defaults_when_no_flag_is_given() -> None:
    flags = global_flags(parse(["list"]))
    assert flags == {k: (False if k == "all_namespaces" else None) for k in EXPECTED}


@pytest.mark.parametrize("verb", ["list", "history", "export"])
def test_all_namespaces_before_or_after(verb: str) -> None:
    assert global_flags(parse(["-A", verb]))["all_namespaces"] is True
    assert global_flags(parse([verb, "--all-namespaces"]))["all_namespaces"] is True


def test_verb_options() -> None:
    watched = parse(["status", "fraud-canary", "-w", "--timeout", "90s"])
    assert watched.watch is True and watched.timeout == "90s"
    assert parse(["get", "x"]).timeout == "10m"
    assert parse(["card", "fraud", "-d", "/tmp/cards"]).directory == "/tmp/cards"
    board = parse(["dashboard", "--port", "3200", "--no-browser", "--address", "0.0.0.0"])
    assert (board.port, board.no_browser, board.address) == (3200, True, "0.0.0.0")
    assert parse(["export", "--since", "24h"]).since == "24h"
    assert parse(["completion", "zsh"]).shell == "zsh"
    assert parse(["list", "mdep"]).kind == "mdep"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["get"], "the following arguments are required: name"),
        (["promote", "fraud-canary"], "promote skips the remaining gates; pass --force"),
        (["get", "fraud-canary", "-A"], "-A/--all-namespaces does not apply to get"),
        (["explode"], "invalid choice: 'explode'"),
        (["list", "-o", "xml"], "invalid choice: 'xml'"),
        (["completion", "fish"], "invalid choice: 'fish'"),
        (["list", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        ([], "the following arguments are required: VERB"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv: list[str], says: str) -> None:
    with pytest.raises(CliError) as caught:
        parse(argv)
    line = caught.value.line()
    assert caught.value.code == EXIT_USAGE
    assert says in line and "\n" not in line and line.startswith("error: ")
    assert "--help`" in line or "--force" in line or "-n NAMESPACE" in line
