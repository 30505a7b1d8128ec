"""Which worker polls which device: weighted rendezvous hashing over the live workers of the device's pool.

A device stays on one worker while it lives (its counters and SNMP plan stay warm); when a worker joins
or dies only the devices it gains or held move (about 1/n of them, never a reshuffle of everyone), and
a worker that falls behind lowers its weight, which moves a share of its devices, and only those, to
the others. Everything here is arithmetic; the leader (dispatch_queue) feeds it what the database says.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

BEHIND_LAG = 5.0  # seconds of start lag (p95 over a minute) past which a worker sheds devices
SHED_FACTOR = 0.5  # a behind worker's weight is multiplied by this
RECOVER_FACTOR = 1.25  # ... and a worker that keeps up regains weight by this, up to 1
MIN_WEIGHT = 0.05
HOLD_SECONDS = 60.0  # its lag is measured over a minute: judge a change only after that


def _unit(name: str, device_id: int) -> float:
    """A uniform number in (0, 1) of one (worker, device) pair, the same in every process."""
    digest = hashlib.blake2b(f"{name}\x00{device_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def owner(device_id: int, weights: dict[str, float]) -> str | None:
    """The worker (by name) with the highest weighted score for this device; None when there is none."""
    best, best_score = None, -math.inf
    for name in sorted(weights):
        score = -weights[name] / math.log(_unit(name, device_id))
        if score > best_score:
            best, best_score = name, score
    return best


@dataclass
class Weights:
    """Each live worker's weight in its pool, lowered while it falls behind and regained when it keeps up."""

    weights: dict[str, float] = field(default_factory=dict)
    behind: dict[str, bool] = field(default_factory=dict)
    changed_at: dict[str, float] = field(default_factory=dict)

    def update(self, lags: dict[str, float | None], now: float | None = None) -> bool:
        """Take the live workers of one pool and their lag p95; True if any weight changed (devices move)."""
        now = time.monotonic() if now is None else now
        changed = set(lags) != set(self.weights)
        for name in [n for n in self.weights if n not in lags]:
            del self.weights[name]
            self.behind.pop(name, None)
            self.changed_at.pop(name, None)
        for name, lag in lags.items():
            if name not in self.weights:
                self.weights[name], self.changed_at[name] = 1.0, now
            late = lag is not None and lag > BEHIND_LAG
            self.behind[name] = late
            if now - self.changed_at[name] < HOLD_SECONDS:
                continue
            old = self.weights[name]
            if late and len(lags) > 1:  # alone in its pool it has nobody to shed to
                new = max(MIN_WEIGHT, old * SHED_FACTOR)
            elif not late:
                new = min(1.0, old * RECOVER_FACTOR)
            else:
                new = old
            if new != old:
                self.weights[name], self.changed_at[name] = new, now
                changed = True
        return changed


def assign(devices: list[int], weights: dict[str, float]) -> dict[int, str | None]:
    """Every device's owner among the given workers."""
    return {device_id: owner(device_id, weights) for device_id in devices}
