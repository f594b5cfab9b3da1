"""The status-check chain's table (docs/exactly-once.md): where an arriving check stands."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from batch_canceller.commands import StatusCheck
from batch_canceller.follow_up import CheckStep, classify
from batch_canceller.records import BatchRecord

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
CHECK = StatusCheck("batch_c1", "watch-1", attempt=3, since=SINCE, step="step-3")


def record(status: str, watch_id: str, attempt: int, step: str) -> BatchRecord:
    return BatchRecord(
        "batch_c1",
        status,
        None,
        None,
        watch_id=watch_id,
        poll_attempt=attempt,
        poll_step=step,
    )


# (status, record's watch, record's attempt, record's step) -> step, for check 3 of watch-1
# with token step-3.
FOLLOWED = ("cancelling", "in_progress")  # short of terminal: a gateway may lag its cancel
TABLE = {
    **{
        (status, watch, attempt, step): CheckStep.ENDED
        for status in ("cancelled", "completed")
        for watch in ("watch-1", "watch-2")
        for attempt in (2, 3, 4)
        for step in ("step-3", "step-x")
    },
    **{
        (status, *row): expected
        for status in FOLLOWED
        for row, expected in {
            ("watch-2", 2, "step-3"): CheckStep.SUPERSEDED,
            ("watch-2", 2, "step-x"): CheckStep.SUPERSEDED,
            ("watch-2", 3, "step-3"): CheckStep.SUPERSEDED,
            ("watch-2", 3, "step-x"): CheckStep.SUPERSEDED,
            ("watch-2", 4, "step-3"): CheckStep.SUPERSEDED,
            ("watch-2", 4, "step-x"): CheckStep.SUPERSEDED,
            # The record holds step 2: this check takes step 3 (conditional; one token wins).
            ("watch-1", 2, "step-3"): CheckStep.TAKE,
            ("watch-1", 2, "step-x"): CheckStep.TAKE,
            ("watch-1", 3, "step-3"): CheckStep.CURRENT,
            # Another check 3 won step 3: this one is a duplicate.
            ("watch-1", 3, "step-x"): CheckStep.SUPERSEDED,
            ("watch-1", 4, "step-3"): CheckStep.SUPERSEDED,
            ("watch-1", 4, "step-x"): CheckStep.SUPERSEDED,
        }.items()
    },
}


def test_the_table_covers_every_combination() -> None:
    combinations = set(
        itertools.product(
            ("cancelled", "completed", "in_progress", "cancelling"),
            ("watch-1", "watch-2"),
            (2, 3, 4),
            ("step-3", "step-x"),
        )
    )
    assert set(TABLE) == combinations


@pytest.mark.parametrize(("row", "expected"), TABLE.items(), ids=str)
def test_classify(row: tuple[str, str, int, str], expected: CheckStep) -> None:
    assert classify(record(*row), CHECK) is expected


def test_a_record_without_a_status_ends_the_chain() -> None:
    # Only an error was ever stored (the batch was never seen): nothing to follow.
    assert classify(BatchRecord("batch_c1", None, None, None, watch_id="watch-1"), CHECK) is (
        CheckStep.ENDED
    )


def test_a_check_from_before_steps_had_tokens_is_current_on_a_record_without_one() -> None:
    legacy = StatusCheck("batch_c1", "watch-1", attempt=3, since=SINCE)
    untokened = BatchRecord(
        "batch_c1", "cancelling", None, None, watch_id="watch-1", poll_attempt=3
    )
    assert classify(untokened, legacy) is CheckStep.CURRENT
