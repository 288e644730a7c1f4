"""ModelDeployment: one model endpoint with a stable name and Service (docs/api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

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
from .scheduling import Affinity, Toleration

# The operator derives "<name>-challenger" (11 more characters) from the object's name, and
# Service names must be DNS-1035 labels of at most 63 characters.
MAX_NAME_LENGTH = 52

Quantity = int | str

_QUANTITY_RULE = cel(
    "isQuantity(string(self))",
    "must be a Kubernetes quantity such as 500m, 2, 512Mi or 1Gi",
)


class ModelProfile(KubeModel):
    """The model version's training profile, written by `modelops profile` (docs/monitoring.md):
    the reference its live inputs are compared with."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.uri.startsWith('pvc://') || self.uri.matches('^pvc://[a-z0-9][-a-z0-9.]*/.+')",
                "spec.model.profile.uri pvc:// must look like pvc://<claim-name>/<path/in/volume>",
                field_path=".uri",
            ),
        )
    )

    uri: str = Field(
        description="Where the profile file is, with the same schemes as spec.model.uri (one "
        "file, not a directory). Fetched beside the model, with its credentials, and verified "
        "against digest; the metrics sidecar counts inputs in its bins.",
        min_length=1,
        max_length=2048,
        json_schema_extra=validations(
            cel(
                "self.matches('^(file|pvc|http|https|s3|gs)://.+[^/]$')",
                "spec.model.profile.uri must start with one of file://, pvc://, http://, "
                "https://, s3://, gs:// and name a file (not ending in '/')",
            )
        ),
    )
    digest: str = Field(
        description="SHA-256 digest of the profile file (`modelops profile` prints it).",
        max_length=71,
        json_schema_extra=validations(
            cel(
                "self.matches('^sha256:[0-9a-f]{64}$')",
                "spec.model.profile.digest must be sha256: followed by 64 lower-case hex digits",
            )
        ),
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
        description="Where the model is: file:///path (inside the image), "
        "pvc://<claim>/<path>, http(s)://host/path, s3://bucket/key or gs://bucket/object. A "
        "path ending in '/' is a directory (an s3:// or gs:// prefix too); one ending in "
        ".tar.gz, .tgz, .tar or .zip is an archive, unpacked. Fetched by an init container "
        "and verified against digest before the server loads it.",
        min_length=1,
        max_length=2048,
        json_schema_extra=validations(
            cel(
                "self.matches('^(file|pvc|http|https|s3|gs)://.+')",
                "spec.model.uri must start with one of file://, pvc://, http://, https://, s3://, "
                "gs:// and name a location after it",
            )
        ),
    )
    format: Literal["sklearn", "onnx", "xgboost", "lightgbm", "mlflow", "custom"] = Field(
        description="Serialization format: sklearn (skops, or joblib/pickle with "
        "spec.runtime.options.allowUnsafePickle), onnx, xgboost (.ubj or .json), lightgbm "
        "(text model file), mlflow (a model directory with an MLmodel file: a directory or "
        "archive URI), or custom (a Python class, spec.runtime.options.customClass)."
    )
    digest: str = Field(
        description="SHA-256 digest of the model file as sha256:<64 lower-case hex digits>; for "
        "a directory or archive, of its manifest (`modelops-fetch --print-digest PATH` prints "
        "it). The pod refuses to serve a model that does not match.",
        max_length=71,
        json_schema_extra=validations(
            cel(
                "self.matches('^sha256:[0-9a-f]{64}$')",
                "spec.model.digest must be sha256: followed by 64 lower-case hex digits",
            )
        ),
    )
    profile: ModelProfile | None = Field(
        None,
        description="This version's training profile (`modelops profile`): with it, the "
        "sidecar counts inputs in the profile's bins and the operator watches the live model "
        "for input drift (spec.monitoring.drift, condition DataDrift).",
    )
    credentials_secret: str | None = Field(
        None,
        description="Name of a Secret in the same namespace whose keys become environment "
        "variables of the fetch container, for example AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL_S3 for s3:// URIs. Only for "
        "s3://, gs:// and http(s):// URIs. Without it, s3:// and gs:// use the pod's identity "
        "(spec.runtime.serviceAccountName: IRSA, EKS Pod Identity, GKE Workload Identity).",
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
                "|| self.uri.startsWith('gs://') "
                "|| self.uri.startsWith('http://') || self.uri.startsWith('https://')",
                "spec.model.credentialsSecret is only used with s3://, gs:// and http(s):// URIs",
                field_path=".credentialsSecret",
            ),
            cel(
                "self.format != 'mlflow' || self.uri.endsWith('/') || "
                "self.uri.matches('[.](tar[.]gz|tgz|tar|zip)$')",
                "spec.model.uri must name a directory (ending in '/') or an archive (.tar.gz, "
                ".tgz, .tar, .zip) for format mlflow: an MLflow model is a directory",
                field_path=".uri",
            ),
            cel(
                "!self.uri.matches('^https?://.*/$')",
                "spec.model.uri: an http(s):// URI cannot name a directory (HTTP cannot list "
                "one); pack the directory as an archive (.tar.gz) and name that",
                field_path=".uri",
            ),
        )
    )


