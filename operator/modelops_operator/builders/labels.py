"""The labels every child object of a ModelDeployment carries (a leaf module: the builders of
pods, Secrets and Services all use it)."""

from __future__ import annotations

from ..constants import (
    LABEL_DEPLOYMENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    POD_APP_NAME,
)


def object_labels(deployment: str) -> dict[str, str]:
    """Labels on every child object: how the operator's watches find them again."""
    return {
        LABEL_NAME: POD_APP_NAME,
        LABEL_INSTANCE: deployment,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_DEPLOYMENT: deployment,
    }
