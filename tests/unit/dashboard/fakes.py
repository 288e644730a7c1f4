"""A stand-in for the cluster behind the dashboard (the ClusterReader's reads), holding the
sample objects, and a model that answers like the iris example: enough to drive the server and
the page without an API server."""

from __future__ import annotations

from typing import Any

from modelops_operator.dashboard.cluster import Answer, ClusterError

from .samples import CC, IRIS_METADATA, MDEP, RECORD, fresh


class FakeCluster:
    def __init__(self) -> None:
        self.mdeps = [fresh(MDEP)]
        self.ccs = [fresh(CC)]
        self.records_by_deployment: dict[str, list[dict[str, Any]] | None] = {"iris": [RECORD]}
        self.requests: list[dict[str, Any]] = []  # what reached the model
        self.model_status = 200

    def deployments(self, notices: list[str]) -> list[dict[str, Any]]:
        return self.mdeps

    def challenges(self, notices: list[str]) -> list[dict[str, Any]]:
        return self.ccs

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        for mdep in self.mdeps:
            if (mdep["metadata"]["namespace"], mdep["metadata"]["name"]) == (namespace, name):
                return mdep
        raise ClusterError(404, f'modeldeployments.modelops.io "{name}" not found')

    def challenges_in(self, namespace: str) -> list[dict[str, Any]]:
        return [cc for cc in self.ccs if cc["metadata"]["namespace"] == namespace]

    def records(self, namespace: str, name: str, notices: list[str]) -> list | None:
        found = self.records_by_deployment.get(name, [])
        if found is None:
            notices.append("lineage records unavailable: the LineageRecord CRD is not installed")
        return found

    def whoami(self) -> dict[str, str]:
        return {"user": "alice", "server": "https://127.0.0.1:6443", "context": "dev",
                "namespace": ""}

    def model_target(self, namespace: str, name: str) -> tuple[str, str, dict[str, Any]]:
        self.deployment(namespace, name)
        return "iris", f"/api/v1/namespaces/{namespace}/services/{name}:80/proxy", IRIS_METADATA

    def infer(self, namespace: str, name: str, request: dict[str, Any]) -> Answer:
        self.requests.append(request)
        if self.model_status != 200:
            return Answer(self.model_status, {"error": "inputs[0].shape: wrong"}, 3.0)
        (row,) = [t["data"] for t in request["inputs"]]
        kind = 0.0 if row[2] < 2.5 else 1.0  # petal length, as the iris model would split
        return Answer(200, {
            "model_name": "iris", "model_version": "1.1.0", "id": request["id"],
            "outputs": [{"name": "predict", "datatype": "FP64", "shape": [1], "data": [kind]}],
        }, 4.2)  # fmt: skip
