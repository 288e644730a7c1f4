"""Shell completion: the scripts for bash and zsh, and the hidden `__complete` verb they call.

`__complete` speaks cobra's protocol (candidates one per line, then `:<directive>`), which is
also what kubectl ≥ 1.26 expects from a `kubectl_complete-<plugin>` program; so
`kubectl_complete-modelops` is the same function, and `kubectl modelops <TAB>` completes too.
Resource names come from the cluster, with the -n/--context/--kubeconfig given on the line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from ..constants import CC_KIND, MDEP_KIND
from .arguments import LIST_KINDS, OUTPUTS, SHELLS, build_parser
from .connection import Target, connect, load_kubeconfig
from .resources import list_objects

NO_FILE_COMPLETION = 4  # cobra's ShellCompDirectiveNoFileComp
FILE_COMPLETION = 0  # ShellCompDirectiveDefault: let the shell complete paths
VALUE_FLAGS = {
    "-n": "namespace",
    "--namespace": "namespace",
    "--context": "context",
    "--kubeconfig": "file",
    "-o": "output",
    "--output": "output",
    "-d": "file",
    "--directory": "file",
    "--request-timeout": "none",
    "--timeout": "none",
    "--since": "none",
    "--port": "none",
    "--address": "none",
}
TARGET_FLAGS = {
    "-n": "namespace",
    "--namespace": "namespace",
    "--context": "context",
    "--kubeconfig": "kubeconfig",
}
# What the positional argument of each verb names.
NAMES_BY_VERB = {
    "get": (CC_KIND,),
    "status": (CC_KIND,),
    "report": (CC_KIND,),
    "approve": (CC_KIND,),
    "rollback": (CC_KIND,),
    "pause": (CC_KIND,),
    "resume": (CC_KIND,),
    "promote": (CC_KIND,),
    "history": (MDEP_KIND, CC_KIND),
    "card": (MDEP_KIND,),
}

BASH = """\
# kubectl-modelops completion for bash: source <(kubectl-modelops completion bash)
_kubectl_modelops() {
    local IFS=$'\\n' lines directive
    lines=($(kubectl-modelops __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
    directive="${lines[${#lines[@]}-1]}"
    unset 'lines[${#lines[@]}-1]'
    COMPREPLY=("${lines[@]}")
    if [[ ${#COMPREPLY[@]} -eq 0 && "$directive" == ":0" ]]; then
        COMPREPLY=($(compgen -f -- "${COMP_WORDS[COMP_CWORD]}"))
    fi
}
complete -F _kubectl_modelops kubectl-modelops
"""

ZSH = """\
#compdef kubectl-modelops
# kubectl-modelops completion for zsh: source <(kubectl-modelops completion zsh)
_kubectl_modelops() {
    local -a lines
    lines=("${(@f)$(kubectl-modelops __complete "${(@)words[2,$CURRENT]}" 2>/dev/null)}")
    local directive="${lines[-1]}"
    lines=("${(@)lines[1,-2]}")
    if (( ${#lines} == 0 )) && [[ "$directive" == ":0" ]]; then
        _files
    else
        compadd -a lines
    fi
}
compdef _kubectl_modelops kubectl-modelops
"""


def script(shell: str) -> str:
    return BASH if shell == "bash" else ZSH


def _verbs() -> list[str]:
    parser = build_parser()
    for action in parser._actions:  # argparse keeps subcommands only here
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            return list(choices)
    return []


def _flags() -> list[str]:
    return sorted({*VALUE_FLAGS, "-A", "--all-namespaces", "--watch", "-w", "--force",
                   "--no-browser", "--help"})  # fmt: skip


def _flag_values(words: list[str]) -> Target:
    """The cluster-choosing flags already typed, so names come from where the command will look."""
    values: dict[str, str | None] = {}
    for i, word in enumerate(words[:-1]):
        flag, has_inline, inline = word.partition("=")
        if flag in TARGET_FLAGS:
            following = words[i + 1] if i + 1 < len(words) - 1 else ""
            values[TARGET_FLAGS[flag]] = (inline if has_inline else following) or None
    return Target(request_timeout="5s", **values)


def _positionals(words: list[str]) -> list[str]:
    """The words before the one being completed that are neither flags nor flag values."""
    found, skip = [], False
    for word in words[:-1]:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in VALUE_FLAGS and "=" not in word
        else:
            found.append(word)
    return found


def _names(target: Target, kinds: Iterable[str]) -> list[str]:
    client, namespace = connect(target)
    names: list[str] = []
    for kind in kinds:
        names += [o["metadata"]["name"] for o in list_objects(client, kind, namespace)]
    return names


def _contexts(target: Target) -> list[str]:
    return sorted(load_kubeconfig(target)[0].contexts)


def _namespaces(target: Target) -> list[str]:
    from lightkube.resources.core_v1 import Namespace

    client, _ = connect(target)
    return [ns.metadata.name for ns in client.list(Namespace) if ns.metadata and ns.metadata.name]


def candidates(words: list[str]) -> tuple[list[str], int]:
    """(what may come in place of the last word, cobra directive)."""
    words = words or [""]
    current = words[-1]
    previous = words[-2] if len(words) > 1 else ""
    target = _flag_values(words)
    if previous in VALUE_FLAGS:
        wanted = VALUE_FLAGS[previous]
        if wanted == "file":
            return [], FILE_COMPLETION
        if wanted == "output":
            return list(OUTPUTS), NO_FILE_COMPLETION
        if wanted == "context":
            return _contexts(target), NO_FILE_COMPLETION
        if wanted == "namespace":
            return _namespaces(target), NO_FILE_COMPLETION
        return [], NO_FILE_COMPLETION
    if current.startswith("-"):
        return _flags(), NO_FILE_COMPLETION
    positionals = _positionals(words)
    if not positionals:
        return [v for v in _verbs() if not v.startswith("_")], NO_FILE_COMPLETION
    verb = positionals[0]
    if len(positionals) > 1:
        return [], NO_FILE_COMPLETION
    if verb == "list":
        return sorted(LIST_KINDS), NO_FILE_COMPLETION
    if verb == "completion":
        return list(SHELLS), NO_FILE_COMPLETION
    if verb in NAMES_BY_VERB:
        return _names(target, NAMES_BY_VERB[verb]), NO_FILE_COMPLETION
    return [], NO_FILE_COMPLETION


def complete(words: list[str]) -> int:
    """Print the candidates for the last word (filtered by what it starts with), cobra-style."""
    try:
        found, directive = candidates(words)
    except Exception:  # a shell completing a word must never see an error: offer nothing
        found, directive = [], NO_FILE_COMPLETION
    current = words[-1] if words else ""
    for candidate in found:
        if candidate.startswith(current):
            print(candidate)
    print(f":{directive}")
    return 0


def kubectl_complete_main() -> int:
    """`kubectl_complete-modelops`: kubectl ≥ 1.26 calls it with the words after `modelops`."""
    return complete(sys.argv[1:])
