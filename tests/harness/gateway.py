"""What a Gateway API implementation writes on a route it has taken: no Gateway runs in these
tests, so they write it themselves, as its controller would."""

from __future__ import annotations

from typing import Any


def accepted_status(generation: int, gateway: str = "public",
                    namespace: str | None = None) -> dict[str, Any]:
    """An HTTPRoute's `status`: Gateway `gateway` Accepted it and resolved its backends at
    `generation`."""
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                              "name": gateway}
    if namespace is not None:
        parent["namespace"] = namespace
    conditions = [{"type": kind, "status": "True", "reason": kind,
                   "message": "accepted by the tests' Gateway controller",
                   "observedGeneration": generation,
                   "lastTransitionTime": "2026-01-01T00:00:00Z"}
                  for kind in ("Accepted", "ResolvedRefs")]  # fmt: skip
    return {"parents": [{"parentRef": parent, "controllerName": "modelops.io/test-gateway",
                         "conditions": conditions}]}
