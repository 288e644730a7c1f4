"""ModelDeployment: one model endpoint with a stable name and Service (docs/api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from .base import (
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    DURATION,
    LABEL_VALUE,
    KubeModel,
    ObservedStatus,
    cel,
    validations,
)

# The operator derives "<name>-challenger" (11 more characters) from the object's name, and
# Service names must be DNS-1035 labels of at most 63 characters.
MAX_NAME_LENGTH = 52

Quantity = int | str

_QUANTITY_RULE = cel(
    "isQuantity(string(self))",
    "must be a Kubernetes quantity such as 500m, 2, 512Mi or 1Gi",
)


class ModelSource(KubeModel):
    """Which model to serve: where its file is, its format, and the digest that proves it."""

    name: str = Field(
        description="Model name, as clients address it in /v2/models/{name}/infer. A DNS-1123 "
        "label (lower-case letters, digits and '-').",
        min_length=1,
        max_length=63,
        pattern=DNS1123_LABEL,
    )
    version: str = Field(
        description="Model version, for example '1.4.0' or '2024-06-01'. Used as the pod label "
        "modelops.io/model-version, so it must be a label value (at most 63 characters of "
        "letters, digits, '-', '_' and '.', starting and ending alphanumeric). Changing it rolls "
        "the model out (or starts a challenge when a ChampionChallenger targets this object).",
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE,
    )
    uri: str = Field(
        description="Where the model file is: file:///path (inside the image), "
        "pvc://<claim>/<path>, http(s)://host/path or s3://bucket/key. Fetched by an init "
        "container and verified against digest before the server loads it.",
        min_length=1,
        max_length=2048,
        json_schema_extra=validations(
            cel(
                "self.matches('^(file|pvc|http|https|s3)://.+')",
                "spec.model.uri must start with one of file://, pvc://, http://, https://, s3:// "
                "and name a location after it",
            )
        ),
    )
    format: Literal["sklearn", "onnx", "custom"] = Field(
        description="Serialization format of the model file: sklearn (skops), onnx, or custom "
        "(a Python class shipped in a custom runtime image)."
    )
    digest: str = Field(
        description="SHA-256 digest of the model file as sha256:<64 lower-case hex digits>. The "
        "pod refuses to serve a file that does not match.",
        max_length=71,
        json_schema_extra=validations(
            cel(
                "self.matches('^sha256:[0-9a-f]{64}$')",
                "spec.model.digest must be sha256: followed by 64 lower-case hex digits",
            )
        ),
    )
    credentials_secret: str | None = Field(
        None,
        description="Name of a Secret in the same namespace whose keys become environment "
        "variables of the fetch container, for example AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL_S3 for s3:// URIs. Only for "
        "s3:// and http(s):// URIs.",
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.uri.startsWith('pvc://') || self.uri.matches('^pvc://[a-z0-9][-a-z0-9.]*/.+')",
                "spec.model.uri pvc:// must look like pvc://<claim-name>/<path/in/volume>",
                field_path=".uri",
            ),
            cel(
                "!has(self.credentialsSecret) || self.uri.startsWith('s3://') "
                "|| self.uri.startsWith('http://') || self.uri.startsWith('https://')",
                "spec.model.credentialsSecret is only used with s3:// and http(s):// URIs",
                field_path=".credentialsSecret",
            ),
        )
    )


class ResourceAmounts(KubeModel):
    """CPU and memory amounts, as Kubernetes quantities."""

    cpu: Quantity | None = Field(
        None,
        description="CPU, in cores or millicores: 1, 0.5, 500m.",
        json_schema_extra=validations(
            cel(_QUANTITY_RULE["rule"], "cpu " + _QUANTITY_RULE["message"])
        ),
    )
    memory: Quantity | None = Field(
        None,
        description="Memory, in bytes with a suffix: 512Mi, 2Gi.",
        json_schema_extra=validations(
            cel(_QUANTITY_RULE["rule"], "memory " + _QUANTITY_RULE["message"])
        ),
    )


def _not_above_limit(resource: str) -> dict[str, str]:
    both = (
        f"has(self.requests) && has(self.limits) && has(self.requests.{resource}) "
        f"&& has(self.limits.{resource})"
    )
    compare = (
        f"quantity(string(self.requests.{resource}))"
        f".compareTo(quantity(string(self.limits.{resource}))) <= 0"
    )
    return cel(
        f"!({both}) || {compare}",
        f"spec.runtime.resources.requests.{resource} must not exceed "
        f"spec.runtime.resources.limits.{resource}",
        field_path=f".requests.{resource}",
    )


class Resources(KubeModel):
    """Compute resources of the model-server container."""

    requests: ResourceAmounts | None = Field(
        None, description="Guaranteed amounts, used for scheduling."
    )
    limits: ResourceAmounts | None = Field(
        None, description="Upper bounds; memory above the limit kills the container."
    )

    model_config = ConfigDict(
        json_schema_extra=validations(_not_above_limit("cpu"), _not_above_limit("memory"))
    )


class EnvVar(KubeModel):
    """An environment variable of the model-server container."""

    name: str = Field(
        description="Variable name: letters, digits and '_', not starting with a digit. Names "
        "starting with MODELOPS_ are reserved for the operator.",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        json_schema_extra=validations(
            cel(
                "!self.startsWith('MODELOPS_')",
                "spec.runtime.env[].name: names starting with MODELOPS_ are reserved for the "
                "operator",
            )
        ),
    )
    value: str = Field("", description="Variable value.", max_length=32768)


class Runtime(KubeModel):
    """How the model server runs: image, replicas, resources, environment."""

    image: str | None = Field(
        None,
        description="Model-server image; any server speaking the Open Inference Protocol "
        "(KServe V2) works. Empty means this operator's own serving image.",
        max_length=512,
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="When the kubelet pulls the image: Always, IfNotPresent, Never."
    )
    replicas: int = Field(
        1,
        ge=0,
        le=100,
        description="Number of model-server pods (0 to 100). The scale subresource points here, "
        "so `kubectl scale mdep/<name> --replicas=N` and HorizontalPodAutoscalers work.",
    )
    resources: Resources | None = Field(
        None, description="CPU and memory requests and limits of the model-server container."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment variables of the model-server container.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )


class Feedback(KubeModel):
    """Ground-truth labels sent later by clients, joined to the predictions they judge."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.maturity) || has(self.enabled) && self.enabled",
                "spec.monitoring.feedback.maturity needs spec.monitoring.feedback.enabled: true",
                field_path=".maturity",
            ),
            cel(
                "!has(self.lossBound) || has(self.enabled) && self.enabled",
                "spec.monitoring.feedback.lossBound needs spec.monitoring.feedback.enabled: true",
                field_path=".lossBound",
            ),
        )
    )

    enabled: bool = Field(
        False,
        description="Accept ground-truth labels at POST /v2/feedback. Off, the sidecar refuses "
        "them (404); a ChampionChallenger's accuracy gate needs it on.",
    )
    maturity: str | None = Field(
        None,
        max_length=32,
        pattern=DURATION,
        description="Count a label when its prediction is this old, like 30m, and drop labels "
        "that come later (default: count each label when it arrives). When the models' labels "
        "come back after different delays, this compares them on the same requests' hours. At "
        "most 24h.",
        json_schema_extra=validations(
            cel(
                "duration(self) > duration('0s') && duration(self) <= duration('24h')",
                "spec.monitoring.feedback.maturity must be a duration in (0s, 24h], like 30m",
            )
        ),
    )


    loss_bound: float | None = Field(
        None,
        gt=0,
        le=1e12,
        description="Regression models: the largest absolute error one label counts for "
        "(larger errors count as this bound). With it, the accuracy gate compares the mean "
        "bounded error with an exact betting test; without it, with a normal approximation "
        "that a few huge errors can fool. Set it where an error stops mattering more, in the "
        "target's units.",
    )


