"""Cancels batches and follows them: many at once, each to a stored record and its events.

One run takes the work items of one invocation and goes through three phases:
1. the API call and the conditional write of each item, on a bounded pool of threads (`work`);
2. the status checks those writes call for, ten to a SendMessageBatch;
3. the events the records owe, through the exactly-once protocol (`announcing`).
A work item that is not finished (its follow-up not sent, an event not yet announced) is
reported failed, and its message comes back, at a set time when the protocol says when.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial

from batch_canceller.announce_protocol import RECEIPT_GRACE_SECONDS
from batch_canceller.announcing import Announcer, EventKey, Verdict, owed_events
from batch_canceller.commands import PublicationReceipt
from batch_canceller.concurrency import MapFn
from batch_canceller.deadline import FINISH_SECONDS, Deadline
from batch_canceller.follow_up import PollSettings
from batch_canceller.observability import Tally
from batch_canceller.pending_schedules import PendingSchedules
from batch_canceller.queue import OutgoingMessage, QueueSender
from batch_canceller.store import BatchStore
from batch_canceller.work import CancelWork, WorkItem, WorkResult, WorkRunner

# The share of an invocation's usable time kept for sending checks and announcing events.
ANNOUNCE_SHARE = 0.3


class CancelProcessor:
    def __init__(
        self,
        runner: WorkRunner,
        store: BatchStore,
        announcer: Announcer,
        queue: QueueSender,
        poll: PollSettings,
        map_fn: MapFn,
        tally: Tally,
        clock: Callable[[], datetime],
        receipt_grace_seconds: float = RECEIPT_GRACE_SECONDS,
        schedules: PendingSchedules | None = None,
    ) -> None:
        self._runner = runner
        self._store = store
        self._announcer = announcer
        self._queue = queue
        self._poll = poll
        self._map = map_fn
        self._tally = tally
        self._clock = clock
        self._grace = receipt_grace_seconds
        self._schedules = schedules

    def run(self, items: Sequence[WorkItem], deadline: Deadline) -> list[WorkResult]:
        # Claims this run writes last until no PutEvents of it can still be in flight, and its
        # receipt has had the grace to arrive.
        lease = self._clock().timestamp() + max(0.0, deadline.remaining_seconds()) + self._grace
        # New work stops while a share of the time is left for announcing what it produced
        # (marking an event costs about half the work that made it owed: `make bench`).
        work_deadline = deadline.keeping(ANNOUNCE_SHARE * max(0.0, deadline.usable_seconds()))
        run_one = partial(self._runner.run, deadline=work_deadline, lease=lease)
        results = list(self._map(run_one, items))
        results = self._send_checks(results, deadline)
        verdicts = self._announcer.announce(owed_events(results), deadline, lease)
        if self._schedules is not None:
            # A batch that ended needs its waiting cancel_at schedule no more (best effort).
            self._schedules.settle((result.record for result in results), deadline, self._map)
            # A schedule that fired sent one of these cancels, and is gone: so is its note.
            fired = [
                (item.work.batch_id, item.work.schedule)
                for item in items
                if isinstance(item.work, CancelWork) and item.work.schedule is not None
            ]
            self._schedules.fired(fired, deadline, self._map)
        return [_with_verdicts(result, verdicts) for result in results]

    def confirm(self, receipts: Sequence[PublicationReceipt]) -> list[bool]:
        return self._announcer.confirm(receipts)

    def _send_checks(self, results: list[WorkResult], deadline: Deadline) -> list[WorkResult]:
        due = [i for i, result in enumerate(results) if result.next_check and not result.failed]
        if not due:
            return results
        if not deadline.leaves(FINISH_SECONDS):
            for index in due:
                results[index] = replace(results[index], failure="check not sent: deadline")
            return results
        now = self._clock()
        checks = [check for i in due if (check := results[i].next_check) is not None]
        messages = [
            OutgoingMessage(
                check.to_message(), self._poll.delay_before(check.attempt, check.since, now)
            )
            for check in checks
        ]
        # A check takes its step in the record when it arrives; nothing is written here.
        sent = self._queue.send_many(messages, self._map)
        self._tally.count("StatusChecksScheduled", sum(sent))
        for index, ok in zip(due, sent, strict=True):
            if not ok:
                results[index] = replace(results[index], failure="status check could not be queued")
        return results


def _with_verdicts(result: WorkResult, verdicts: dict[EventKey, Verdict]) -> WorkResult:
    """A result whose record owes an event that is not announced yet fails, so that its
    message comes back: when the verdict says, or after the visibility timeout."""
    if result.record is None or result.failed:
        return result
    open_ = [
        verdict
        for detail_type in sorted(result.record.pending_events)
        if not (verdict := verdicts.get((result.record.batch_id, detail_type), _UNDECIDED)).done
    ]
    if not open_:
        return result
    afters = [verdict.after for verdict in open_ if verdict.after is not None]
    return replace(result, failure=open_[0].why, retry_after=max(afters) if afters else None)


_UNDECIDED = Verdict(done=False, why="event not announced")
