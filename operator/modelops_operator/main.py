"""The module `kopf run` loads: `kopf run --standalone --all-namespaces -m modelops_operator.main`.

Importing the handler modules registers them with kopf; nothing else happens at import time.
"""

from __future__ import annotations

from .handlers import championchallenger, modeldeployment, monitoring, operator

__all__ = ["championchallenger", "modeldeployment", "monitoring", "operator"]
