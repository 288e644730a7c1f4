"""Pure routing decisions: which arm answers, and whether a request is mirrored.

The router is Go (dataplane/internal/router/routing.go), with the same positions for unkeyed
sticky values (its tests hold this module's numbers); this module stays as the Python model
the gating simulations run.

Sticky keys are hashed with BLAKE2b (not Python's per-process salted ``hash``) so every router
replica, and every restart, sends one key to the same arm. A key's position in [0, 1) is fixed,
and the challenger takes the keys below its weight, so raising a canary's weight only moves
keys from champion to challenger, never back.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

CHAMPION = "champion"
CHALLENGER = "challenger"


def key_position(key: str, secret: bytes = b"") -> float:
    """With a ``secret`` (the router's --sticky-key-file) the hash is keyed: a client cannot
    work out which values land on which arm, so it cannot choose its arm."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8,
                             key=secret).digest()
    return int.from_bytes(digest, "big") / 2**64


def choose_arm(
    challenger_weight: float,
    sticky_key: str | None,
    draw: Callable[[], float] = random.random,
    secret: bytes = b"",
) -> str:
    """``challenger_weight`` is a percentage in [0, 100]."""
    if challenger_weight <= 0:
        return CHAMPION
    if challenger_weight >= 100:
        return CHALLENGER
    position = key_position(sticky_key, secret) if sticky_key is not None else draw()
    return CHALLENGER if position * 100 < challenger_weight else CHAMPION


def should_mirror(mirror_percent: float, draw: Callable[[], float] = random.random) -> bool:
    if mirror_percent >= 100:
        return True
    return mirror_percent > 0 and draw() * 100 < mirror_percent


def first_output(response: object) -> list[object] | None:
    """The data of a V2 response's first output, used to compare paired answers."""
    if not isinstance(response, dict):
        return None
    outputs = response.get("outputs")
    if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
        return None
    data = outputs[0].get("data")
    return data if isinstance(data, list) else None


def agreement(primary: list[object] | None, shadow: list[object] | None,
              tolerance: float = 1e-6) -> str:
    """``agree``/``disagree`` for two answers to one request; ``error`` if either is missing."""
    if primary is None or shadow is None:
        return "error"
    if len(primary) != len(shadow):
        return "disagree"
    for a, b in zip(primary, shadow, strict=True):
        if isinstance(a, int | float) and isinstance(b, int | float):
            if abs(float(a) - float(b)) > tolerance * max(1.0, abs(float(a)), abs(float(b))):
                return "disagree"
        elif a != b:
            return "disagree"
    return "agree"
