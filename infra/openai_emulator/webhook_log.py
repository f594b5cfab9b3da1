"""The webhook delivery log: each delivery, its attempts, their answers and times.

Times are `time.time()` seconds (floats). `changed_at` is the exact moment of the state change
the delivery announces, so a bench can measure from it to anything downstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DeliveryState = Literal["pending", "held", "delivered", "failed", "dropped"]


@dataclass
class Attempt:
    number: int  # 1 for the first
    started_at: float
    ended_at: float | None = None
    status: int | None = None  # None: no HTTP answer (see `error`)
    error: str | None = None  # "timeout", "connection refused", ...

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "status": self.status,
            "error": self.error,
        }


@dataclass(eq=False)  # identity: a duplicate's copy has the same fields
class Delivery:
    """One message to the endpoint; a `duplicate` fault makes a second with the same IDs."""

    webhook_id: str
    event_id: str
    event_type: str
    batch_id: str
    body: bytes
    changed_at: float
    queued_at: float
    url: str
    fault: str | None = None
    copy_of_original: bool = False
    state: DeliveryState = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    delivered_at: float | None = None
    # Which log it belongs to: a log cleared mid-attempt must not see it come back as a retry.
    generation: int = field(default=0, repr=False)

    @property
    def ok(self) -> bool:
        return self.state == "delivered"

    def to_json(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "event_id": self.event_id,
            "type": self.event_type,
            "batch_id": self.batch_id,
            "url": self.url,
            "body": self.body.decode(),
            "changed_at": self.changed_at,
            "queued_at": self.queued_at,
            "fault": self.fault,
            "duplicate": self.copy_of_original,
            "state": self.state,
            "delivered_at": self.delivered_at,
            "attempts": [a.to_json() for a in self.attempts],
        }
