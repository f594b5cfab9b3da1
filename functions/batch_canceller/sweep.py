"""Recurring sweeps: list every batch, pick the non-terminal ones that match, queue their cancels.

Cancels go through the queue as ordinary commands, so each batch gets the normal retries,
record and events; the sweep itself only lists and selects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from batch_canceller.announcer import EventPublisher
from batch_canceller.api_errors import MIN_REQUEST_SECONDS, OutOfTime, TransientApiError
from batch_canceller.commands import NON_TERMINAL_STATUSES, SweepRequest
from batch_canceller.deadline import FINISH_SECONDS, Deadline
from batch_canceller.input_fields import BATCH_ID_PATTERN
from batch_canceller.observability import logger
from batch_canceller.openai_api import OpenAIBatchClient
from batch_canceller.queue import SEND_BATCH_MAX_ENTRIES, QueueSender, command_messages
from batch_canceller.records import utc_now
from batch_canceller.statuses import DetailType

PAGE_SIZE = 100  # the API's maximum
IDS_PER_MESSAGE = 100
SWEEP_REQUESTED_BY = "batch-canceller sweep"  # a sweep that does not say who ran it
# A dry run's answer lists at most this many IDs (the summary still counts all).
MAX_LISTED_IN_ANSWER = 1000
# How old a batch can be and still not be terminal. The spec's `completion_window` enum has one
# value, "24h", and a batch `expires_at` created_at + 24 h: then it moves to `expired`. The hour
# of margin covers what follows the deadline (an expiring or cancelling batch settles within
# minutes; `cancelling` takes up to 10) and a clock skew between the API and the function far
# beyond any seen. The list is newest first, so a page ending past this age ends the sweep, once
# the listing has been seen to be newest first; a page that still shows a non-terminal batch
# past it (a gateway with longer windows) does not.
LONGEST_LIFETIME = timedelta(hours=24) + timedelta(hours=1)
MAX_CURSOR = 4096
# What one SendMessageBatch (ten messages, 1,000 IDs) is planned to take before the sweep sends
# it: SQS answers in tens of milliseconds; this leaves room for a slow call. A call slower
# still raises the figure for the calls after it. Not a bound: one attempt of the SQS client
# may take up to its timeouts (service.aws_config: connect 3 s + read 10 s, retried).
SEND_BATCH_SECONDS = 2.0


def matches(batch: dict[str, Any], sweep: SweepRequest, now: datetime) -> bool:
    status = _status(batch)
    if status not in NON_TERMINAL_STATUSES:
        return False
    if sweep.statuses is not None and status not in sweep.statuses:
        return False
    if sweep.older_than_minutes is not None:
        created = _created_at(batch)
        if created is None or now.timestamp() - created < sweep.older_than_minutes * 60:
            return False
    if sweep.endpoint is not None and batch.get("endpoint") != sweep.endpoint:
        return False
    if sweep.model is not None and batch.get("model") != sweep.model:
        return False
    metadata = batch.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return all(metadata.get(key) == value for key, value in sweep.metadata.items())


@dataclass
class _Listing:
    pages: int = 0
    complete: bool = True
    stopped_by_age: bool = False
    # A page the API could not answer before the deadline (a long 429): the rest waits.
    stopped_by_rate_limit: bool = False


@dataclass
class _Order:
    """Whether the listing has been seen to be newest first: at least one strict decrease of
    `created_at` and never an increase, over every batch listed so far. One batch, or equal
    times, shows no order, so it does not allow the age stop."""

    previous: float | None = None
    decreased: bool = False
    increased: bool = False

    def observe(self, page: list[dict[str, Any]]) -> None:
        for batch in page:
            created = _created_at(batch)
            if created is None:
                continue
            if self.previous is not None:
                self.decreased = self.decreased or created < self.previous
                self.increased = self.increased or created > self.previous
            self.previous = created

    @property
    def newest_first(self) -> bool:
        return self.decreased and not self.increased


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
        invalid: list[str] = []
        listing = _Listing()
        for page in self._pages(deadline, now.timestamp(), listing):
            for batch in page:
                listed += 1
                if not BATCH_ID_PATTERN.fullmatch(batch["id"]):
                    # Not a batch ID (the API's or a gateway's bug): one in a queued command
                    # would make its 100 cancels an invalid message, dead-lettered.
                    invalid.append(batch["id"])
                elif matches(batch, sweep, now):
                    selected.append(batch["id"])
        if invalid:
            logger.warning(
                "sweep skipped listed IDs that are no batch IDs",
                extra={"count": len(invalid), "first": [i[:64] for i in invalid[:5]]},
            )
        limited = selected[: sweep.max_cancels] if sweep.max_cancels else selected
        queued = 0 if sweep.dry_run else self._queue_cancels(limited, sweep, deadline)
        # Out of time before every selected batch was queued: the rest waits for a re-run.
        complete = listing.complete and (sweep.dry_run or queued == len(limited))
        summary = {
            "policy": sweep.describe(),
            "requested_by": sweep.requested_by or SWEEP_REQUESTED_BY,
            "dry_run": sweep.dry_run,
            "listed": listed,
            "pages": listing.pages,
            "stopped_by_age": listing.stopped_by_age,
            "stopped_by_rate_limit": listing.stopped_by_rate_limit,
            "invalid_ids": len(invalid),
            "matched": len(selected),
            "queued": queued,
            "skipped_by_max_cancels": len(selected) - len(limited),
            "not_queued": 0 if sweep.dry_run else len(limited) - queued,
            "complete": complete,
            # Cancels are idempotent: re-running the sweep re-queues at most what it queued.
            "run_again": not complete,
        }
        logger.info("sweep completed", extra={"sweep": summary})
        if not self._publisher.put_detail(DetailType.SWEEP_COMPLETED.value, summary, deadline):
            logger.warning("sweep summary event not accepted by EventBridge")
        answer = dict(summary)
        if sweep.dry_run:
            answer["would_cancel"] = limited[:MAX_LISTED_IN_ANSWER]
        return answer

    def _pages(
        self, deadline: Deadline, now: float, listing: _Listing
    ) -> Iterator[list[dict[str, Any]]]:
        after: str | None = None
        order = _Order()
        while True:
            # The client starts no request with less than this left: stop here instead, so that
            # what was selected so far is still queued.
            if not deadline.allows(MIN_REQUEST_SECONDS):
                listing.complete = False
                return
            try:
                answer = self._api.list_batches(deadline, after=after, limit=PAGE_SIZE)
            except OutOfTime as exc:
                # A 429 whose wait passes the deadline (or no time left): stop as above. Failing
                # the message would list everything again on each receive, to the DLQ.
                listing.complete = False
                listing.stopped_by_rate_limit = exc.status == 429
                return
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
            page = [b for b in body["data"] if isinstance(b, dict) and isinstance(b.get("id"), str)]
            listing.pages += 1
            yield page
            order.observe(page)
            if not body.get("has_more"):
                return
            if not page:
                listing.complete = False  # more to come, but no cursor to it: report it
                return
            if order.newest_first and _past_lifetime(page, now):
                listing.stopped_by_age = True
                return
            cursor = _cursor(body, page)
            if cursor is None or cursor == after:
                listing.complete = False  # no way on: report it, do not loop
                return
            after = cursor

    def _queue_cancels(self, batch_ids: list[str], sweep: SweepRequest, deadline: Deadline) -> int:
        """One SendMessageBatch at a time, each only if the deadline leaves time for it and for
        answering Lambda after; how many IDs were queued. The time a call is planned for is
        SEND_BATCH_SECONDS, or the slowest call seen so far if SQS is slower today."""
        reason = "sweep " + ", ".join(f"{k}={v}" for k, v in sweep.describe().items())
        requested_by = sweep.requested_by or SWEEP_REQUESTED_BY
        messages = command_messages(batch_ids, reason[:1024], requested_by, IDS_PER_MESSAGE)
        queued = 0
        call_seconds = SEND_BATCH_SECONDS
        for start in range(0, len(messages), SEND_BATCH_MAX_ENTRIES):
            if not deadline.leaves(call_seconds + FINISH_SECONDS):
                break
            chunk = messages[start : start + SEND_BATCH_MAX_ENTRIES]
            started = time.monotonic()
            accepted = self._queue.send_many(chunk)
            call_seconds = max(call_seconds, time.monotonic() - started)
            queued += sum(
                len(message.body["batch_ids"])
                for message, ok in zip(chunk, accepted, strict=True)
                if ok
            )
            if not all(accepted):
                # SQS refused or did not answer (it may have taken some): stop, and say so in
                # the summary (`not_queued`, `run_again`) rather than fail the message, which
                # would list and queue everything again on each receive until the DLQ.
                # Running the sweep again is safe: cancels are idempotent.
                logger.warning(
                    "sweep cancels not queued", extra={"messages": accepted.count(False)}
                )
                break
        return queued


def _status(batch: dict[str, Any]) -> str:
    status = batch.get("status")
    return status if isinstance(status, str) else ""


def _created_at(batch: dict[str, Any]) -> float | None:
    created = batch.get("created_at")
    if isinstance(created, int | float) and not isinstance(created, bool):
        return float(created)
    return None


def _past_lifetime(page: list[dict[str, Any]], now: float) -> bool:
    """The page ends past the longest lifetime, and every batch on it that old is terminal:
    nothing further down the list can still be running."""
    cutoff = now - LONGEST_LIFETIME.total_seconds()
    last = _created_at(page[-1])
    if last is None or last >= cutoff:
        return False
    return not any(
        _status(batch) in NON_TERMINAL_STATUSES
        for batch in page
        if (created := _created_at(batch)) is not None and created < cutoff
    )


def _cursor(body: dict[str, Any], page: list[dict[str, Any]]) -> str | None:
    """The next page's `after`: the answer's `last_id` (a gateway's may be any cursor), else
    the last batch's ID. Passed on as given, never checked as a batch ID."""
    for candidate in (body.get("last_id"), page[-1].get("id")):
        if isinstance(candidate, str) and 0 < len(candidate) <= MAX_CURSOR:
            return candidate
    return None
