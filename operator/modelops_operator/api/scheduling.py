"""Where model pods may run: tolerations and affinity, typed like the pod spec's own fields so
a mistake is refused when the ModelDeployment is applied, naming the field, instead of when
the operator applies the pods."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from .base import KubeModel, cel, validations

LabelKey = Annotated[str, Field(max_length=316, description="A label key.")]
LabelValue = Annotated[str, Field(max_length=63, description="A label value.")]


class Toleration(KubeModel):
    """A taint the model pods tolerate (as in a pod spec)."""

    key: str | None = Field(None, max_length=316, description="Taint key; empty with Exists "
                            "matches every taint.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, max_length=63, description="Taint value, with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect; empty matches every effect."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, description="With NoExecute: how long the pod stays bound after the taint."
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.operator != 'Exists' || !has(self.value)",
                "spec.runtime.tolerations[].value must be empty when operator is Exists",
                field_path=".value",
            ),
            cel(
                "has(self.key) || self.operator == 'Exists'",
                "spec.runtime.tolerations[].key may be empty only with operator Exists",
                field_path=".key",
            ),
        )
    )


class Requirement(KubeModel):
    """key operator values, as in node and label selectors."""

    key: LabelKey = Field(description="The label (or node field) key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="In, NotIn, Exists, DoesNotExist (and Gt, Lt for node labels)."
    )
    values: list[LabelValue] = Field(
        default_factory=list, max_length=64, description="Values; empty for Exists."
    )


class NodeSelectorTerm(KubeModel):
    """Requirements that must all hold on a node."""

    match_expressions: list[Requirement] = Field(
        default_factory=list, max_length=16, description="Requirements on node labels."
    )
    match_fields: list[Requirement] = Field(
        default_factory=list, max_length=16, description="Requirements on node fields."
    )


class NodeSelector(KubeModel):
    """Terms of which at least one must hold."""

    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=16, description="Node selector terms (ORed)."
    )


class PreferredNode(KubeModel):
    """A weighted node preference."""

    weight: int = Field(ge=1, le=100, description="Weight, 1 to 100.")
    preference: NodeSelectorTerm = Field(description="The preferred nodes.")


class NodeAffinity(KubeModel):
    """Which nodes the pods run on."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        None, description="Nodes the pods must run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredNode] = Field(
        default_factory=list, max_length=16, description="Nodes the pods prefer."
    )


class LabelSelector(KubeModel):
    """A label selector."""

    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict, description="Labels that must match exactly.",
        json_schema_extra={"maxProperties": 32},
    )
    match_expressions: list[Requirement] = Field(
        default_factory=list, max_length=16, description="Label requirements."
    )


class PodAffinityTerm(KubeModel):
    """Pods (selected by labels) near or away from which the model pods run."""

    label_selector: LabelSelector | None = Field(None, description="Which pods.")
    namespaces: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=16, description="Their namespaces (default: ours)."
    )
    namespace_selector: LabelSelector | None = Field(None, description="Their namespaces, "
                                                     "by label.")
    topology_key: LabelKey = Field(description="The node label that defines 'near', such as "
                                   "kubernetes.io/hostname or topology.kubernetes.io/zone.")


class PreferredPod(KubeModel):
    """A weighted pod (anti-)affinity preference."""

    weight: int = Field(ge=1, le=100, description="Weight, 1 to 100.")
    pod_affinity_term: PodAffinityTerm = Field(description="The term.")


class PodAffinity(KubeModel):
    """Pods the model pods should run near (or, as anti-affinity, away from)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=16, description="Terms that must hold."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredPod] = Field(
        default_factory=list, max_length=16, description="Terms preferred."
    )


class Affinity(KubeModel):
    """Pod affinity, as in a pod spec."""

    node_affinity: NodeAffinity | None = Field(None, description="Node affinity.")
    pod_affinity: PodAffinity | None = Field(None, description="Pod affinity.")
    pod_anti_affinity: PodAffinity | None = Field(None, description="Pod anti-affinity.")
