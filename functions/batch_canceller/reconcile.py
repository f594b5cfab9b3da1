"""The reconciler: follow-through that no queue message carries any more, requeued.

A chain of status checks and the announcing of an owed event live in queue messages; a check
dead-lettered, a queue purged or replaced, or a direct invoke that died after its write leaves a
record followed by nothing. The record's writes keep `follow_through` on it while a chain
follows it or it owes an event (the sparse FOLLOW_THROUGH_INDEX holds only those); a scheduled
run (`{"reconcile": {}}`) reads the ones not updated for twice POLL_MAX_DELAY_SECONDS, oldest
first, and from each record's own facts decides (`assess`):

- its chain has not taken a step (`poll_advanced_at`) for that long, or an owed event has no
  live claim: requeue a status check for the chain's next step. The check races whatever check
  may still be out there for that step (one token wins it, docs/exactly-once.md), and like
  every check it announces what the record owes, through the protocol;
- its watch stalled and nothing is owed, yet the record is back in the index: a cancel asked
  for it again after the stall and died before it started the new watch (a direct invoke
  gets no second try). Start that watch (conditional on the stalled one) and requeue its
  first check. A stalled record only stays in the index otherwise if the write that should
  have taken it out failed; it then gets one more watch, as if asked again;
- nothing is followed or owed any more: take the record out of the index (conditional);
- otherwise (a recent step, a live claim): leave it.

It only sends status checks and removes the index attribute under a condition, so a run that
should not have happened costs some API reads and nothing else.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from batch_canceller.aws_deadline import OutOfAwsTime
from batch_canceller.commands import ReconcileRequest, StatusCheck
from batch_canceller.deadline import FINISH_SECONDS, Deadline
from batch_canceller.follow_up import PollSettings
from batch_canceller.observability import Tally, logger
from batch_canceller.queue import OutgoingMessage, QueueSender
from batch_canceller.records import BatchRecord, Watch, iso
from batch_canceller.store import OPEN, BatchStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

FOLLOW_THROUGH_INDEX = "follow-through-index"
PAGE_SIZE = 100
# Time kept for one more page: a Query, a BatchGetItem and its checks sent.
PAGE_SECONDS = 3.0
# Time kept for one more conditional write (a settle or a new watch): one attempt within the
# DynamoDB client's timeouts (service.AWS_CONNECT_SECONDS + AWS_READ_SECONDS).
WRITE_SECONDS = 3.0
# The watch of a record that owes an event but was never followed (a first answer that was
# terminal or an error): its check is superseded or ends at once, and announces on the way.
NO_WATCH = "reconcile"


class Action(Enum):
    WAIT = "wait"  # a recent step, or a live claim: its own messages are still at work
    CHECK = "check"  # requeue a status check for the chain's next step
    RESTART = "restart"  # asked for again after its watch stalled: a new watch, its first check
    SETTLE = "settle"  # nothing followed or owed: out of the index


def assess(record: BatchRecord, now: float, stale_after: float) -> Action:
    """What the reconciler does about one record, from the record's own facts."""
    unclaimed = [
        detail_type
        for detail_type in record.pending_events
        if (claim := record.claims.get(detail_type)) is None or not claim.live(now)
    ]
    if unclaimed:
        return Action.CHECK
    if not record.chain_ended:
        advanced = record.poll_advanced_at
        # No step recorded: a chain from before `poll_advanced_at`, not seen to move since.
        return Action.CHECK if advanced is None or now - advanced >= stale_after else Action.WAIT
    if record.pending_events:
        return Action.WAIT
    if record.followed:
        return Action.RESTART  # not terminal, its watch stalled, in the index again
    return Action.SETTLE


def next_check(record: BatchRecord, now: datetime) -> StatusCheck:
    return StatusCheck(
        record.batch_id,
        record.watch_id or NO_WATCH,
        record.poll_attempt + 1,
        record.watch_since or now,
        uuid.uuid4().hex,
    )


