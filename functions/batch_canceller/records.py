"""The BatchesTable item as the function reads it: the contract's attributes and the bookkeeping.

Bookkeeping (docs/exactly-once.md): the event ledger (`pending_events`, `announced_events`, one
`claim <detail type>` per owed event); the status-check chain following a batch after a cancel
until it is terminal (`watch_id`, `watch_since`, `poll_attempt`, `poll_step`, `poll_advanced_at`,
and `stalled_watch`: the watch whose stall the ledger's stall entry is about);
`follow_through`, present while the record is followed or owes an event (the reconciler's index);
`webhook_events` and `ended_by`, what webhook notices did to it (`webhook_notice`);
`cancel_schedule`, the name of a `cancel_at` schedule waiting for the batch (pending_schedules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batch_canceller.announce_protocol import Claim, Ledger
from batch_canceller.json_values import from_item
from batch_canceller.statuses import is_terminal

CLAIM_PREFIX = "claim "
SCHEDULE_NOTE = "cancel_schedule"


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    status: str | None
    batch: dict[str, Any] | None
    updated_at: str | None
    reason: str | None = None
    requested_by: str | None = None
    last_error: dict[str, Any] | None = None
    pending_events: frozenset[str] = frozenset()
    announced_events: frozenset[str] = frozenset()
    watch_id: str | None = None
    watch_since: datetime | None = None
    poll_attempt: int = 0
    poll_step: str | None = None
    # When the chain last took a step (epoch seconds), as the step's own write recorded it.
    poll_advanced_at: float | None = None
    stalled_watch: str | None = None
    follow_through: bool = False
    claims: Mapping[str, Claim] = field(default_factory=dict)
    # The webhook events (`evt_...`) whose notice refreshed this record, and "webhook" when
    # one of those refreshes was the write that made the batch terminal.
    webhook_events: frozenset[str] = frozenset()
    ended_by: str | None = None
    cancel_schedule: str | None = None

    @classmethod
    def from_attributes(cls, attributes: dict[str, Any]) -> BatchRecord:
        item = from_item(attributes)
        since = item.get("watch_since")
        return cls(
            batch_id=str(item["batch_id"]),
            status=item.get("status"),
            batch=item.get("batch"),
            updated_at=item.get("updated_at"),
            reason=item.get("reason"),
            requested_by=item.get("requested_by"),
            last_error=item.get("last_error"),
            pending_events=frozenset(item.get("pending_events", ())),
            announced_events=frozenset(item.get("announced_events", ())),
            watch_id=item.get("watch_id"),
            watch_since=datetime.fromisoformat(since) if since else None,
            poll_attempt=int(item.get("poll_attempt", 0)),
            poll_step=item.get("poll_step"),
            poll_advanced_at=_number(item.get("poll_advanced_at")),
            stalled_watch=item.get("stalled_watch"),
            follow_through="follow_through" in item,
            claims={
                key.removeprefix(CLAIM_PREFIX): Claim(str(value["token"]), float(value["expires"]))
                for key, value in item.items()
                if key.startswith(CLAIM_PREFIX) and isinstance(value, dict)
            },
            webhook_events=frozenset(item.get("webhook_events", ())),
            ended_by=item.get("ended_by"),
            cancel_schedule=item.get(SCHEDULE_NOTE),
        )

    def ledger(self, detail_type: str) -> Ledger:
        """What this record says about one of its events."""
        return Ledger(detail_type in self.pending_events, self.claims.get(detail_type))

    @property
    def followed(self) -> bool:
        """A chain of status checks follows the batch: it has a status short of terminal (the
        chain's writes end it at the first terminal status)."""
        return self.status is not None and not is_terminal(self.status)

    @property
    def chain_ended(self) -> bool:
        """No chain goes on: the batch is terminal, or its current watch stalled."""
        return not self.followed or (
            self.watch_id is not None and self.stalled_watch == self.watch_id
        )


@dataclass(frozen=True)
class Watch:
    """A new status-check chain for a `cancelling` batch: its ID and the time its timeout
    counts from. It has taken no step yet (`poll_attempt` 0): its first check takes step 1."""

    watch_id: str
    since: datetime


@dataclass(frozen=True)
class SaveResult:
    record: BatchRecord
    # False when the stored state was already as new or newer (stale answer, duplicate).
    changed: bool
    # The events this write made owed and claimed for the writing delivery.
    claimed: frozenset[str] = frozenset()


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
