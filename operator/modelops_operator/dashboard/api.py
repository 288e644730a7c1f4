"""The dashboard's JSON API and the model card page: paths in, (status, content) out.

    GET  /api/whoami                     who the API server says you are, and the scope
    GET  /api/deployments                every ModelDeployment in scope
    GET  /api/challenges                 every ChampionChallenger, live ones first
    GET  /api/deployments/<ns>/<name>    one deployment: challenges, monitoring, history
    GET  /api/metadata/<ns>/<name>       the model's V2 metadata and the form built from it
    POST /api/predict/<ns>/<name>        {"values": {input: [typed strings]}} -> the answer
    GET  /cards/<ns>/<name>              the model card (lineage/card.py) as one HTML page

Transport, limits and the checks on who may call are server.py's; this module only answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..lineage.card import build_card, render_html
from .cluster import ClusterError, ClusterReader, brief
from .predict import FormError, infer_request, prediction_form, prediction_result
from .views import challenge_view, deployment_detail, deployment_view, sort_challenges

# Namespaces and object names: DNS-1123 subdomains (our kinds' names are stricter still).
NAME = r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"
JSON_TYPE = "application/json"
# The card is our own HTML with its style inline and SVG plots; it runs no script.
CARD_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, json.dumps(payload, default=str).encode())


def error_reply(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message})


class DashboardApi:
    def __init__(self, reader: ClusterReader) -> None:
        self.reader = reader
        one = rf"/({NAME})/({NAME})"
        self._gets: list[tuple[re.Pattern[str], Callable[..., Reply]]] = [
            (re.compile(r"/api/whoami"), self.whoami),
            (re.compile(r"/api/deployments"), self.deployments),
            (re.compile(r"/api/challenges"), self.challenges),
            (re.compile(r"/api/deployments" + one), self.deployment),
            (re.compile(r"/api/metadata" + one), self.metadata),
            (re.compile(r"/cards" + one), self.card),
        ]
        self._posts = [(re.compile(r"/api/predict" + one), self.predict)]

    def handles(self, path: str) -> bool:
        return path.startswith(("/api/", "/cards/"))

    def get(self, path: str) -> Reply:
        return self._dispatch(self._gets, path)

    def post(self, path: str, body: Any) -> Reply:
        return self._dispatch(self._posts, path, body)

    def _dispatch(self, routes: list[tuple[re.Pattern[str], Callable[..., Reply]]],
                  path: str, *extra: Any) -> Reply:  # fmt: skip
        for pattern, answer in routes:
            match = pattern.fullmatch(path)
            if match:
                try:
                    return answer(*match.groups(), *extra)
                except ClusterError as error:
                    return error_reply(error.status, str(error))
        other = self._posts if routes is self._gets else self._gets
        if any(pattern.fullmatch(path) for pattern, _ in other):
            return error_reply(405, "method not allowed here")
        return error_reply(404, f"no such page: {path[:200]}")

    # ---------------------------------------------------------------------------- reads
    def whoami(self) -> Reply:
        return json_reply(200, self.reader.whoami())

    def deployments(self) -> Reply:
        notices: list[str] = []
        challenges = self.reader.challenges(notices)
        items = [deployment_view(m, challenges) for m in self.reader.deployments(notices)]
        items.sort(key=lambda d: (d["namespace"], d["name"]))
        return json_reply(200, {"items": items, "notices": sorted(set(notices))})

    def challenges(self) -> Reply:
        notices: list[str] = []
        items = sort_challenges([challenge_view(cc) for cc in self.reader.challenges(notices)])
        return json_reply(200, {"items": items, "notices": notices})

    def deployment(self, namespace: str, name: str) -> Reply:
        notices: list[str] = []
        mdep = self.reader.deployment(namespace, name)
        challenges = self.reader.challenges_in(namespace)
        records = self.reader.records(namespace, name, notices)
        return json_reply(200, {**deployment_detail(mdep, challenges, records), "notices": notices})

    def metadata(self, namespace: str, name: str) -> Reply:
        model, _, metadata = self.reader.model_target(namespace, name)
        return json_reply(200, {"model": model, "form": prediction_form(metadata)})

    def card(self, namespace: str, name: str) -> Reply:
        mdep = self.reader.deployment(namespace, name)
        challenges = [cc for cc in self.reader.challenges_in(namespace)
                      if (cc.get("spec") or {}).get("targetRef", {}).get("name") == name]
        records = self.reader.records(namespace, name, []) or []
        page = render_html(build_card(mdep, challenges, records))
        return Reply(200, page.encode(), "text/html; charset=utf-8",
                     {"Content-Security-Policy": CARD_POLICY})  # fmt: skip

    # ---------------------------------------------------------------------------- predict
    def predict(self, namespace: str, name: str, body: Any) -> Reply:
        values = body.get("values") if isinstance(body, dict) else None
        _, _, metadata = self.reader.model_target(namespace, name)
        try:
            request = infer_request(prediction_form(metadata), values)
        except FormError as error:
            return error_reply(400, str(error))
        answer = self.reader.infer(namespace, name, request)
        if answer.status == 200 and isinstance(answer.body, dict):
            return json_reply(200, prediction_result(answer.body, answer.latency_ms))
        if answer.status in (401, 403):
            return error_reply(403, f"the API server refused the prediction: {brief(answer.body)}")
        if 400 <= answer.status < 500 and answer.status != 404:
            return error_reply(422, f"the model refused the request (HTTP {answer.status}): "
                                    f"{brief(answer.body)}")  # fmt: skip
        return error_reply(502, f"no answer from the model (HTTP {answer.status}): "
                                f"{brief(answer.body)}")  # fmt: skip
