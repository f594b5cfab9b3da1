"""What a record's owed events mean, in words, from its ledger (docs/exactly-once.md): each
owed event is claimed (live), lapsed, or free, and each state has its own next step."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from batch_canceller.records import CLAIM_PREFIX, SCHEDULE_NOTE


def explain(row: Mapping[str, Any], now: float) -> list[str]:
    """One line per owed event of a record (as `status` reads it: plain values), and one for
    a `cancel_at` schedule still waiting."""
    batch_id = row.get("batch_id")
    owed = row.get("pending_events")
    lines = [
        f"{batch_id}: {event}: owed, {_state(row.get(CLAIM_PREFIX + str(event)), now)}"
        for event in (sorted(str(e) for e in owed) if isinstance(owed, list) else [])
    ]
    if row.get(SCHEDULE_NOTE):
        lines.append(
            f"{batch_id}: a cancel_at schedule waits ({row[SCHEDULE_NOTE]}); it is deleted once"
            " the batch is terminal (`batch-canceller schedules`)"
        )
    return lines


def _state(claim: object, now: float) -> str:
    expires = claim.get("expires") if isinstance(claim, Mapping) else None
    if not isinstance(expires, int | float):
        # Free: the bus refused it and its publisher let the claim go.
        return "not yet published: the redelivery of its message publishes it"
    when = _iso(float(expires))
    if expires > now:
        return (
            f"claimed by an invocation until {when}: being published, or published and waiting"
            " for its receipt; if that invocation died, the next delivery takes it over then"
        )
    return (
        f"its claim lapsed at {when} (the invocation died, or its receipt is late): the next"
        " delivery of its message, or the reconciler, publishes it unless a receipt comes first"
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
