"""Recurring sweeps: list every batch, pick the non-terminal ones that match, queue their cancels.

Cancels go through the queue as ordinary commands, so each batch gets the normal retries,
record and events; the sweep itself only lists and selects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from batch_canceller.announcer import EventPublisher
from batch_canceller.commands import NON_TERMINAL_STATUSES, SweepRequest
from batch_canceller.deadline import Deadline
from batch_canceller.observability import logger
from batch_canceller.openai_api import MIN_REQUEST_SECONDS, OpenAIBatchClient, TransientApiError
from batch_canceller.queue import QueueSender, command_messages
from batch_canceller.records import utc_now
from batch_canceller.statuses import DetailType

PAGE_SIZE = 100  # the API's maximum
IDS_PER_MESSAGE = 100
SWEEP_REQUESTED_BY = "batch-canceller sweep"
# A dry run's answer lists at most this many IDs (the summary still counts all).
MAX_LISTED_IN_ANSWER = 1000


def matches(batch: dict[str, Any], sweep: SweepRequest, now: datetime) -> bool:
    status = batch.get("status")
    if status not in NON_TERMINAL_STATUSES:
        return False
    if sweep.statuses is not None and status not in sweep.statuses:
        return False
    if sweep.older_than_minutes is not None:
        created = batch.get("created_at")
        if not isinstance(created, int | float):
            return False
        if now.timestamp() - float(created) < sweep.older_than_minutes * 60:
            return False
    if sweep.endpoint is not None and batch.get("endpoint") != sweep.endpoint:
        return False
    if sweep.model is not None and batch.get("model") != sweep.model:
        return False
    metadata = batch.get("metadata") or {}
    return all(metadata.get(key) == value for key, value in sweep.metadata.items())


class Sweeper:
    def __init__(
        self,
        api: OpenAIBatchClient,
        queue: QueueSender,
        publisher: EventPublisher,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._api = api
        self._queue = queue
        self._publisher = publisher
        self._clock = clock

    def run(self, sweep: SweepRequest, deadline: Deadline) -> dict[str, Any]:
        now = self._clock()
        listed = 0
        selected: list[str] = []
        complete = True
        for page in self._pages(deadline):
            if page is None:
                complete = False  # out of time: what was selected so far is still cancelled
                break
            for batch in page:
                listed += 1
                if matches(batch, sweep, now):
                    selected.append(str(batch["id"]))
        limited = selected[: sweep.max_cancels] if sweep.max_cancels else selected
        queued = 0 if sweep.dry_run else self._queue_cancels(limited, sweep)
        summary = {
            "policy": sweep.describe(),
            "dry_run": sweep.dry_run,
            "listed": listed,
            "matched": len(selected),
            "queued": queued,
            "skipped_by_max_cancels": len(selected) - len(limited),
            "complete": complete,
        }
        logger.info("sweep completed", extra={"sweep": summary})
        if not self._publisher.put_detail(DetailType.SWEEP_COMPLETED.value, summary, deadline):
            logger.warning("sweep summary event not accepted by EventBridge")
        answer = dict(summary)
        if sweep.dry_run:
            answer["would_cancel"] = limited[:MAX_LISTED_IN_ANSWER]
        return answer

    def _pages(self, deadline: Deadline) -> Iterator[list[dict[str, Any]] | None]:
        after: str | None = None
        while True:
            # The client starts no request with less than this left: stop here instead, so that
            # what was selected so far is still queued.
            if not deadline.allows(MIN_REQUEST_SECONDS):
                yield None
                return
            answer = self._api.list_batches(deadline, after=after, limit=PAGE_SIZE)
            body = answer.body
            if (
                not answer.ok
                or not isinstance(body, dict)
                or not isinstance(body.get("data"), list)
            ):
                raise TransientApiError(
                    f"listing batches answered HTTP {answer.status}",
                    answer.status,
                    answer.request_id,
                )
            page = [batch for batch in body["data"] if isinstance(batch, dict) and "id" in batch]
            yield page
            if not body.get("has_more") or not page:
                return
            after = str(page[-1]["id"])

    def _queue_cancels(self, batch_ids: list[str], sweep: SweepRequest) -> int:
        reason = "sweep " + ", ".join(f"{k}={v}" for k, v in sweep.describe().items())
        messages = command_messages(batch_ids, reason[:1024], SWEEP_REQUESTED_BY, IDS_PER_MESSAGE)
        accepted = self._queue.send_many(messages)
        if not all(accepted):
            # Re-running the sweep re-queues what was sent: cancels are idempotent.
            raise RuntimeError(f"{accepted.count(False)} sweep messages could not be queued")
        return len(batch_ids)
