"""Names that cross part boundaries (operator, serving image, chart, docs): change them together."""

from __future__ import annotations

GROUP = "modelops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

MDEP_KIND = "ModelDeployment"
MDEP_PLURAL = "modeldeployments"
CC_KIND = "ChampionChallenger"
CC_PLURAL = "championchallengers"
RECORD_KIND = "LineageRecord"
RECORD_PLURAL = "lineagerecords"

# Server-side apply field manager: stable forever, or ownership of fields is lost on upgrade.
FIELD_MANAGER = "modelops"

# One image carries the model server, the metrics sidecar and the fetch init container.
DEFAULT_SERVING_IMAGE = "modelops/modelops-serving:0.1.0"

# Ports: model server 8080, sidecar traffic 8000, sidecar metrics 9090.
MODEL_PORT = 8080
SIDECAR_PORT = 8000
METRICS_PORT = 9090
SERVICE_PORT = 80

# Where the fetch init container writes the verified model, read by the model server.
MODEL_DIR = "/models"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_DEPLOYMENT = "modelops.io/deployment"
LABEL_ROLE = "modelops.io/role"
LABEL_MODEL_VERSION = "modelops.io/model-version"
# Lineage records are selected by deployment, challenge and event as well.
LABEL_CHALLENGE = "modelops.io/challenge"
LABEL_EVENT = "modelops.io/event"

POD_APP_NAME = "modelops-model"
MANAGED_BY = "modelops"

ROLE_CHAMPION = "champion"
ROLE_CHALLENGER = "challenger"
ROLE_ROUTER = "router"
ROUTER_APP_NAME = "modelops-router"
ROUTER_CONFIG_DIR = "/etc/modelops/router"

# Approvals and commands (kubectl modelops); the chart's ValidatingAdmissionPolicy checks that
# the *-by annotation names the user making the request, so they cannot be forged.
ANNOTATION_APPROVED_VERSION = f"{GROUP}/approved-version"
ANNOTATION_APPROVED_BY = f"{GROUP}/approved-by"
ANNOTATION_COMMAND = f"{GROUP}/command"
ANNOTATION_COMMAND_BY = f"{GROUP}/command-by"
