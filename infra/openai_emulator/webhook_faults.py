"""Faults injected into webhook deliveries: which deliveries they hit, and what they do.

Kinds (one per delivery; the first armed rule that matches fires):
- `duplicate`: the delivery is sent twice, the copy `delay_ms` after the original, same
  webhook-id and body;
- `delay`: the first attempt waits `delay_ms`;
- `out_of_order`: the delivery is held until the next delivery has been sent once;
- `wrong_signature`: every attempt is signed with another key (verification must fail);
- `never_sent`: recorded as dropped, nothing goes out.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

WEBHOOK_FAULT_KINDS = frozenset(
    {"duplicate", "delay", "out_of_order", "wrong_signature", "never_sent"}
)


@dataclass(frozen=True)
class WebhookFault:
    """`times` deliveries then disarmed (None = forever); `probability` < 1 draws from
    `random.Random(seed)`; `event_type` / `batch_id`, when set, narrow what it hits."""

    kind: str
    times: int | None = 1
    probability: float = 1.0
    seed: int | None = None
    delay_ms: int = 0
    event_type: str | None = None
    batch_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in WEBHOOK_FAULT_KINDS:
            raise ValueError(
                f"unknown webhook fault kind {self.kind!r}; use one of {sorted(WEBHOOK_FAULT_KINDS)}"
            )
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1, or None for forever")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within 0..1")
        if self.delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")

    @classmethod
    def from_dict(cls, data: Any) -> WebhookFault:
        if not isinstance(data, dict):
            raise TypeError("a webhook fault must be a JSON object")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown webhook fault fields: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Armed:
    fault: WebhookFault
    rng: random.Random
    remaining: int | None

    def matches(self, event_type: str, batch_id: str) -> bool:
        fault = self.fault
        if fault.event_type is not None and fault.event_type != event_type:
            return False
        return fault.batch_id is None or fault.batch_id == batch_id


class WebhookFaultSet:
    """Armed webhook faults in injection order, and how often each kind fired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._counts: Counter[str] = Counter()

    def add(self, fault: WebhookFault) -> None:
        rng = random.Random(fault.seed)  # noqa: S311 - test randomness, not security
        with self._lock:
            self._armed.append(_Armed(fault, rng, fault.times))

    def clear(self, *, counts: bool = False) -> None:
        with self._lock:
            self._armed.clear()
            if counts:
                self._counts.clear()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def armed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**a.fault.to_json(), "remaining": a.remaining} for a in self._armed]

    def match(self, event_type: str, batch_id: str) -> WebhookFault | None:
        with self._lock:
            for armed in self._armed:
                if not armed.matches(event_type, batch_id):
                    continue
                probability = armed.fault.probability
                if probability < 1.0 and armed.rng.random() >= probability:
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._armed.remove(armed)
                self._counts[armed.fault.kind] += 1
                return armed.fault
        return None
