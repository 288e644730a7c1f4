"""What happened during the demo, as data: status samples and Kubernetes Events over time.

A sample is one look at the ChampionChallenger's status plus the load generator's counters::

    {"t": 12.5, "challenge": "better", "phase": "Progressing", "step": 1,
     "trafficPercent": 25, "decision": "Continue", "message": "...",
     "gates": [{"name": "accuracy", "type": "accuracy", "verdict": "Pending",
                "estimate": 0.12, "lower": 0.05, "upper": 0.2, "margin": 0.01,
                "samples": {"champion": 300, "challenger": 120}}],
     "requests": {"ok": 1234, "failed": 0}, "feedback": {"sent": 1000, "failed": 0}}

``t`` is seconds since the demo started; request and feedback counts are cumulative over the
whole demo (the report takes differences). A gate's optional ``margin`` (from spec.gates) lets
the report draw the decision threshold. An event is ``{"t", "type", "reason", "message"}``
with an optional ``challenge``; without one it belongs to the challenge whose samples
surround it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


@dataclass
class Timeline:
    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Free-form facts for the report, e.g. {"models": [{"name", "version", "accuracy"}],
    # "expected": {"better": "Promoted", "worse": "RolledBack"}}.
    metadata: dict[str, Any] = field(default_factory=dict)

    def add_sample(self, sample: Mapping[str, Any]) -> None:
        if not isinstance(sample.get("t"), int | float):
            raise ValueError("a sample needs a numeric 't' (seconds since the demo started)")
        if not sample.get("challenge"):
            raise ValueError("a sample needs the name of its 'challenge'")
        self.samples.append(json.loads(json.dumps(sample)))  # a copy the caller cannot change

    def add_event(self, event: Mapping[str, Any]) -> bool:
        """Record an event once; False when it was already recorded.

        Events are listed again at every poll, so the same (time, reason, message, challenge)
        or the same ``uid`` counts once."""
        if not isinstance(event.get("t"), int | float) or not event.get("reason"):
            raise ValueError("an event needs a numeric 't' and a 'reason'")
        copy = json.loads(json.dumps(event))
        copy.setdefault("type", "Normal")
        copy.setdefault("message", "")
        key = _event_key(copy)
        if any(_event_key(known) == key for known in self.events):
            return False
        self.events.append(copy)
        self.events.sort(key=lambda e: e["t"])
        return True

    def challenges(self) -> list[str]:
        """Challenge names in the order they first appear."""
        names: list[str] = []
        for sample in sorted(self.samples, key=lambda s: s["t"]):
            if sample["challenge"] not in names:
                names.append(sample["challenge"])
        for event in self.events:
            name = event.get("challenge")
            if name and name not in names:
                names.append(name)
        return names

    def samples_for(self, challenge: str) -> list[dict[str, Any]]:
        return sorted((s for s in self.samples if s["challenge"] == challenge),
                      key=lambda s: s["t"])

    def events_for(self, challenge: str) -> list[dict[str, Any]]:
        spans = self._spans()
        found = []
        for event in self.events:
            owner = event.get("challenge") or _owner_by_time(spans, event["t"])
            if owner == challenge:
                found.append(event)
        return found

    def _spans(self) -> list[tuple[str, float, float]]:
        """(challenge, first sample time, time the next challenge starts)."""
        starts = []
        for name in self.challenges():
            times = [s["t"] for s in self.samples if s["challenge"] == name]
            times += [e["t"] for e in self.events if e.get("challenge") == name]
            starts.append((name, min(times)))
        starts.sort(key=lambda item: item[1])
        spans = []
        for index, (name, start) in enumerate(starts):
            end = starts[index + 1][1] if index + 1 < len(starts) else float("inf")
            spans.append((name, start, end))
        return spans

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps({"formatVersion": FORMAT_VERSION, "metadata": self.metadata,
                           "samples": self.samples, "events": self.events}, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("formatVersion") != FORMAT_VERSION:
            raise ValueError(f"not a demo timeline of format version {FORMAT_VERSION}")
        timeline = cls(metadata=dict(data.get("metadata") or {}))
        for sample in data.get("samples") or []:
            timeline.add_sample(sample)
        for event in data.get("events") or []:
            timeline.add_event(event)
        return timeline

    @classmethod
    def load(cls, path: Path) -> Timeline:
        return cls.from_json(Path(path).read_text())


def _event_key(event: Mapping[str, Any]) -> tuple[Any, ...]:
    if event.get("uid"):
        return ("uid", event["uid"])
    return (event["t"], event["reason"], event.get("message"), event.get("challenge"))


def _owner_by_time(spans: list[tuple[str, float, float]], t: float) -> str | None:
    if not spans:
        return None
    for name, start, end in spans:
        if start <= t < end:
            return name
    # Before the first sample (ChallengeStarted often comes first): the first challenge.
    return spans[0][0] if t < spans[0][1] else spans[-1][0]