class Monitoring(KubeModel):
    """What the metrics sidecar records about predictions."""

    prediction_buckets: list[float] | None = Field(
        None,
        max_length=64,
        description="Upper bounds of the prediction-value histogram, strictly increasing. Empty "
        "means the sidecar's defaults.",
        json_schema_extra=validations(
            cel(
                "self.size() < 2 || self.isSorted() && "
                "self.all(b, self.filter(c, c == b).size() == 1)",
                "spec.monitoring.predictionBuckets must be strictly increasing",
            )
        ),
    )
    feedback: Feedback = Field(
        default_factory=lambda: Feedback.model_validate({}),
        description="Ground-truth feedback settings.",
        json_schema_extra={"default": {}},
    )
    sample_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of requests whose predictions are recorded, in (0, 1].",
    )


class ModelDeploymentSpec(KubeModel):
    """What should be live: the model, how it runs and what is measured about it."""

    model: ModelSource = Field(description="The model to serve.")
    runtime: Runtime = Field(
        default_factory=lambda: Runtime.model_validate({}),
        description="How the model server runs.",
        json_schema_extra={"default": {}},
    )
    monitoring: Monitoring = Field(
        default_factory=lambda: Monitoring.model_validate({}),
        description="What the metrics sidecar records.",
        json_schema_extra={"default": {}},
    )