class Reconciler:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        store: BatchStore,
        queue: QueueSender,
        poll: PollSettings,
        tally: Tally,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._table = table_name
        self._store = store
        self._queue = queue
        self._poll = poll
        self._tally = tally
        self._clock = clock

    def run(self, request: ReconcileRequest, deadline: Deadline) -> dict[str, Any]:
        """One bounded pass over the index; a summary of what it did."""
        now = self._clock()
        stale_after = 2 * self._poll.max_delay_seconds
        cutoff = iso(now - timedelta(seconds=stale_after))
        counts: Counter[str] = Counter()
        out_of_time = False
        try:
            for batch_ids in self._pages(cutoff, request.max_records, deadline):
                if not self._reconcile_page(batch_ids, now, deadline, counts):
                    out_of_time = True
                    break
        except OutOfAwsTime:
            out_of_time = True  # a read or write refused for time: the next run goes on
        if out_of_time:
            stopped = "deadline"
        elif counts["examined"] >= request.max_records:
            stopped = "max_records"
        elif not deadline.leaves(FINISH_SECONDS + PAGE_SECONDS):
            stopped = "deadline"
        else:
            stopped = "complete"
        self._tally.count("Reconciled", counts["requeued"] + counts["restarted"])
        summary: dict[str, Any] = {
            "examined": counts["examined"],
            "requeued": counts["requeued"],
            "requeue_failed": counts["requeue_failed"],
            "settled": counts["settled"],
            "restarted": counts["restarted"],
            "waiting": counts[Action.WAIT.value],
            "stopped": stopped,
        }
        logger.info("reconciled", extra={"reconcile": summary})
        return {"status": "done", "reconcile": summary}

    def _reconcile_page(
        self, batch_ids: list[str], now: datetime, deadline: Deadline, counts: Counter[str]
    ) -> bool:
        """Assess one page of records and act on it; False once the deadline stopped it."""
        stale_after = 2 * self._poll.max_delay_seconds
        records = self._store.get_many(batch_ids)
        counts["examined"] += len(batch_ids)
        actions = {r.batch_id: assess(r, now.timestamp(), stale_after) for r in records}
        counts.update(action.value for action in actions.values())
        checks = [
            OutgoingMessage(next_check(record, now).to_message())
            for record in records
            if actions[record.batch_id] is Action.CHECK
        ]
        sent = self._queue.send_many(checks)
        counts["requeued"] += sum(sent)
        counts["requeue_failed"] += sent.count(False)
        for record in records:
            action = actions[record.batch_id]
            if action not in (Action.SETTLE, Action.RESTART):
                continue
            if not deadline.leaves(FINISH_SECONDS + WRITE_SECONDS):
                return False
            if action is Action.SETTLE:
                counts["settled"] += self._store.settle(record.batch_id, record.watch_id)
            else:
                counts["restarted"] += self._restart(record, now)
        return True

    def _restart(self, record: BatchRecord, now: datetime) -> bool:
        """The watch a cancel asked for after a stall, as that cancel would have started it."""
        watch = Watch(uuid.uuid4().hex, now)
        started = self._store.start_watch(record.batch_id, watch, replacing=record.watch_id)
        if not started.changed:
            return False  # moved on since it was read: the next run looks again
        first = next_check(started.record, now)
        return all(self._queue.send_many([OutgoingMessage(first.to_message())]))

    def _pages(self, cutoff: str, most: int, deadline: Deadline) -> Iterator[list[str]]:
        """Batch IDs of the index, not updated since `cutoff`, oldest first; at most `most`,
        and none once the deadline leaves no time for another page."""
        start: dict[str, Any] | None = None
        left = most
        while left > 0 and deadline.leaves(FINISH_SECONDS + PAGE_SECONDS):
            query: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": FOLLOW_THROUGH_INDEX,
                "KeyConditionExpression": "follow_through = :open AND updated_at < :cutoff",
                "ExpressionAttributeValues": {":open": OPEN, ":cutoff": {"S": cutoff}},
                "Limit": min(PAGE_SIZE, left),
            }
            if start is not None:
                query["ExclusiveStartKey"] = start
            answer = self._client.query(**query)
            batch_ids = [item["batch_id"]["S"] for item in answer.get("Items", [])]
            if batch_ids:
                left -= len(batch_ids)
                yield batch_ids
            start = answer.get("LastEvaluatedKey")
            if start is None:
                return
