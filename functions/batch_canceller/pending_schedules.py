"""A batch's waiting `cancel_at` schedule, removed once the batch is terminal.

The record notes the schedule (`cancel_schedule`, its name) when one is written, so only the
batches that have one cost a Scheduler call when they end. The note is written only while the
batch is not terminal; either order of the two writes ends with the schedule deleted:
- the note first: the terminal write returns the record with the note, and the processor
  deletes the schedule (`settle`), then removes the note;
- the terminal write first: the note's condition fails, and the scheduler deletes the
  schedule it has just written (`noted`).
A schedule that fires deletes itself, and the cancel it sends names it (`schedule`): when that
cancel is handled, the note goes too (`fired`), if it still names the schedule, so a note only
stays while its schedule waits. (Schedules written before they named themselves leave their
note until the batch is terminal.)
Removal is tidiness, not safety: a schedule left behind fires a cancel of a terminal batch,
which stores the batch's state again and owes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.concurrency import MapFn
from batch_canceller.deadline import FINISH_SECONDS, Deadline
from batch_canceller.item_table import ItemTable
from batch_canceller.observability import Tally, logger
from batch_canceller.records import SCHEDULE_NOTE, BatchRecord
from batch_canceller.schedule_writer import CALL_SECONDS, ScheduleError, classify
from batch_canceller.statuses import TERMINAL_RANK, is_terminal

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient


class ScheduleNotes(ItemTable):
    def note(self, batch_id: str, name: str) -> bool:
        """Note the batch's schedule on its record (creating the item if it has none yet);
        False when the batch is terminal already."""
        return self._update_if(
            batch_id,
            UpdateExpression="SET #note = :name",
            ConditionExpression="attribute_not_exists(status_rank) OR status_rank < :terminal",
            ExpressionAttributeNames={"#note": SCHEDULE_NOTE},
            ExpressionAttributeValues={
                ":name": {"S": name},
                ":terminal": {"N": str(TERMINAL_RANK)},
            },
        )

    def forget(self, batch_id: str, name: str) -> None:
        """Remove the note, if it still names this schedule (a later one is not forgotten)."""
        self._update_if(
            batch_id,
            UpdateExpression="REMOVE #note",
            ConditionExpression="#note = :name",
            ExpressionAttributeNames={"#note": SCHEDULE_NOTE},
            ExpressionAttributeValues={":name": {"S": name}},
        )


class PendingSchedules:
    def __init__(
        self,
        notes: ScheduleNotes,
        client: Callable[[], EventBridgeSchedulerClient],
        group_name: str,
        tally: Tally,
    ) -> None:
        self._notes = notes
        self._make_client = client
        self._group = group_name
        self._tally = tally

    @functools.cached_property
    def _client(self) -> EventBridgeSchedulerClient:
        return self._make_client()

    def noted(self, batch_id: str, name: str, may_call: Callable[[], bool]) -> None:
        """After the schedule `name` was written for the batch: note it, or, if the batch is
        terminal already, delete it (when `may_call()` leaves time for the call)."""
        try:
            if self._notes.note(batch_id, name):
                return
        except (ClientError, BotoCoreError) as exc:
            # Not noted: the schedule still cancels at its time; only its removal is lost.
            self._failed(batch_id, "schedule not noted on the record", type(exc).__name__)
            return
        if may_call():
            self._delete(batch_id, name)
        else:
            self._failed(batch_id, "schedule not deleted", "no time left")

    def settle(
        self, records: Iterable[BatchRecord | None], deadline: Deadline, map_fn: MapFn = map
    ) -> None:
        """Delete the schedules of the terminal records that note one, and their notes; none
        is started that could end after the time kept for answering."""
        due = [
            record
            for record in records
            if record is not None
            and record.cancel_schedule is not None
            and is_terminal(record.status or "")
        ]
        if due:
            _ = self._client  # made here, not by several threads at once
            list(map_fn(lambda record: self._remove(record, deadline), due))

    def fired(
        self, fired: Iterable[tuple[str, str]], deadline: Deadline, map_fn: MapFn = map
    ) -> None:
        """Remove the notes of schedules that fired (batch ID, schedule name): each sent a
        cancel handled now, and deleted itself. Best effort, like every removal."""
        due = list(fired)
        if due:
            list(map_fn(lambda pair: self._forget(pair[0], pair[1], deadline), due))

    def _forget(self, batch_id: str, name: str, deadline: Deadline) -> None:
        if not deadline.leaves(CALL_SECONDS + FINISH_SECONDS):
            self._failed(batch_id, "schedule note not removed", "no time left")
            return
        try:
            self._notes.forget(batch_id, name)
        except (ClientError, BotoCoreError) as exc:
            self._failed(batch_id, "schedule note not removed", type(exc).__name__)

    def _remove(self, record: BatchRecord, deadline: Deadline) -> None:
        name = str(record.cancel_schedule)
        if not deadline.leaves(CALL_SECONDS + FINISH_SECONDS):
            self._failed(record.batch_id, "schedule not deleted", "no time left")
            return
        if not self._delete(record.batch_id, name):
            return
        try:
            self._notes.forget(record.batch_id, name)
        except (ClientError, BotoCoreError) as exc:
            # The schedule is gone; a note left behind costs one more delete, answered 404.
            self._failed(record.batch_id, "schedule note not removed", type(exc).__name__)

    def _delete(self, batch_id: str, name: str) -> bool:
        """DeleteSchedule; True when the schedule is gone (deleted now, or before)."""
        try:
            self._client.delete_schedule(Name=name, GroupName=self._group)
        except (ClientError, BotoCoreError) as exc:
            kind, reason = classify(exc)
            if kind is ScheduleError.GONE:
                return True  # it fired (and deleted itself), or was deleted by hand
            self._failed(batch_id, f"schedule not deleted ({kind.value})", reason)
            return False
        self._tally.count("SchedulesRemoved")
        return True

    def _failed(self, batch_id: str, what: str, why: Any) -> None:
        self._tally.count("ScheduleRemovalFailures")
        logger.warning(what, extra={"batch_id": batch_id, "why": why})
