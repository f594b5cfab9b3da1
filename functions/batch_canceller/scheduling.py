"""One-time scheduled cancellations: an EventBridge Scheduler `at()` schedule per batch that
sends the command back to the queue at `cancel_at`, then deletes itself.

Each batch has one schedule, named from its ID (`schedule_writer`), and a command's schedules
are written by a few threads at once. The writes stop CALL_SECONDS before the invocation's
reserve; what was not written then (or failed for a while: throttling, 5xx, a timeout) goes
back to the queue as one `cancel_at` command, so a long command finishes over several
invocations instead of starting again from its first ID.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from batch_canceller.commands import CancelCommand, InvalidInput
from batch_canceller.deadline import Deadline
from batch_canceller.observability import Tally, logger
from batch_canceller.pending_schedules import PendingSchedules
from batch_canceller.queue import OutgoingMessage, QueueSender
from batch_canceller.records import utc_now
from batch_canceller.schedule_writer import CALL_SECONDS, WriteResult, Written, write_schedule

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

# Scheduler calls in flight at once for one command: enough to write 1,000 schedules in a few
# seconds, few enough to stay inside Scheduler's request rates.
SCHEDULE_WORKERS = 8
# A rest that holds IDs whose write failed comes back after this long, not at once.
RETRY_DELAY_SECONDS = 10
# Our own bound: a cancellation planned further out is more likely a typo than a plan.
MAX_SCHEDULE_AHEAD = timedelta(days=366)
NAME_PREFIX = "cancel-"


def schedule_name(batch_id: str) -> str:
    # Schedule names allow 64 characters; batch IDs up to 256, so the ID is hashed (47 here).
    return NAME_PREFIX + hashlib.sha256(batch_id.encode()).hexdigest()[:40]


def legacy_name_prefix(batch_id: str) -> str:
    """Versions before issue 11 named a schedule per (batch, time): `<this><YYYYmmddTHHMMSS>`.
    Such schedules still fire at their time; the CLI finds them by this prefix."""
    return NAME_PREFIX + hashlib.sha256(batch_id.encode()).hexdigest()[:20] + "-"


class SchedulerUnavailable(RuntimeError):
    """No schedule could be written (the role, the group, or Scheduler itself): the message
    fails and comes back, counting towards the queue's redrive to the DLQ."""


