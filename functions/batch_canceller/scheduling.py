"""One-time scheduled cancellations: an EventBridge Scheduler `at()` schedule per batch that
sends the command back to the queue at `cancel_at`, then deletes itself."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batch_canceller.commands import CancelCommand, InvalidInput
from batch_canceller.deadline import Deadline
from batch_canceller.queue import OutgoingMessage, QueueSender
from batch_canceller.records import utc_now

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

# Time to leave before the next schedule: its create, list and delete calls.
SECONDS_PER_SCHEDULE = 2.0
# Our own bound: a cancellation planned further out is more likely a typo than a plan.
MAX_SCHEDULE_AHEAD = timedelta(days=366)
NAME_PREFIX = "cancel-"


def schedule_name_prefix(batch_id: str) -> str:
    # Schedule names allow 64 characters; batch IDs up to 256, so the ID is hashed.
    return NAME_PREFIX + hashlib.sha256(batch_id.encode()).hexdigest()[:20] + "-"


def schedule_name(batch_id: str, at: datetime) -> str:
    return schedule_name_prefix(batch_id) + at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")


class CancellationScheduler:
    def __init__(
        self,
        client: Callable[[], EventBridgeSchedulerClient],
        group_name: str,
        role_arn: str | None,
        queue_arn: str,
        queue: QueueSender | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        # Made on first use: most containers never schedule, and a client costs cold start.
        self._make_client = client
        self._group = group_name
        self._role_arn = role_arn
        self._queue_arn = queue_arn
        self._queue = queue
        self._clock = clock

    @functools.cached_property
    def _client(self) -> EventBridgeSchedulerClient:
        return self._make_client()

    def run(self, command: CancelCommand, deadline: Deadline) -> dict[str, Any]:
        at = self._validated_time(command)
        created: list[str] = []
        for index, batch_id in enumerate(command.batch_ids):
            if not deadline.allows(SECONDS_PER_SCHEDULE) and self._queue is not None:
                # Out of time: the rest goes back to the queue as a command of its own.
                rest = command.batch_ids[index:]
                self._requeue(rest, at, command)
                return {
                    "status": "partially_scheduled",
                    "cancel_at": at.isoformat(),
                    "schedules": created,
                    "requeued": len(rest),
                }
            name = schedule_name(batch_id, at)
            self._create(name, batch_id, at, command)
            self._delete_others(batch_id, keep=name)
            created.append(name)
        return {"status": "scheduled", "cancel_at": at.isoformat(), "schedules": created}

    def _requeue(self, batch_ids: Sequence[str], at: datetime, command: CancelCommand) -> None:
        assert self._queue is not None
        body: dict[str, Any] = {"batch_ids": list(batch_ids)}
        if at > self._clock():
            body["cancel_at"] = at.isoformat()  # else it is due: a plain cancel, done on arrival
        if command.reason is not None:
            body["reason"] = command.reason
        if command.requested_by is not None:
            body["requested_by"] = command.requested_by
        if not all(self._queue.send_many([OutgoingMessage(body)])):
            raise RuntimeError("the rest of a cancel_at command could not be requeued")

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

    def _create(self, name: str, batch_id: str, at: datetime, command: CancelCommand) -> None:
        body: dict[str, Any] = {"batch_ids": [batch_id]}
        if command.reason is not None:
            body["reason"] = command.reason
        if command.requested_by is not None:
            body["requested_by"] = command.requested_by
        try:
            self._client.create_schedule(
                Name=name,
                GroupName=self._group,
                ScheduleExpression=f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={
                    "Arn": self._queue_arn,
                    "RoleArn": str(self._role_arn),
                    "Input": json.dumps(body, separators=(",", ":")),
                },
                Description=f"batch-canceller: cancel {batch_id}"[:512],
            )
        except ClientError as exc:
            # The same command sent twice names the same schedule: one schedule, not an error.
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise

    def _delete_others(self, batch_id: str, keep: str) -> None:
        """A later cancel_at for the same batch replaces the earlier schedule."""
        paginator = self._client.get_paginator("list_schedules")
        for page in paginator.paginate(
            GroupName=self._group, NamePrefix=schedule_name_prefix(batch_id)
        ):
            for schedule in page.get("Schedules", []):
                name = schedule.get("Name")
                if name and name != keep:
                    try:
                        self._client.delete_schedule(Name=name, GroupName=self._group)
                    except ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                            raise