class LiveModel(KubeModel):
    """A model version that is (or was) serving."""

    name: str = Field(description="Model name.")
    version: str = Field(description="Model version.")
    uri: str = Field("", description="Where the model file came from.")
    digest: str = Field("", description="SHA-256 digest of the model file.")
    since: datetime | None = Field(None, description="When it started serving in this role.")


class GateEvidence(KubeModel):
    """The statistical evidence behind a promotion or rollback, for one gate."""

    gate: str = Field(description="Gate name.")
    verdict: str = Field(description="Pass, Fail or Inconclusive.")
    estimate: float | None = Field(None, description="Estimated effect (challenger vs champion).")
    lower: float | None = Field(None, description="Lower end of the anytime-valid interval.")
    upper: float | None = Field(None, description="Upper end of the anytime-valid interval.")


class HistoryEntry(KubeModel):
    """One change of the live model."""

    time: datetime = Field(description="When it happened.")
    action: Literal["RolledOut", "Promoted", "RolledBack"] = Field(
        description="RolledOut (direct change, no ChampionChallenger), Promoted or RolledBack."
    )
    from_version: str = Field("", description="Version serving before.")
    to_version: str = Field("", description="Version serving after.")
    reason: str = Field("", description="CamelCase reason.")
    message: str = Field("", description="Human-readable explanation.", max_length=4096)
    evidence: list[GateEvidence] = Field(
        default_factory=list, max_length=16, description="Gate results behind the decision."
    )


class ModelDeploymentStatus(ObservedStatus):
    """What is live, written by the operator only."""

    champion: LiveModel | None = Field(None, description="The model serving traffic.")
    challenger: LiveModel | None = Field(
        None, description="The model under evaluation, while a ChampionChallenger runs."
    )
    endpoint: str | None = Field(None, description="URL of the Service clients call.")
    replicas: int = Field(0, ge=0, description="Champion pods that exist.")
    ready_replicas: int = Field(0, ge=0, description="Champion pods that are ready.")
    selector: str = Field(
        "", description="Label selector of the champion pods (scale subresource)."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list,
        max_length=20,
        description="The last changes of the live model, newest last (bounded).",
    )


NAME_RULE = cel(
    f"self.metadata.name.size() <= {MAX_NAME_LENGTH} && "
    f"self.metadata.name.matches('{DNS1035_LABEL}')",
    f"metadata.name must be a DNS-1035 label (lower-case letters, digits, '-', starting with a "
    f"letter) of at most {MAX_NAME_LENGTH} characters: it names the Service and Deployments",
)
