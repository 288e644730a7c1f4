"""The data plane's Secret per ModelDeployment, `<md>-dataplane-keys`, with two items:

- `sticky.key`: the key the router hashes sticky values with (created once, never rewritten);
- `receipt-keys.json`: the ring of keys the sidecars sign and verify feedback receipts with
  (rotated: see below).

A sticky header's value decides its arm through a hash. Unkeyed, the hash is public, so a
client could pick the value that lands on the arm it wants to hurt (or flatter) and steer a
gate. Keyed with a secret only the router knows, positions are unpredictable to clients while
staying the same in every replica and across restarts. The key never rotates: a new key would
move every sticky user to a new position, and so across arms mid-challenge.

The Secret is owned by the ModelDeployment, so it goes when the deployment goes.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .labels import object_labels

KEYS_SECRET_SUFFIX = "-dataplane-keys"
STICKY_KEY_ITEM = "sticky.key"
STICKY_KEY_BYTES = 32  # BLAKE2b takes keys up to 64 bytes; 32 is its usual strength
KEYS_VOLUME = "dataplane-keys"
KEYS_DIR = "/var/run/modelops/keys"  # where a data-plane container finds its items


def keys_secret_name(deployment: str) -> str:
    return f"{deployment}{KEYS_SECRET_SUFFIX}"


def keys_volume(deployment: str, items: Sequence[str]) -> dict[str, Any]:
    """The keys Secret as a pod volume holding only `items`: a sidecar never sees the sticky
    key. Its pod's fsGroup reads the files; nobody else in the container's user namespace."""
    return {
        "name": KEYS_VOLUME,
        "secret": {
            "secretName": keys_secret_name(deployment),
            "items": [{"key": item, "path": item} for item in items],
            "defaultMode": 0o440,
        },
    }


KEYS_MOUNT = {"name": KEYS_VOLUME, "mountPath": KEYS_DIR, "readOnly": True}


def build_keys_secret(
    deployment: str,
    namespace: str,
    now: float,
    policy: ReceiptKeyPolicy,
    token_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> dict[str, Any]:
    sticky = base64.b64encode(token_bytes(STICKY_KEY_BYTES)).decode("ascii")
    ring = rotated_receipt_keys(None, now, policy, token_bytes)
    assert ring is not None  # a first ring is always written
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": keys_secret_name(deployment),
            "namespace": namespace,
            "labels": object_labels(deployment),
        },
        "type": "Opaque",
        "data": {STICKY_KEY_ITEM: sticky, RECEIPT_KEYS_ITEM: encode_receipt_keys(ring)},
    }


# ----------------------------------------------------------------------------- receipt keys
# The sidecars sign each prediction's receipt with the ring's latest active key, and verify a
# returned receipt with whichever key of the ring signed it (dataplane/internal/receipt). So a
# new key is added ahead of its activeFrom (every replica must have it before any replica signs
# with it: the kubelet refreshes a mounted Secret within about a minute or two), and a key
# leaves the ring only once nothing it signed can still come back (maxDelay after it stopped
# signing, plus the receipts' clock skew).
RECEIPT_KEYS_ITEM = "receipt-keys.json"
RECEIPT_KEY_BYTES = 32
RECEIPT_CLOCK_SKEW_SECONDS = 300  # dataplane/internal/receipt.ClockSkew


DEFAULT_MAX_DELAY_SECONDS = 7 * 86400.0  # spec.monitoring.feedback.maxDelay's default
LONGEST_MAX_DELAY_SECONDS = 720 * 3600.0  # the most maxDelay may be (the CRD's rule)
RECEIPT_KEYS_PATH = f"{KEYS_DIR}/receipt-keys.json"


@dataclass(frozen=True)
class ReceiptKeyPolicy:
    rotate_every: float = 7 * 86400.0
    propagation: float = 300.0  # a new key verifies everywhere before it signs anywhere
    max_delay: float = DEFAULT_MAX_DELAY_SECONDS


def rotated_receipt_keys(
    ring: Mapping[str, Any] | None,
    now: float,
    policy: ReceiptKeyPolicy,
    token_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> dict[str, Any] | None:
    """The key ring to write at `now`, or None when the one in force needs no change."""
    keys = sorted((ring or {}).get("keys") or [], key=lambda k: k["activeFrom"])
    changed = False
    if not keys or now >= keys[-1]["activeFrom"] + policy.rotate_every:
        # The first key signs at once (no pod can have signed anything yet).
        active_from = now if not keys else now + policy.propagation
        keys.append(_new_key(int(now), int(active_from), token_bytes))
        changed = True
    kept = [
        key
        for key, successor in zip(keys, [*keys[1:], None], strict=True)
        if successor is None
        or now <= successor["activeFrom"] + policy.max_delay + RECEIPT_CLOCK_SKEW_SECONDS
    ]
    if len(kept) != len(keys):
        changed = True
    return {"keys": kept} if changed else None


def _new_key(now: int, active_from: int, token_bytes: Callable[[int], bytes]) -> dict[str, Any]:
    secret = base64.b64encode(token_bytes(RECEIPT_KEY_BYTES)).decode("ascii")
    return {"id": f"k{now}", "secret": secret, "activeFrom": active_from}


def receipt_keys_of(secret: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ring in a keys Secret as read from the API (data base64-encoded); None if absent or
    unreadable (then a new ring replaces it: receipts of the old one are refused as unknown)."""
    encoded = (secret.get("data") or {}).get(RECEIPT_KEYS_ITEM)
    if not encoded:
        return None
    try:
        ring = json.loads(base64.b64decode(encoded))
    except (ValueError, TypeError):
        return None
    return ring if isinstance(ring, dict) and isinstance(ring.get("keys"), list) else None


def encode_receipt_keys(ring: Mapping[str, Any]) -> str:
    return base64.b64encode(json.dumps(ring, separators=(",", ":")).encode()).decode("ascii")