RESOURCE_NAME = (
    r"^(cpu|memory|ephemeral-storage|hugepages-[0-9]+[KMG]i|[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    r"([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$"
)
ResourceQuantity = Annotated[
    Quantity,
    Field(
        description="An amount, as a Kubernetes quantity.",
        json_schema_extra=validations(
            cel(_QUANTITY_RULE["rule"],
                "spec.runtime.resources: every amount " + _QUANTITY_RULE["message"]),
            maxLength=64,
        ),
    ),
]


def _amounts(kind: str, description: str) -> Any:
    return Field(
        None,
        description=description,
        json_schema_extra=validations(
            cel(
                f"self.all(name, name.matches('{RESOURCE_NAME}'))",
                f"spec.runtime.resources.{kind} names must be cpu, memory, ephemeral-storage, "
                "hugepages-<size> or an extended resource such as nvidia.com/gpu",
            ),
            maxProperties=8,
        ),
    )


def _not_above_limit(resource: str) -> dict[str, str]:
    both = (
        f"has(self.requests) && has(self.limits) && '{resource}' in self.requests "
        f"&& '{resource}' in self.limits"
    )
    compare = (
        f"quantity(string(self.requests['{resource}']))"
        f".compareTo(quantity(string(self.limits['{resource}']))) <= 0"
    )
    return cel(
        f"!({both}) || {compare}",
        f"spec.runtime.resources.requests.{resource} must not exceed "
        f"spec.runtime.resources.limits.{resource}",
        field_path=".requests",
    )


# Extended resources (GPUs) cannot be overcommitted: Kubernetes wants them in limits, in whole
# units, and equal to the request if there is one.
_EXTENDED_IN_LIMITS = cel(
    "!has(self.requests) || self.requests.all(name, !name.contains('/') || "
    "has(self.limits) && name in self.limits && "
    "quantity(string(self.requests[name])).compareTo(quantity(string(self.limits[name]))) == 0)",
    "spec.runtime.resources: an extended resource such as nvidia.com/gpu must be in limits, "
    "equal to its request",
    field_path=".requests",
)
_EXTENDED_WHOLE = cel(
    "!has(self.limits) || self.limits.all(name, !name.contains('/') || "
    "quantity(string(self.limits[name])).isInteger())",
    "spec.runtime.resources.limits: an extended resource such as nvidia.com/gpu is counted in "
    "whole units",
    field_path=".limits",
)


class Resources(KubeModel):
    """Compute resources of the model-server container: cpu, memory, and extended resources
    such as GPUs (nvidia.com/gpu: 1, in limits)."""

    requests: dict[str, ResourceQuantity] | None = _amounts(
        "requests", "Guaranteed amounts, used for scheduling: cpu, memory, ..."
    )
    limits: dict[str, ResourceQuantity] | None = _amounts(
        "limits", "Upper bounds; memory above the limit kills the container. GPUs go here."
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            _not_above_limit("cpu"), _not_above_limit("memory"), _EXTENDED_IN_LIMITS,
            _EXTENDED_WHOLE,
        )
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


class ServerOptions(KubeModel):
    """Options of the model server that would otherwise need an image of your own."""

    allow_unsafe_pickle: bool = Field(
        False,
        description="Load joblib/pickle files (sklearn, pickled MLflow models; MLServer's "
        "sklearn runtime always unpickles, so it needs this too). Unpickling runs code from "
        "the file: only for models from a source you trust.",
    )
    trusted_types: list[Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z_][\w.]*$")]] = (
        Field(
            default_factory=list,
            max_length=64,
            description="Types a skops file may hold beyond skops' defaults, such as "
            "lightgbm.sklearn.LGBMClassifier (the pod's error lists the ones it needs).",
        )
    )
    custom_class: str | None = Field(
        None,
        max_length=256,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:Class of a custom model (format custom); the module is imported "
        "from the image or from the model directory.",
    )


SERVERS = ("modelops", "mlserver", "triton", "custom")
# Ports the pod's other containers use, which a custom server must leave free.
RESERVED_PORTS = (8000, 9090)


class Runtime(KubeModel):
    """How the model server runs: which server and image, replicas, resources, placement."""

    image: str | None = Field(
        None,
        description="Model-server image. Empty: this operator's serving image for server "
        "modelops, the upstream image for mlserver and triton; required for custom.",
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
    server: Literal["modelops", "mlserver", "triton", "custom"] = Field(
        "modelops",
        description="The model server: modelops (this project's, every format), mlserver "
        "(Seldon's MLServer: sklearn with allowUnsafePickle, xgboost, lightgbm, mlflow), triton "
        "(NVIDIA Triton: onnx) or custom (your image: spec.runtime.image, command, port). The "
        "operator sets each one's command, port, probes and model path; docs/runtimes.md.",
    )
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None,
        max_length=32,
        description="Entry point of a custom server (default: the image's own).",
    )
    args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra arguments, appended to the ones the operator passes the server.",
    )
    port: int = Field(
        8080,
        ge=1024,
        le=65535,
        description="Port a custom server listens on for V2 HTTP (the others use 8080). Not "
        "8000 or 9090: the metrics sidecar has them.",
        json_schema_extra=validations(
            cel("self != 8000 && self != 9090",
                "spec.runtime.port must not be 8000 or 9090: the metrics sidecar uses them")
        ),
    )
    readiness_path: str = Field(
        "/v2/health/ready",
        max_length=256,
        pattern=r"^/[!-~]*$",
        description="HTTP path that answers 200 when a custom server can serve.",
    )
    options: ServerOptions = Field(
        default_factory=lambda: ServerOptions.model_validate({}),
        description="Server options (unsafe pickle, trusted skops types, custom class).",
        json_schema_extra={"default": {}},
    )
    service_account_name: str | None = Field(
        None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="ServiceAccount of the model pods: the identity s3:// and gs:// fetches use "
        "without credentialsSecret (IRSA, EKS Pod Identity, GKE Workload Identity).",
    )
    image_pull_secrets: list[Annotated[str, Field(max_length=253, pattern=DNS1123_SUBDOMAIN)]] = (
        Field(
            default_factory=list,
            max_length=16,
            description="Names of Secrets in the namespace holding registry credentials.",
        )
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63, description="Label value.")]] = (
        Field(
            default_factory=dict,
            description="Node labels the model pods must run on, such as "
            "nvidia.com/gpu.present: 'true'.",
            json_schema_extra={"maxProperties": 32},
        )
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the model pods tolerate."
    )
    affinity: Affinity | None = Field(
        None, description="Pod affinity as in a pod spec (nodeAffinity, podAffinity, "
        "podAntiAffinity)."
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

    max_delay: str | None = Field(
        None,
        max_length=32,
        pattern=DURATION,
        description="How long after a prediction its label is still accepted, like 24h "
        "(default 168h, 7 days; at most 720h). A receipt older than this is refused as "
        "expired, and the keys that signed receipts are kept this long after they stop "
        "signing.",
        json_schema_extra=validations(
            cel(
                "duration(self) >= duration('1m') && duration(self) <= duration('720h')",
                "spec.monitoring.feedback.maxDelay must be a duration in [1m, 720h], like 168h",
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


class DriftMonitor(KubeModel):
    """Input drift against the training profile, watched while the model is live."""

    alarm_every: str = Field(
        "90d",
        max_length=8,
        pattern=r"^[1-9][0-9]{0,4}(d|h)$",
        description="Expected time between false alarms on a healthy model, in days or hours "
        "(90d, 12h): the detector's threshold, shared by all features. Larger waits for more "
        "evidence before DataDrift; smaller alarms sooner and more often for nothing.",
    )


class AccuracyMonitor(KubeModel):
    """Accuracy decay against the profile's holdout, from delayed labels (classifiers)."""

    margin: float = Field(
        2.0,
        ge=0,
        le=50,
        description="Accuracy points (2.0 = two percentage points) the live model may lose "
        "against its holdout accuracy before AccuracyDegraded; the holdout's own sampling "
        "error is added to it.",
    )
    alarm_every: str = Field(
        "90d",
        max_length=8,
        pattern=r"^[1-9][0-9]{0,4}(d|h)$",
        description="Expected time between false alarms while the model is as accurate as "
        "allowed, in days or hours.",
    )


class CloudEventSink(KubeModel):
    """Where a retraining request is POSTed as a CloudEvent (structured JSON)."""

    url: str = Field(
        max_length=2048,
        description="http(s) URL receiving the CloudEvent (type io.modelops.retraining."
        "requested), for example an Argo Events webhook or a Knative broker.",
        json_schema_extra=validations(
            cel(
                "self.matches('^https?://.+')",
                "spec.monitoring.retraining.cloudEvent.url must be an http:// or https:// URL",
            )
        ),
    )


RetrainingCondition = Literal["DataDrift", "AccuracyDegraded"]
RETRAINING_CONDITIONS: tuple[RetrainingCondition, ...] = ("DataDrift", "AccuracyDegraded")


class RetrainingPolicy(KubeModel):
    """What to start when a monitor fires: an object from a template and/or a CloudEvent."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.template) || has(self.cloudEvent)",
                "spec.monitoring.retraining needs a template, a cloudEvent, or both",
            ),
        )
    )

    on: list[RetrainingCondition] = Field(
        default_factory=lambda: list(RETRAINING_CONDITIONS),
        max_length=2,
        description="The conditions that start a retraining when they turn True.",
    )
    cooldown: str = Field(
        "24h",
        max_length=8,
        pattern=r"^[1-9][0-9]{0,4}(d|h|m)$",
        description="At most one retraining per this long (minutes, hours or days).",
    )
    template: dict[str, Any] | None = Field(
        None,
        description="An object created in the ModelDeployment's namespace, such as a "
        "batch/v1 Job, an Argo Workflow or a Tekton PipelineRun: apiVersion, kind, metadata "
        "(labels, annotations) and spec. It is named <deployment>-retrain-<random>, owned by "
        "the ModelDeployment, and annotated with the evidence (modelops.io/retraining-*). The "
        "operator's RBAC must allow creating that kind (chart value retraining.rules).",
        # An embedded Kubernetes object: the API server checks its apiVersion, kind, metadata.
        json_schema_extra={"x-kubernetes-embedded-resource": True},
    )
    cloud_event: CloudEventSink | None = Field(
        None, description="Also (or only) POST a CloudEvent with the evidence."
    )

    @field_validator("template")
    @classmethod
    def _names_a_kind(cls, template: dict[str, Any] | None) -> dict[str, Any] | None:
        if template is not None and not (
            isinstance(template.get("apiVersion"), str) and isinstance(template.get("kind"), str)
        ):
            raise ValueError("the template needs apiVersion and kind")
        return template


class OutlyingInput(KubeModel):
    """A row with a value outside the profile's range (a number below its min or above its
    max, an unknown category)."""

    features: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list,
        max_length=50,
        description="Features of the profile to check; empty: every feature.",
    )


class HumilityCondition(KubeModel):
    """When a rule fires for a row: exactly one of outlyingInput and confidenceBelow."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.outlyingInput) != has(self.confidenceBelow)",
                "spec.monitoring.humility.rules[].when needs exactly one of outlyingInput "
                "and confidenceBelow",
            ),
        )
    )

    outlying_input: OutlyingInput | None = Field(
        None, description="The row's input is outside the training profile (needs "
        "spec.model.profile)."
    )
    confidence_below: float | None = Field(
        None,
        gt=0,
        le=1,
        description="The row's confidence (its largest class probability in the answer's "
        "confidenceOutput) is below this. Answers without that output are not judged.",
    )
    confidence_output: str = Field(
        "predict_proba",
        min_length=1,
        max_length=64,
        description="The output holding class probabilities (a client asks for it in the "
        "request's outputs, or the model returns it by default).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> HumilityCondition:
        if (self.outlying_input is None) == (self.confidence_below is None):
            raise ValueError("needs exactly one of outlyingInput and confidenceBelow")
        return self


HumilityAction = Literal["flag", "override", "refuse"]


class HumilityRule(KubeModel):
    """A model saying it is out of its depth, per prediction (DataRobot's humility rules)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(self.action == 'override') == has(self.overrideValue)",
                "spec.monitoring.humility.rules[].overrideValue is required with action "
                "override, and only with it",
            ),
        )
    )

    name: str = Field(
        max_length=63,
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        description="The rule's name: in the X-Modelops-Humility header, metrics, status.",
    )
    when: HumilityCondition = Field(description="When it fires for a row.")
    action: HumilityAction = Field(
        "flag",
        description="flag: the answer carries X-Modelops-Humility; override: the row's "
        "prediction becomes overrideValue; refuse: the request is answered 422.",
    )
    override_value: float | None = Field(
        None,
        ge=-1e15,
        le=1e15,
        description="The prediction given instead, with action override: a number (a class "
        "index, a score or a regression value; whole numbers are sent as integers).",
    )

    @model_validator(mode="after")
    def _override_value(self) -> HumilityRule:
        if (self.action == "override") != (self.override_value is not None):
            raise ValueError("overrideValue is required with action override, and only with it")
        return self


class Humility(KubeModel):
    """Humility rules with actions, and the Uncertain monitor over how often they fire."""

    rules: list[HumilityRule] = Field(
        max_length=16,
        min_length=1,
        description="Checked per prediction, in order, by the sidecar.",
        json_schema_extra=validations(
            cel(
                "self.all(r, self.filter(s, s.name == r.name).size() == 1)",
                "spec.monitoring.humility.rules: names must be unique",
            )
        ),
    )
    max_share: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Uncertain when a rule fires on more than this share of predictions "
        "(anytime-valid, at the rate alarmEvery allows).",
    )
    alarm_every: str = Field(
        "90d",
        max_length=8,
        pattern=r"^[1-9][0-9]{0,4}(d|h)$",
        description="Expected time between false Uncertain alarms while every rule fires at "
        "most maxShare of the time, in days or hours.",
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[HumilityRule]) -> list[HumilityRule]:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        return rules


class Monitoring(KubeModel):
    """What the metrics sidecar records about predictions, and how the live model is watched."""

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
    drift: DriftMonitor = Field(
        default_factory=lambda: DriftMonitor.model_validate({}),
        description="Input drift monitoring (needs spec.model.profile).",
        json_schema_extra={"default": {}},
    )
    accuracy: AccuracyMonitor = Field(
        default_factory=lambda: AccuracyMonitor.model_validate({}),
        description="Accuracy decay monitoring (needs spec.model.profile with a holdout "
        "accuracy and spec.monitoring.feedback.enabled).",
        json_schema_extra={"default": {}},
    )
    retraining: RetrainingPolicy | None = Field(
        None,
        description="Start a retraining when a monitor fires. What it produces comes back as "
        "a new spec.model, gated like any change.",
    )
    humility: Humility | None = Field(
        None,
        description="Per-prediction humility rules (flag, override, refuse) and the "
        "Uncertain monitor of how often they fire.",
    )


# Which formats each server loads; custom servers load what they like.
SERVER_FORMATS = {
    "modelops": ("sklearn", "onnx", "xgboost", "lightgbm", "mlflow", "custom"),
    "mlserver": ("sklearn", "xgboost", "lightgbm", "mlflow", "custom"),
    "triton": ("onnx", "custom"),
}


def _server_rules() -> list[dict[str, str]]:
    per_server = [
        cel(
            f"self.runtime.server != '{server}' || self.model.format in {list(formats)}",
            f"spec.model.format: server {server} loads {', '.join(formats)}",
            field_path=".model.format",
        )
        for server, formats in SERVER_FORMATS.items()
    ]
    return [
        *per_server,
        cel(
            "self.runtime.server != 'custom' || has(self.runtime.image)",
            "spec.runtime.image is required with server custom",
            field_path=".runtime.image",
        ),
        cel(
            "self.runtime.server == 'custom' || self.runtime.port == 8080",
            "spec.runtime.port is only for server custom (the others listen on 8080)",
            field_path=".runtime.port",
        ),
        cel(
            "self.runtime.server == 'custom' || !has(self.runtime.command)",
            "spec.runtime.command is only for server custom",
            field_path=".runtime.command",
        ),
        cel(
            "self.runtime.server == 'custom' || self.runtime.readinessPath == '/v2/health/ready'",
            "spec.runtime.readinessPath is only for server custom",
            field_path=".runtime.readinessPath",
        ),
        cel(
            "!(self.runtime.server in ['mlserver', 'triton']) || "
            "!self.model.uri.startsWith('file://')",
            "spec.model.uri: file:// names a file inside the modelops serving image, which "
            "MLServer's and Triton's images are not; use pvc://, http(s)://, s3:// or gs://",
            field_path=".model.uri",
        ),
        cel(
            "self.runtime.server != 'mlserver' || self.model.format != 'sklearn' || "
            "self.runtime.options.allowUnsafePickle",
            "spec.runtime.options.allowUnsafePickle: MLServer's sklearn runtime unpickles the "
            "model file (it runs code from it); set it to true if you trust the file's source",
            field_path=".runtime.options.allowUnsafePickle",
        ),
        cel(
            "self.model.format != 'custom' || self.runtime.server in ['triton', 'custom'] || "
            "has(self.runtime.options.customClass)",
            "spec.runtime.options.customClass (module:Class) is required for format custom",
            field_path=".runtime.options.customClass",
        ),
        cel(
            "!has(self.monitoring.humility) || has(self.model.profile) || "
            "self.monitoring.humility.rules.all(r, !has(r.when.outlyingInput))",
            "spec.monitoring.humility.rules: outlyingInput needs spec.model.profile (the "
            "ranges come from it)",
            field_path=".monitoring.humility.rules",
        ),
    ]


class ModelDeploymentSpec(KubeModel):
    """What should be live: the model, how it runs and what is measured about it."""

    model_config = ConfigDict(json_schema_extra=validations(*_server_rules()))

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

    @model_validator(mode="after")
    def _outlying_needs_a_profile(self) -> ModelDeploymentSpec:
        humility = self.monitoring.humility
        if humility is not None and self.model.profile is None and any(
            rule.when.outlying_input is not None for rule in humility.rules
        ):
            raise ValueError("spec.monitoring.humility.rules: outlyingInput needs "
                             "spec.model.profile (the ranges come from it)")
        return self


class LiveModel(KubeModel):
    """A model version that is (or was) serving."""

    name: str = Field(description="Model name.")
    version: str = Field(description="Model version.")
    uri: str = Field("", description="Where the model file came from.")
    digest: str = Field("", description="SHA-256 digest of the model file.")
    serving: str = Field(
        "",
        max_length=16384,
        description="How this version is served: its format and server setup (spec.runtime's "
        "server, image, command, args, port, readinessPath, options) as JSON. Under a "
        "ChampionChallenger the champion keeps it while the challenger runs the new one.",
    )
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


class FeatureDrift(KubeModel):
    """One feature's part in the drift evidence."""

    name: str = Field(description="Feature name, as in the profile.")
    share: float = Field(description="Its share of the drift statistic, in [0, 1].")


class DriftStatus(KubeModel):
    """The input-drift monitor's state (docs/monitoring.md). Written when it changes, not at
    every look: the live figures are the operator's modelops_monitor_* metrics."""

    state: Literal["Watching", "Drifted", "NoData", "Unavailable"] = Field(
        description="Watching (no drift found), Drifted (DataDrift), NoData (no inputs counted "
        "yet) or Unavailable (Prometheus or the profile's series cannot be read)."
    )
    version: str = Field(description="The live version watched (its profile's bins).")
    evidence: float = Field(
        0.0, description="How far the detector is towards an alarm, log M / log c: 1 alarms."
    )
    rows: int = Field(0, ge=0, description="Input rows counted since `since`, when written.")
    since: datetime | None = Field(None, description="When the detector (re)started.")
    detected_at: datetime | None = Field(None, description="When drift was found.")
    features: list[FeatureDrift] = Field(
        default_factory=list, max_length=5, description="Features carrying most evidence."
    )
    message: str = Field("", max_length=1024, description="What the monitor says, for people.")


class AccuracyStatus(KubeModel):
    """The accuracy monitor's state. Written when it changes, not at every look."""

    state: Literal["Watching", "Degraded", "NoData", "Unavailable"] = Field(
        description="Watching, Degraded (AccuracyDegraded), NoData (no labels yet) or "
        "Unavailable."
    )
    version: str = Field(description="The live version watched.")
    holdout: float | None = Field(None, description="The profile's holdout accuracy.")
    allowed_error: float | None = Field(
        None, description="The error rate still called healthy (holdout, margin, sampling)."
    )
    evidence: float = Field(0.0, description="How far towards an alarm (1 alarms).")
    labels: int = Field(0, ge=0, description="Labels counted when drift was found.")
    observed_error: float | None = Field(
        None, description="Error rate of the labels counted when degradation was found."
    )
    since: datetime | None = Field(None, description="When the detector (re)started.")
    detected_at: datetime | None = Field(None, description="When degradation was found.")
    message: str = Field("", max_length=1024, description="What the monitor says, for people.")


class RetrainingStatus(KubeModel):
    """The last retraining the monitors started."""

    triggered_at: datetime | None = Field(None, description="When it was started.")
    trigger: str = Field("", description="The condition that started it.")
    version: str = Field("", description="The live version it was started for.")
    object: str = Field("", description="Kind/name of the object created, if any.")
    cloud_event: str = Field("", description="delivered, or why delivery failed.")
    count: int = Field(0, ge=0, description="Retrainings started by this operator's monitors.")
    message: str = Field("", max_length=1024, description="What happened, for people.")


class RuleShare(KubeModel):
    """How often one humility rule fired."""

    name: str = Field(description="The rule.")
    share: float = Field(description="Share of the checked rows it fired on since `since`.")


class HumilityStatus(KubeModel):
    """The Uncertain monitor's state. Written when it changes, not at every look."""

    state: Literal["Watching", "Uncertain", "NoData", "Unavailable"] = Field(
        description="Watching, Uncertain (a rule fires too often), NoData or Unavailable."
    )
    version: str = Field(description="The live version watched.")
    max_share: float | None = Field(None, description="spec.monitoring.humility.maxShare.")
    evidence: float = Field(0.0, description="How far towards an alarm (1 alarms).")
    rows: int = Field(0, ge=0, description="Rows checked when the alarm was raised.")
    rules: list[RuleShare] = Field(
        default_factory=list, max_length=16, description="The rules firing most, when written."
    )
    since: datetime | None = Field(None, description="When the detector (re)started.")
    detected_at: datetime | None = Field(None, description="When Uncertain was raised.")
    message: str = Field("", max_length=1024, description="What the monitor says, for people.")


class MonitoringStatus(KubeModel):
    """What the live-model monitors found."""

    humility: HumilityStatus | None = Field(
        None, description="How often the humility rules fire (Uncertain)."
    )

    retraining: RetrainingStatus | None = Field(
        None, description="The last retraining started by a monitor."
    )
    drift: DriftStatus | None = Field(None, description="Input drift against the profile.")
    accuracy: AccuracyStatus | None = Field(
        None, description="Accuracy decay against the holdout, from labels."
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
    monitoring: MonitoringStatus | None = Field(
        None, description="The live-model monitors' findings (with spec.model.profile)."
    )


NAME_RULE = cel(
    f"self.metadata.name.size() <= {MAX_NAME_LENGTH} && "
    f"self.metadata.name.matches('{DNS1035_LABEL}')",
    f"metadata.name must be a DNS-1035 label (lower-case letters, digits, '-', starting with a "
    f"letter) of at most {MAX_NAME_LENGTH} characters: it names the Service and Deployments",
)
