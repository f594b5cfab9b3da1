"""The status-check chain that follows a batch after a cancel until it is terminal, as a table
(docs/exactly-once.md): when the next check goes out, and whether an arriving check is the
chain's current step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from batch_canceller.commands import StatusCheck
from batch_canceller.records import BatchRecord
from batch_canceller.statuses import is_terminal


@dataclass(frozen=True)
class PollSettings:
    initial_delay_seconds: int
    max_delay_seconds: int
    timeout_seconds: int
    # With webhooks (WEBHOOK_FIRST_CHECK_DELAY_SECONDS): the first check waits this long, as a
    # webhook usually ends the batch before it; the later ones double as without.
    first_delay_seconds: int | None = None

    def delay_before(self, attempt: int, since: datetime, now: datetime) -> int:
        """Wait before check `attempt`: doubling from the initial delay, capped, and never past
        the moment the watch times out (so a stall is noticed when it happens)."""
        # With an initial delay of 0 the first check is immediate and later ones still grow.
        base = self.initial_delay_seconds if attempt == 1 else max(1, self.initial_delay_seconds)
        growing = min(self.max_delay_seconds, base * 2 ** min(attempt - 1, 32))
        if attempt == 1 and self.first_delay_seconds is not None:
            growing = self.first_delay_seconds
        left = self.timeout_seconds - (now - since).total_seconds()
        return int(max(0, min(growing, math.ceil(left))))

    def timed_out(self, check: StatusCheck, now: datetime) -> bool:
        return self.expired(check.since, now)

    def expired(self, since: datetime | None, now: datetime) -> bool:
        """A watch that started at `since` has run out (one with no start has not)."""
        return since is not None and (now - since).total_seconds() >= self.timeout_seconds


class CheckStep(Enum):
    ENDED = "ended"  # terminal (or no status): the terminal write owes the outcome
    SUPERSEDED = "superseded"  # another chain, or another token won this step
    CURRENT = "current"  # this check holds the chain's step: stall, or send the next one
    TAKE = "take"  # the record holds the step before this one: take it (conditional)


def classify(record: BatchRecord, check: StatusCheck) -> CheckStep:
    """Where an arriving check stands, from the record its own write returned."""
    # Any status short of terminal goes on: `cancelling`, and the `in_progress` (or
    # `validating`, `finalizing`) of a gateway that answered the cancel before acting on it.
    if record.status is None or is_terminal(record.status):
        return CheckStep.ENDED
    if record.watch_id != check.watch_id:
        return CheckStep.SUPERSEDED
    # A chain started before steps had tokens has none on either side.
    if record.poll_attempt == check.attempt and (record.poll_step or "") == check.step:
        return CheckStep.CURRENT
    if record.poll_attempt == check.attempt - 1:
        return CheckStep.TAKE
    return CheckStep.SUPERSEDED
