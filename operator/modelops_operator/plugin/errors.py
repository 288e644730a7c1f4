"""Every failure of the plugin as one line, `error: <what>; <fix>`, never a traceback.

The API calls of a verb run inside `talking_to(...)`, which says what was being asked of whom;
an exception that escapes is turned into a `CliError` naming that request, so a 403 says which
verb on which resource to grant and a 404 which kind was missing where.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import httpx2
from lightkube.core.exceptions import ApiError, ConfigError

# Exit codes: 1 for what the cluster or the user's objects refused, 2 for a wrong command line,
# 130 for Ctrl-C (the shell's own convention for SIGINT).
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LIST_EVERYWHERE = "kubectl modelops list -A"


class CliError(Exception):
    """A failure the user can act on: what went wrong and how to fix it."""

    def __init__(self, what: str, fix: str = "", *, code: int = EXIT_ERROR) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix
        self.code = code

    def line(self) -> str:
        text = f"error: {self.what}" + (f"; {self.fix}" if self.fix else "")
        return " ".join(text.split())  # one line, whatever the server's message held


@dataclass(frozen=True)
class Request:
    """What a verb was asking the API server when something failed."""

    verb: str  # the RBAC verb: get, list, watch, patch, create
    resource: str  # plural.group, as RBAC and `kubectl auth can-i` name it
    kind: str  # for people: ChampionChallenger
    namespace: str | None  # None: all namespaces
    name: str = ""
    grant_also: str = ""  # a subresource permission the admission policy checks too


@contextmanager
def talking_to(request: Request) -> Iterator[None]:
    try:
        yield
    except ApiError as error:
        raise describe_api_error(error, request) from None
    except httpx2.HTTPError as error:
        raise describe_transport_error(error) from None


def _where(namespace: str | None) -> str:
    return f'namespace "{namespace}"' if namespace else "all namespaces"


def describe_api_error(error: ApiError, request: Request) -> CliError:
    status = error.status
    code = status.code or 0
    message = status.message or str(error)
    details = status.details
    if code == 404:
        if details is not None and details.name:
            return CliError(
                f'{request.kind} "{details.name}" not found in {_where(request.namespace)}',
                f"check the name and namespace (-n), or run `{LIST_EVERYWHERE}`",
            )
        # No name in the answer: the API server does not serve the kind at all.
        return CliError(
            f"the cluster does not serve {request.resource} (its CRD is not installed)",
            "install the modelops chart, or `kubectl apply --server-side -f crds/`",
        )
    if code == 403:
        if "denied request" in message or "ValidatingAdmissionPolicy" in message:
            # The approval policy's own message already says who may do what.
            return CliError(message, "see docs/cli.md (approvals and orders)")
        target = f"{request.resource}" + (f"/{request.name}" if request.name else "")
        grant = f"{request.verb} on {request.resource}"
        if request.grant_also:
            grant += f" and {request.grant_also}"
        namespace_flag = f" -n {request.namespace}" if request.namespace else " -A"
        return CliError(
            f"you may not {request.verb} {target} in {_where(request.namespace)} ({message})",
            f"ask for a Role granting {grant} "
            f"(check: kubectl auth can-i {request.verb} {request.resource}{namespace_flag})",
        )
    if code == 401:
        return CliError(
            f"the API server does not accept your credentials ({message})",
            "log in again or refresh the token in your kubeconfig",
        )
    if code == 409:
        return CliError(message, "someone changed the object at the same time; run it again")
    if code in (400, 422):
        return CliError(message, "the API server refused the change as invalid")
    return CliError(
        f"the API server answered {code} to {request.verb} {request.resource}: {message}",
        "retry, or check the API server's health (kubectl get --raw /readyz)",
    )


def describe_transport_error(error: httpx2.HTTPError) -> CliError:
    url = ""
    # An error raised before any request was built has no request (RuntimeError).
    with suppress(RuntimeError):
        url = str(error.request.url.copy_with(path="/", query=None))
    where = f" at {url}" if url else ""
    if isinstance(error, httpx2.TimeoutException):
        return CliError(
            f"the API server{where} did not answer in time",
            "check the network, or raise --request-timeout",
        )
    return CliError(
        f"cannot reach the API server{where} ({type(error).__name__}: {error})",
        "check that the cluster is up and the context is right (--context, kubectl config "
        "current-context)",
    )


def describe_config_error(error: ConfigError, source: str) -> CliError:
    message = str(error)
    if "Context" in message and "not found" in message:
        return CliError(
            f"{message.replace('Context', 'context', 1)} in {source}",
            "list them with `kubectl config get-contexts` and pass one with --context",
        )
    if "No current context" in message:
        return CliError(
            f"{source} sets no current context",
            "pass --context, or `kubectl config use-context NAME`",
        )
    return CliError(
        f"cannot use kubeconfig {source}: {message}",
        "fix the file, or pass another with --kubeconfig",
    )
