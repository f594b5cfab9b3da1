"""The reconciler's table: what it does about one record, from the record's own facts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from batch_canceller.announce_protocol import Claim
from batch_canceller.commands import ReconcileRequest, parse_message_body
from batch_canceller.reconcile import NO_WATCH, Action, assess, next_check
from batch_canceller.records import BatchRecord

NOW = 1_800_000_000.0
STALE_AFTER = 1800.0
CANCELLED = "Batch Cancelled"
STALLED = "Batch Cancel Stalled"


def record(status: str = "cancelling", **facts: Any) -> BatchRecord:
    chain = {"watch_id": "w1", "poll_attempt": 3, "poll_advanced_at": NOW - 10}
    return BatchRecord("batch_r1", status, None, None, **{**chain, **facts})


CASES = {
    "a chain that took a step lately": (record(), Action.WAIT),
    "a chain with no step for twice the longest delay": (
        record(poll_advanced_at=NOW - STALE_AFTER),
        Action.CHECK,
    ),
    "a chain from before steps were timed": (record(poll_advanced_at=None), Action.CHECK),
    "a gateway's in_progress, followed, with no step lately": (
        record("in_progress", poll_advanced_at=NOW - 5000),
        Action.CHECK,
    ),
    "a timed-out chain whose stall was never recorded": (
        record(poll_advanced_at=NOW - 90_000),
        Action.CHECK,
    ),
    # The marks of its stall took it out of the index; back in it, a cancel asked again.
    "a stalled watch, its stall announced, in the index again": (
        record(poll_advanced_at=NOW - 90_000, stalled_watch="w1"),
        Action.RESTART,
    ),
    "an older watch stalled, the current one is stuck": (
        record(poll_advanced_at=NOW - 5000, stalled_watch="w0"),
        Action.CHECK,
    ),
    "terminal, nothing owed": (record("cancelled"), Action.SETTLE),
    "terminal, owed, no claim (released)": (
        record("cancelled", pending_events=frozenset({CANCELLED})),
        Action.CHECK,
    ),
    "terminal, owed, a lapsed claim (its publisher died)": (
        record(
            "cancelled",
            pending_events=frozenset({CANCELLED}),
            claims={CANCELLED: Claim("m/1", NOW - 1)},
        ),
        Action.CHECK,
    ),
    "terminal, owed, a live claim": (
        record(
            "cancelled",
            pending_events=frozenset({CANCELLED}),
            claims={CANCELLED: Claim("m/1", NOW + 60)},
        ),
        Action.WAIT,
    ),
    "a stall owed under a live claim, the chain stale": (
        record(
            poll_advanced_at=NOW - 90_000,
            stalled_watch="w1",
            pending_events=frozenset({STALLED}),
            claims={STALLED: Claim("m/1", NOW + 60)},
        ),
        Action.WAIT,
    ),
    "a cancel that failed (no status), its event owed and free": (
        BatchRecord(
            "batch_r1", None, None, None, pending_events=frozenset({"Batch Cancel Failed"})
        ),
        Action.CHECK,
    ),
}


@pytest.mark.parametrize(("case", "expected"), CASES.values(), ids=list(CASES))
def test_assess(case: BatchRecord, expected: Action) -> None:
    assert assess(case, NOW, STALE_AFTER) is expected


def test_the_requeued_check_is_for_the_chains_next_step_with_a_fresh_token() -> None:
    since = datetime(2026, 12, 1, tzinfo=UTC)
    now = datetime(2026, 12, 2, tzinfo=UTC)
    first = next_check(record(watch_since=since), now)
    second = next_check(record(watch_since=since), now)
    assert (first.watch_id, first.attempt, first.since) == ("w1", 4, since)
    assert first.step != second.step
    never_followed = next_check(BatchRecord("batch_r1", "cancelled", None, None), now)
    assert (never_followed.watch_id, never_followed.attempt) == (NO_WATCH, 1)


def test_a_reconcile_request_parses_with_its_bound() -> None:
    assert parse_message_body('{"reconcile": {}}') == ReconcileRequest(1000)
    assert parse_message_body('{"reconcile": {"max_records": 5}}') == ReconcileRequest(5)
