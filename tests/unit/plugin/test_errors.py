"""Every failure becomes one line, `error: <what>; <fix>`, naming what to grant or install."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from lightkube.core.exceptions import ApiError, ConfigError
from lightkube.models.meta_v1 import Status

from modelops_operator.plugin import main as main_module
from modelops_operator.plugin.connection import Target, connect, load_config
from modelops_operator.plugin.errors import (
    CliError,
    Request,
    describe_api_error,
    describe_config_error,
    describe_transport_error,
    talking_to,
)

from .fakes import not_found

GET_CC = Request("get", "championchallengers.modelops.io", "ChampionChallenger", "risk", "x")
APPROVE = Request(
    "patch",
    "championchallengers.modelops.io",
    "ChampionChallenger",
    "risk",
    "x",
    grant_also="update on championchallengers/approval",
)


def line_of(error: CliError) -> str:
    line = error.line()
    assert "\n" not in line and line.startswith("error: ") and "; " in line
    return line


def test_missing_object_names_kind_and_namespace() -> None:
    line = line_of(describe_api_error(not_found("x"), GET_CC))
    assert line == (
        'error: ChampionChallenger "x" not found in namespace "risk"; check the name and '
        "namespace (-n), or run `kubectl modelops list -A`"
    )


def test_missing_kind_means_a_missing_crd() -> None:
    line = line_of(describe_api_error(not_found(), GET_CC))
    assert "does not serve championchallengers.modelops.io (its CRD is not installed)" in line
    assert "kubectl apply --server-side -f crds/" in line


def test_forbidden_names_the_verb_and_resource_to_grant() -> None:
    message = (
        'championchallengers.modelops.io "x" is forbidden: User "bob" cannot patch resource '
        '"championchallengers" in API group "modelops.io" in the namespace "risk"'
    )
    error = ApiError(status=Status(code=403, message=message, reason="Forbidden"))
    line = line_of(describe_api_error(error, APPROVE))
    assert line.startswith(
        'error: you may not patch championchallengers.modelops.io/x in namespace "risk"'
    )
    assert "ask for a Role granting patch on championchallengers.modelops.io and update on " in line
    assert "championchallengers/approval" in line
    assert "kubectl auth can-i patch championchallengers.modelops.io -n risk" in line


def test_forbidden_across_namespaces() -> None:
    request = Request("list", "lineagerecords.modelops.io", "LineageRecord", None)
    error = ApiError(status=Status(code=403, message="forbidden", reason="Forbidden"))
    line = line_of(describe_api_error(error, request))
    assert "in all namespaces" in line and "can-i list lineagerecords.modelops.io -A" in line


def test_admission_policy_denial_keeps_its_message() -> None:
    message = (
        'championchallengers.modelops.io "x" is forbidden: ValidatingAdmissionPolicy '
        "'modelops-approvals' with binding 'modelops-approvals' denied request: "
        "modelops.io/approved-by must be the requesting user ('bob')"
    )
    error = ApiError(status=Status(code=403, message=message, reason="Forbidden"))
    line = line_of(describe_api_error(error, APPROVE))
    assert "must be the requesting user ('bob')" in line


@pytest.mark.parametrize(
    ("code", "says"),
    [(401, "does not accept your credentials"), (409, "run it again"), (422, "invalid"),
     (500, "answered 500 to get")],
)  # fmt: skip
def test_other_statuses(code: int, says: str) -> None:
    error = ApiError(status=Status(code=code, message="multi\nline message"))
    line = line_of(describe_api_error(error, GET_CC))
    assert says in line and "multi line message" in line


def test_unreachable_and_slow_api_servers() -> None:
    request = httpx2.Request("GET", "https://10.1.2.3:6443/apis/modelops.io/v1alpha1/x?watch=1")
    refused = describe_transport_error(httpx2.ConnectError("connection refused", request=request))
    assert "cannot reach the API server at https://10.1.2.3:6443/ (ConnectError" in refused.line()
    assert "--context" in refused.line()
    slow = describe_transport_error(httpx2.ReadTimeout("timed out", request=request))
    assert "did not answer in time; check the network, or raise --request-timeout" in slow.line()
    no_request = describe_transport_error(httpx2.ConnectError("refused"))
    assert "cannot reach the API server (ConnectError" in no_request.line()


def test_talking_to_turns_exceptions_into_cli_errors() -> None:
    with pytest.raises(CliError, match="not found in namespace"), talking_to(GET_CC):
        raise not_found("x")
    with pytest.raises(CliError, match="cannot reach"), talking_to(GET_CC):
        raise httpx2.ConnectError("refused")


def test_config_errors() -> None:
    assert describe_config_error(ConfigError("Context 'prod' not found"), "/k").line() == (
        "error: context 'prod' not found in /k; list them with `kubectl config get-contexts` "
        "and pass one with --context"
    )
    assert (
        "sets no current context"
        in describe_config_error(
            ConfigError("No current context set and no default provided"), "/k"
        ).line()
    )


def kubeconfig(path: Path, **extra: object) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}
                ],
                **extra,
            }
        )
    )
    return path


def refused(target: Target) -> str:
    with pytest.raises(CliError) as caught:
        load_config(target)
    return line_of(caught.value)


def test_kubeconfig_like_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(CliError) as missing:
        load_config(Target())
    assert missing.value.line() == (
        "error: no kubeconfig found (KUBECONFIG, ~/.kube/config); pass --kubeconfig or set "
        "KUBECONFIG"
    )
    # A KUBECONFIG list skips files that do not exist.
    good = kubeconfig(tmp_path / "good", **{"current-context": "dev"})
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{good}")
    assert load_config(Target()).context_name == "dev"
    _, namespace = connect(Target())
    assert namespace == "ml"  # the context's namespace, unless -n says otherwise
    assert connect(Target(namespace="other"))[1] == "other"

    assert f"context 'prod' not found in {good}; list them" in refused(Target(context="prod"))
    assert "kubeconfig /nowhere not found; pass an existing file" in refused(
        Target(kubeconfig="/nowhere")
    )
    broken = tmp_path / "broken"
    broken.write_text("clusters: [: not yaml")
    unreadable = refused(Target(kubeconfig=str(broken)))
    assert unreadable.startswith(f"error: cannot read kubeconfig {broken} (")
    assert unreadable.endswith("; fix the file, or pass another with --kubeconfig")
    no_current = kubeconfig(tmp_path / "no-current")
    assert "sets no current context; pass --context" in refused(Target(kubeconfig=str(no_current)))
    with pytest.raises(CliError, match="invalid --request-timeout 'soon'") as usage:
        connect(Target(kubeconfig=str(good), request_timeout="soon"))
    assert usage.value.code == 2


def test_main_prints_one_line_and_exits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(target: Target) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(main_module, "connect", interrupted)
    assert main_module.main(["list"]) == 130
    assert capsys.readouterr() == ("", "")  # Ctrl-C says nothing

    def broken(target: Target) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(main_module, "connect", broken)
    monkeypatch.delenv("MODELOPS_DEBUG", raising=False)
    assert main_module.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpectedly (ZeroDivisionError" in err
    monkeypatch.setenv("MODELOPS_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main_module.main(["list"])


def test_a_kubeconfig_list_is_merged_like_kubectl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = tmp_path / "a" / "config"
    first.write_text(
        json.dumps(
            {
                "current-context": "prod",
                "clusters": [
                    {"name": "prod", "cluster": {"server": "https://prod:6443",
                                                 "certificate-authority": "ca.crt"}}
                ],
                "contexts": [{"name": "prod", "context": {"cluster": "prod"}}],
            }
        )
    )  # fmt: skip
    second = tmp_path / "b" / "config"
    second.write_text(
        json.dumps(
            {
                "current-context": "dev",
                "clusters": [
                    {"name": "prod", "cluster": {"server": "https://shadowed:6443"}},
                    {"name": "dev", "cluster": {"server": "https://dev:6443"}},
                ],
                "users": [{"name": "me", "user": {"client-certificate": "me.crt"}}],
                "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "me",
                                                        "namespace": "ml"}}],
            }
        )
    )  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    prod = load_config(Target())  # the first file's current-context wins
    assert prod.context_name == "prod" and prod.cluster.server == "https://prod:6443"
    assert prod.cluster.certificate_auth == str(tmp_path / "a" / "ca.crt")
    dev = load_config(Target(context="dev"))  # a context only the second file has
    assert dev.cluster.server == "https://dev:6443" and dev.namespace == "ml"
    assert dev.user.client_cert == str(tmp_path / "b" / "me.crt")