class CancellationScheduler:
    def __init__(
        self,
        client: Callable[[], EventBridgeSchedulerClient],
        group_name: str,
        role_arn: str | None,
        queue_arn: str,
        queue: QueueSender | None = None,
        clock: Callable[[], datetime] = utc_now,
        tally: Tally | None = None,
        workers: int = SCHEDULE_WORKERS,
        pending: PendingSchedules | None = None,
    ) -> None:
        # Made on first use: most containers never schedule, and a client costs cold start.
        self._make_client = client
        self._group = group_name
        self._role_arn = role_arn
        self._queue_arn = queue_arn
        self._queue = queue
        self._clock = clock
        self._tally = tally or Tally()
        self._workers = workers
        self._pending = pending

    @functools.cached_property
    def _client(self) -> EventBridgeSchedulerClient:
        return self._make_client()

    def run(self, command: CancelCommand, deadline: Deadline) -> dict[str, Any]:
        at = self._validated_time(command)
        results = self._write_all(command, at, deadline)
        by_outcome: dict[Written, list[WriteResult]] = {kind: [] for kind in Written}
        for result in results:
            by_outcome[result.written].append(result)
        scheduled = [schedule_name(r.batch_id) for r in by_outcome[Written.SCHEDULED]]
        rejected = {r.batch_id: str(r.reason) for r in by_outcome[Written.REJECTED]}
        failed = by_outcome[Written.TRANSIENT]
        rest = [
            r.batch_id for r in results if r.written in (Written.NOT_STARTED, Written.TRANSIENT)
        ]
        self._report(by_outcome)
        if by_outcome[Written.CONFIGURATION]:
            raise SchedulerUnavailable(str(by_outcome[Written.CONFIGURATION][0].reason))
        if failed and not scheduled and not rejected:
            # Nothing went through: the message comes back with its receive count, so that
            # a Scheduler that stays down ends in the DLQ instead of a requeue loop.
            raise SchedulerUnavailable(f"no schedule written: {failed[0].reason}")
        if rejected and not scheduled and not rest:
            raise InvalidInput(f"Scheduler rejected the schedule: {next(iter(rejected.values()))}")
        summary: dict[str, Any] = {
            "status": "scheduled" if len(scheduled) == len(results) else "partially_scheduled",
            "cancel_at": at.isoformat(),
            "schedules": scheduled,
        }
        if rest:
            self._requeue(rest, at, command, RETRY_DELAY_SECONDS if failed else 0)
        if summary["status"] != "scheduled":
            summary["requeued"] = len(rest)
        if rejected:
            summary["rejected"] = rejected
        return summary

    def _write_all(
        self, command: CancelCommand, at: datetime, deadline: Deadline
    ) -> list[WriteResult]:
        client = self._client  # made here, not by several threads at once
        stop = threading.Event()  # a configuration error: no other ID can succeed either
        # Without a queue to send the rest to, every ID is tried, as long as it takes.
        bounded = self._queue is not None

        def may_call() -> bool:
            return not stop.is_set() and (not bounded or deadline.allows(CALL_SECONDS))

        def write(batch_id: str) -> WriteResult:
            result = write_schedule(
                client, batch_id, self._definition(batch_id, at, command), may_call
            )
            if result.written is Written.CONFIGURATION:
                stop.set()
            elif result.written is Written.SCHEDULED and self._pending is not None:
                self._pending.noted(batch_id, schedule_name(batch_id), may_call)
            return result

        ids = command.batch_ids
        with ThreadPoolExecutor(
            max_workers=max(1, min(self._workers, len(ids))), thread_name_prefix="schedule"
        ) as pool:
            return list(pool.map(write, ids))

    def _definition(self, batch_id: str, at: datetime, command: CancelCommand) -> dict[str, Any]:
        name = schedule_name(batch_id)
        # `schedule`: when it fires, the cancel it sends removes the record's note of it.
        body: dict[str, Any] = {"batch_ids": [batch_id], "schedule": name}
        if command.reason is not None:
            body["reason"] = command.reason
        if command.requested_by is not None:
            body["requested_by"] = command.requested_by
        return {
            "Name": name,
            "GroupName": self._group,
            "ScheduleExpression": f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "ActionAfterCompletion": "DELETE",
            "State": "ENABLED",  # an update re-enables a schedule an operator had disabled
            "Target": {
                "Arn": self._queue_arn,
                "RoleArn": str(self._role_arn),
                "Input": json.dumps(body, separators=(",", ":")),
            },
            "Description": f"batch-canceller: cancel {batch_id}"[:512],
        }

    def _report(self, by_outcome: dict[Written, list[WriteResult]]) -> None:
        for result in by_outcome[Written.REJECTED]:
            logger.error(
                "schedule rejected by Scheduler",
                extra={"batch_id": result.batch_id, "why": result.reason},
            )
        for name, kind in (
            ("SchedulesRejected", Written.REJECTED),
            ("ScheduleWriteFailures", Written.TRANSIENT),
            ("ConfigurationErrors", Written.CONFIGURATION),
        ):
            if by_outcome[kind]:
                self._tally.count(name, len(by_outcome[kind]))
        if by_outcome[Written.TRANSIENT]:
            logger.warning(
                "schedules not written, sent on with the rest",
                extra={
                    "failed": len(by_outcome[Written.TRANSIENT]),
                    "why": by_outcome[Written.TRANSIENT][0].reason,
                },
            )

    def _requeue(
        self, batch_ids: Sequence[str], at: datetime, command: CancelCommand, delay: int
    ) -> None:
        assert self._queue is not None  # without a queue, every ID was tried
        body: dict[str, Any] = {"batch_ids": list(batch_ids)}
        if at > self._clock():
            body["cancel_at"] = at.isoformat()  # else it is due: a plain cancel, done on arrival
        if command.reason is not None:
            body["reason"] = command.reason
        if command.requested_by is not None:
            body["requested_by"] = command.requested_by
        # One message: the rest of one command holds at most its 1,000 IDs.
        if not all(self._queue.send_many([OutgoingMessage(body, delay)])):
            raise RuntimeError("the rest of a cancel_at command could not be requeued")
        self._tally.count("Requeued", len(batch_ids))

    def _validated_time(self, command: CancelCommand) -> datetime:
        if self._role_arn is None:
            raise InvalidInput("cancel_at is not available: SCHEDULER_ROLE_ARN is not configured")
        assert command.cancel_at is not None  # only scheduled commands come here
        now = self._clock()
        if command.cancel_at <= now:
            raise InvalidInput(f"cancel_at {command.cancel_at.isoformat()} is in the past")
        # Schedules take whole seconds: the next one, never a moment before the time asked for.
        exact = command.cancel_at.astimezone(UTC)
        at = exact.replace(microsecond=0) + timedelta(seconds=1 if exact.microsecond else 0)
        if at - now > MAX_SCHEDULE_AHEAD:
            raise InvalidInput(
                f"cancel_at {at.isoformat()} is more than {MAX_SCHEDULE_AHEAD.days} days ahead"
            )
        return at
