"""The dashboard server over HTTP: what it serves, and what it refuses (another website driving
it through the user's browser, malformed or oversized requests)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from lightkube.core.exceptions import ApiError

from modelops_operator.dashboard.api import DashboardApi
from modelops_operator.dashboard.cluster import ClusterReader, service_address
from modelops_operator.dashboard.server import MAX_BODY_BYTES, TOKEN_HEADER, DashboardServer

from .fakes import FakeCluster
from .samples import MDEP, fresh

TOKEN = "test-token-0123456789"
VALUES = {"values": {"input-0": ["5.1", "3.5", "1.4", "0.2"]}}


class Running:
    def __init__(self, server: DashboardServer, cluster: FakeCluster) -> None:
        self.server, self.cluster = server, cluster
        self.port = int(server.server_address[1])
        self.host = f"127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = {"Host": self.host, **(headers or {})}
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        kind = response.getheader("Content-Type") or ""
        content = json.loads(raw) if kind.startswith("application/json") else raw.decode()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, content

    def predict(self, payload: Any = VALUES, **headers: str) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        sent = {"Content-Type": "application/json", TOKEN_HEADER: TOKEN,
                "Origin": f"http://{self.host}", **headers}
        status, _, content = self.request("POST", "/api/predict/ml/iris", body, sent)
        return status, content


@pytest.fixture
def running() -> Iterator[Running]:
    cluster = FakeCluster()
    server = DashboardServer("127.0.0.1", 0, DashboardApi(cluster), TOKEN)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Running(server, cluster)
    finally:
        server.shutdown()
        server.server_close()


def test_the_page_carries_the_token_and_may_load_scripts_from_this_server_only(
    running: Running,
) -> None:
    status, headers, page = running.request("GET", "/")
    assert status == 200 and f'content="{TOKEN}"' in page
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    status, headers, script = running.request("GET", "/static/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    assert "X-Modelops-Token" in script
    status, headers, _ = running.request("GET", "/favicon.ico")
    assert status == 200 and headers["content-type"] == "image/svg+xml"


def test_the_json_api_shows_the_live_challenge_and_the_deployments(running: Running) -> None:
    status, _, challenges = running.request("GET", "/api/challenges")
    assert status == 200
    (live,) = challenges["items"]
    assert (live["name"], live["phase"], live["live"]) == ("iris-canary", "Progressing", True)
    status, _, deployments = running.request("GET", "/api/deployments")
    assert [d["name"] for d in deployments["items"]] == ["iris"]
    status, _, detail = running.request("GET", "/api/deployments/ml/iris")
    assert detail["history"]["records"][0]["event"] == "RolledBack"
    status, _, metadata = running.request("GET", "/api/metadata/ml/iris")
    assert metadata["form"]["inputs"][0]["kind"] == "row"


def test_records_unavailable_become_a_notice_not_an_error(running: Running) -> None:
    running.cluster.records_by_deployment["iris"] = None
    status, _, detail = running.request("GET", "/api/deployments/ml/iris")
    assert status == 200 and detail["history"]["records"] is None
    assert "CRD is not installed" in detail["notices"][0]


def test_the_model_card_is_served_as_a_sandboxed_page(running: Running) -> None:
    status, headers, page = running.request("GET", "/cards/ml/iris")
    assert status == 200 and "Model card: ml/iris" in page
    assert "sandbox" in headers["content-security-policy"]


def test_a_prediction_goes_to_the_model_as_a_checked_v2_request(running: Running) -> None:
    status, answer = running.predict()
    assert status == 200, answer
    assert answer["modelVersion"] == "1.1.0" and answer["outputs"][0]["data"] == [0.0]
    (sent,) = running.cluster.requests
    assert sent["inputs"][0] == {"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                 "data": [5.1, 3.5, 1.4, 0.2]}


def test_values_that_do_not_fit_never_reach_the_model(running: Running) -> None:
    status, answer = running.predict({"values": {"input-0": ["1", "2", "x", "4"]}})
    assert status == 400 and "is not a number" in answer["error"]
    assert running.cluster.requests == []


def test_a_model_refusing_the_request_is_a_422_with_its_reason(running: Running) -> None:
    running.cluster.model_status = 400
    status, answer = running.predict()
    assert status == 422 and "inputs[0].shape" in answer["error"]


@pytest.mark.parametrize(("headers", "why"), [
    ({TOKEN_HEADER: ""}, "missing or wrong"),
    ({TOKEN_HEADER: "guessed"}, "missing or wrong"),
    ({"Origin": "https://evil.example"}, "cross-origin"),
    ({"Origin": "null"}, "cross-origin"),
    ({"Sec-Fetch-Site": "cross-site"}, "cross-site"),
])  # fmt: skip
def test_a_post_from_another_site_is_refused(
    running: Running, headers: dict[str, str], why: str
) -> None:
    status, answer = running.predict(**headers)
    assert status == 403 and why in answer["error"]
    assert running.cluster.requests == []


def test_a_page_on_another_host_name_cannot_read_through_dns_rebinding(running: Running) -> None:
    status, _, answer = running.request(
        "GET", "/api/challenges", headers={"Host": f"attacker.example:{running.port}"}
    )
    assert status == 403 and "Host" in answer["error"]
    # localhost is the same machine: allowed.
    status, _, _ = running.request("GET", "/api/challenges",
                                   headers={"Host": f"localhost:{running.port}"})
    assert status == 200


@pytest.mark.parametrize(("body", "headers", "status"), [
    (b"{}", {"Content-Type": "text/plain"}, 415),
    (b"{not json", {}, 400),
    (b"x" * (MAX_BODY_BYTES + 1), {}, 413),
])  # fmt: skip
def test_malformed_posts_get_a_clear_4xx(
    running: Running, body: bytes, headers: dict[str, str], status: int
) -> None:
    sent = {"Content-Type": "application/json", TOKEN_HEADER: TOKEN, **headers}
    got, _, answer = running.request("POST", "/api/predict/ml/iris", body, sent)
    assert got == status and answer["error"]


def test_a_post_without_content_length_is_refused(running: Running) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    connection.putrequest("POST", "/api/predict/ml/iris", skip_host=True)
    for name, value in {"Host": running.host, "Content-Type": "application/json",
                        TOKEN_HEADER: TOKEN}.items():
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 411
    connection.close()


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/deployments/ML/iris", 404),  # not a Kubernetes name
    ("GET", "/api/deployments/ml/missing", 404),
    ("GET", "/api/nothing", 404),
    ("GET", "/static/../server.py", 404),
    ("GET", "/api/predict/ml/iris", 405),
    ("PUT", "/api/deployments/ml/iris", 405),
    ("GET", "/" + "a" * 3000, 414),
])  # fmt: skip
def test_unknown_paths_and_methods(running: Running, method: str, path: str, status: int) -> None:
    got, _, answer = running.request(method, path)
    assert got == status and answer["error"]


def test_only_loopback_addresses_are_bound() -> None:
    with pytest.raises(ValueError, match="loopback"):
        DashboardServer("0.0.0.0", 0, DashboardApi(FakeCluster()), TOKEN)  # type: ignore[arg-type]


def test_the_service_comes_from_the_endpoint_or_the_operators_naming() -> None:
    assert service_address(MDEP) == ("iris", "80")
    custom = fresh(MDEP)
    custom["status"]["endpoint"] = "http://front.ml.svc.cluster.local:8080"
    assert service_address(custom) == ("front", "8080")
    custom["status"].pop("endpoint")
    assert service_address(custom) == ("iris", "80")


def api_error(code: int, message: str) -> ApiError:
    request = httpx2.Request("GET", "https://api/x")
    response = httpx2.Response(code, request=request, json={
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
        "message": message})  # fmt: skip
    return ApiError(request=request, response=response)


class RefusingClient:
    """A lightkube Client whose user may list in their own namespace only, and for whom the
    LineageRecord CRD is not installed."""

    namespace = "mine"

    def __init__(self) -> None:
        self.listed: list[str] = []

    def list(self, resource: Any, namespace: str, labels: Any = None) -> list[dict[str, Any]]:
        if resource._api_info.plural == "lineagerecords":
            raise api_error(404, "the server could not find the requested resource")
        self.listed.append(namespace)
        if namespace == "*":
            raise api_error(403, "forbidden")
        return [fresh(MDEP)]


def test_a_user_who_may_not_list_every_namespace_sees_their_own_with_a_notice() -> None:
    client = RefusingClient()
    reader = ClusterReader(client, None)  # type: ignore[arg-type]
    notices: list[str] = []
    assert [m["metadata"]["name"] for m in reader.deployments(notices)] == ["iris"]
    assert client.listed == ["*", "mine"]
    assert "showing namespace mine" in notices[0]


def test_missing_lineage_crd_is_a_notice() -> None:
    reader = ClusterReader(RefusingClient(), "mine")  # type: ignore[arg-type]
    notices: list[str] = []
    assert reader.records("mine", "iris", notices) is None
    assert notices == ["lineage records unavailable: the LineageRecord CRD is not installed"]
