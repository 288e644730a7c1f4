"""The champion/challenger state machine (pure) and the data it reads and writes."""

from .machine import desired_topology, step
from .model import (
    Command,
    Event,
    GateSignal,
    HistoryEntry,
    ModelRef,
    Observation,
    Phase,
    PromotionStage,
    Status,
    StrategyView,
    Topology,
    TrafficSplit,
    Transition,
)

__all__ = [
    "Command",
    "Event",
    "GateSignal",
    "HistoryEntry",
    "ModelRef",
    "Observation",
    "Phase",
    "PromotionStage",
    "Status",
    "StrategyView",
    "Topology",
    "TrafficSplit",
    "Transition",
    "desired_topology",
    "step",
]
