"""LineageRecord: one immutable entry of the audit trail (who changed which model, on what
evidence, who approved, what came of it).

The operator writes one for every promotion, rollback, approval, forced order and direct
rollout; nobody edits one afterwards: the CRD's `self == oldSelf` rule refuses any change of
`spec` and the chart's `modelops-lineage` admission policy refuses changes of labels and
annotations. Records have no owner, so deleting the ModelDeployment leaves the trail in place;
only the retention policy (or a person allowed to delete them) removes old ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import KubeModel, cel

RecordEvent = Literal[
    "Promoted",
    "RolledBack",
    "Approved",
    "PromoteForced",
    "RollbackForced",
    "RolledOut",
    "RetrainingTriggered",
]


class RecordedModel(KubeModel):
    """A model version as it was when the record was written."""

    name: str = Field("", max_length=253, description="Model name.")
    version: str = Field("", max_length=128, description="Model version.")
    digest: str = Field("", max_length=80, description="sha256:… of the model file.")
    uri: str = Field("", max_length=2048, description="Where the model was fetched from.")
    format: str = Field("", max_length=32, description="Model format.")
    profile_digest: str = Field(
        "", max_length=80, description="sha256:… of the training profile, when there is one."
    )


class PreviousModel(KubeModel):
    """The champion the event replaced or defended."""

    version: str = Field("", max_length=128, description="Model version.")
    digest: str = Field("", max_length=80, description="sha256:… of the model file.")


class RecordedApproval(KubeModel):
    """The person who approved, as the API server authenticated them."""

    approved_by: str = Field(max_length=512, description="User who approved.")
    approved_at: datetime | None = Field(None, description="When.")


class ChangeSource(KubeModel):
    """Where the change of spec.model came from."""

    tool: str = Field(
        "", max_length=64, description="argocd, flux, helm or the field manager that wrote it."
    )
    application: str = Field(
        "", max_length=512, description="The Argo CD Application or Flux object that applied it."
    )
    repository: str = Field("", max_length=2048, description="Source repository, when known.")
    revision: str = Field(
        "", max_length=256, description="Source revision (Git commit), when known."
    )
    changed_by: str = Field(
        "", max_length=512, description="Field manager that last set spec.model (managedFields)."
    )
    changed_at: datetime | None = Field(None, description="When spec.model was last set.")


class RecordedSamples(KubeModel):
    """Samples behind an estimate, per arm."""

    champion: int = Field(0, ge=0, description="Champion samples.")
    challenger: int = Field(0, ge=0, description="Challenger samples.")


class RecordedGate(KubeModel):
    """One gate's result at the decision."""

    name: str = Field(max_length=63, description="Gate name.")
    type: str = Field("", max_length=32, description="Gate type.")
    verdict: str = Field(max_length=16, description="Pass, Fail, Pending or NoData.")
    estimate: float | None = Field(None, description="Estimated effect, challenger vs champion.")
    lower: float | None = Field(None, description="Lower end of the anytime-valid interval.")
    upper: float | None = Field(None, description="Upper end of the anytime-valid interval.")
    margin: float | None = Field(None, description="The gate's margin.")
    samples: RecordedSamples | None = Field(None, description="Samples per arm.")


class LineageRecordSpec(KubeModel):
    """What happened, written once by the operator."""

    event: RecordEvent = Field(description="What happened.")
    deployment: str = Field(max_length=253, description="The ModelDeployment concerned.")
    challenge: str = Field(
        "", max_length=253, description="The ChampionChallenger that decided, if any."
    )
    challenge_id: str = Field(
        "", max_length=200, description="The challenge (challenger version and start)."
    )
    model: RecordedModel = Field(description="The version the event is about.")
    previous: PreviousModel | None = Field(None, description="The champion before the event.")
    outcome: str = Field(
        "", max_length=128, description="The live version after the event (the champion)."
    )
    reason: str = Field("", max_length=4096, description="Why, in words.")
    decided_by: str = Field(
        "", max_length=512, description="'modelops' for the gates, else the user who ordered it."
    )
    approval: RecordedApproval | None = Field(None, description="The approval, when one was given.")
    source: ChangeSource | None = Field(None, description="Where the change came from.")
    evidence: list[RecordedGate] = Field(
        default_factory=list, max_length=16, description="Each gate's result at the decision."
    )
    started_at: datetime | None = Field(None, description="When the challenge began.")
    decided_at: datetime = Field(description="When the event happened.")


SPEC_IMMUTABLE = cel(
    "self == oldSelf",
    "spec is immutable: a LineageRecord is an audit entry and is never rewritten",
)
