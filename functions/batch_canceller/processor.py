"""Cancels batches and follows them: many at once, each to a stored record and its events.

One run takes a list of work items (a batch ID to cancel, or a status check of a `cancelling`
batch), does the API call and the conditional write for each on a bounded pool of threads, then
sends what the run produced in batches: status checks ten to a SendMessageBatch, events ten to a
PutEvents. A work item whose follow-up could not be sent is reported failed, and its message
comes back; the record's pending events make the redelivery announce what is still owed.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.announcer import Announcement, EventPublisher, announcement_from
from batch_canceller.commands import PublicationReceipt, StatusCheck
from batch_canceller.config import ConfigurationError
from batch_canceller.deadline import Deadline
from batch_canceller.observability import Tally, logger
from batch_canceller.openai_api import (
    MIN_REQUEST_SECONDS,
    ApiResponse,
    OpenAIBatchClient,
    TransientApiError,
)
from batch_canceller.queue import OutgoingMessage, QueueSender
from batch_canceller.records import (
    CLAIM_LEASE_SECONDS,
    BatchRecord,
    BatchStore,
    iso,
    utc_now,
)
from batch_canceller.statuses import DetailType

# How long after a delivery died mid-announce its redelivery waits for the receipt of what it
# may have published. On AWS a redelivery comes after the 1,020 s visibility timeout, so it
# never waits; with a short visibility timeout, it keeps duplicates away.
RECEIPT_GRACE_SECONDS = 60


@dataclass(frozen=True)
class CancelWork:
    batch_id: str
    reason: str | None = None
    requested_by: str | None = None


Work = CancelWork | StatusCheck


@dataclass(frozen=True)
class PollSettings:
    initial_delay_seconds: int
    max_delay_seconds: int
    timeout_seconds: int

    def delay_before(self, attempt: int, since: datetime, now: datetime) -> int:
        """Wait before check `attempt`: doubling from the initial delay, capped, and never past
        the moment the watch times out (so a stall is noticed when it happens)."""
        # With an initial delay of 0 the first check is immediate and later ones still grow.
        base = self.initial_delay_seconds if attempt == 1 else max(1, self.initial_delay_seconds)
        growing = min(self.max_delay_seconds, base * 2 ** min(attempt - 1, 32))
        left = self.timeout_seconds - (now - since).total_seconds()
        return int(max(0, min(growing, math.ceil(left))))


@dataclass(frozen=True)
class WorkResult:
    work: Work
    outcome: str
    failure: str | None = None
    record: BatchRecord | None = None
    next_check: StatusCheck | None = None
    # Which delivery this was: it claims the events it owes under this token.
    token: str = ""
    # When the work should come back, if sooner or later than the queue would bring it.
    retry_after: float | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None


class CancelProcessor:
    def __init__(
        self,
        api: OpenAIBatchClient,
        store: BatchStore,
        publisher: EventPublisher,
        queue: QueueSender,
        poll: PollSettings,
        executor: ThreadPoolExecutor,
        tally: Tally,
        redact: Callable[[str], str],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._api = api
        self._store = store
        self._publisher = publisher
        self._queue = queue
        self._poll = poll
        self._executor = executor
        self._tally = tally
        self._redact = redact
        self._clock = clock

    def run(
        self, works: Sequence[Work], deadline: Deadline, tokens: Sequence[str] | None = None
    ) -> list[WorkResult]:
        """`tokens` name each work's delivery (its SQS message ID): a redelivery of a message
        that died while announcing takes its own claim over once the event's receipt had time
        to arrive (RECEIPT_GRACE_SECONDS)."""
        started_ms = math.floor(self._clock().timestamp() * 1000)
        claim_tokens = list(tokens) if tokens is not None else [uuid.uuid4().hex for _ in works]
        results = list(
            self._executor.map(
                lambda work, token: replace(self._safely(work, token, deadline), token=token),
                works,
                claim_tokens,
            )
        )
        results = self._send_checks(results)
        return self._announce(results, started_ms)

    # -- one work item ---------------------------------------------------------------------

    def confirm(self, receipts: Sequence[PublicationReceipt]) -> list[bool]:
        """Marks announced the events the bus delivered back. The publisher marks each event
        itself right after PutEvents, so a receipt changes something only when the publisher
        died in between, and then it keeps the redelivery from announcing the event again.
        The answer says, per receipt, whether it was handled (False: retry it)."""
        self._tally.count("PublicationReceipts", len(receipts))
        try:
            pending = self._store.pending_events_of([r.batch_id for r in receipts])
        except Exception as exc:
            logger.warning("receipts not checked", extra={"why": type(exc).__name__})
            return [False] * len(receipts)
        owed = list({r for r in receipts if r.detail_type in pending.get(r.batch_id, ())})

        def mark(receipt: PublicationReceipt) -> bool:
            try:
                self._store.mark_announced(receipt.batch_id, receipt.detail_type)
            except (ClientError, BotoCoreError) as exc:
                logger.warning(
                    "receipt not recorded",
                    extra={"batch_id": receipt.batch_id, "why": type(exc).__name__},
                )
                return False
            self._tally.count("EventsConfirmedByReceipt")
            logger.info(
                "event marked announced by its receipt (its publisher did not mark it)",
                extra={"batch_id": receipt.batch_id, "detail_type": receipt.detail_type},
            )
            return True

        marked = dict(zip(owed, self._executor.map(mark, owed), strict=True))
        return [marked.get(receipt, True) for receipt in receipts]

    def _safely(self, work: Work, token: str, deadline: Deadline) -> WorkResult:
        if not deadline.allows(MIN_REQUEST_SECONDS):
            self._tally.count("DeadlineDeferrals")
            return WorkResult(work, "deferred", failure="not started: invocation deadline")
        try:
            if isinstance(work, CancelWork):
                self._tally.count("CancelRequests")
                return self._cancel(work, token, deadline)
            self._tally.count("StatusChecks")
            return self._check(work, token, deadline)
        except TransientApiError as exc:
            self._tally.count("TransientFailures")
            logger.warning(
                "OpenAI API unavailable", extra={"batch_id": work.batch_id, "why": str(exc)}
            )
            return WorkResult(work, "transient", failure=str(exc))
        except ConfigurationError as exc:
            self._tally.count("ConfigurationErrors")
            logger.error("configuration error", extra={"batch_id": work.batch_id, "why": str(exc)})
            return WorkResult(work, "configuration", failure=str(exc))
        except (ClientError, BotoCoreError) as exc:
            self._tally.count("StoreFailures")
            logger.warning(
                "AWS call failed", extra={"batch_id": work.batch_id, "why": type(exc).__name__}
            )
            return WorkResult(work, "aws", failure=f"AWS call failed: {type(exc).__name__}")
        except Exception as exc:
            self._tally.count("UnexpectedErrors")
            logger.exception("unexpected error", extra={"batch_id": work.batch_id})
            return WorkResult(work, "unexpected", failure=f"unexpected {type(exc).__name__}")

    def _cancel(self, work: CancelWork, token: str, deadline: Deadline) -> WorkResult:
        answer = self._api.cancel_batch(work.batch_id, deadline)
        if not answer.ok and answer.status in (400, 409) and _says_cannot_cancel(answer):
            # Already terminal (or otherwise not cancellable): store the batch's real state.
            answer = self._api.retrieve_batch(work.batch_id, deadline)
        if not answer.ok:
            return self._api_error(work, answer, token)
        batch = _batch_object(answer, work.batch_id)
        # A `cancelling` batch gets a new chain of status checks, written with the record; one
        # already running is superseded at its next step. The watch's clock keeps running from
        # the first time the batch was seen cancelling.
        watch_id, now = uuid.uuid4().hex, self._clock()
        saved = self._store.save_batch(
            work.batch_id,
            batch,
            work.reason,
            work.requested_by,
            claim_token=token,
            watch=(watch_id, now) if batch["status"] == "cancelling" else None,
        )
        record = saved.record
        next_check = None
        if record.status == "cancelling":
            since = record.watch_since or now
            restart = DetailType.CANCEL_STALLED.value in record.announced_events
            if restart or record.watch_id != watch_id:
                # Rare: a stalled batch asked again (its clock restarts), or a stale answer
                # that did not write the watch.
                since = now if restart else since
                self._store.restart_watch(work.batch_id, watch_id, since)
            next_check = StatusCheck(work.batch_id, watch_id, 1, since)
        return WorkResult(work, record.status or "unknown", record=record, next_check=next_check)

    def _check(self, work: StatusCheck, token: str, deadline: Deadline) -> WorkResult:
        answer = self._api.retrieve_batch(work.batch_id, deadline)
        if not answer.ok:
            return self._api_error(work, answer, token)
        saved = self._store.save_batch(
            work.batch_id, _batch_object(answer, work.batch_id), claim_token=token
        )
        record = saved.record
        if record.status != "cancelling":
            return WorkResult(work, record.status or "unknown", record=record)
        if record.watch_id != work.watch_id or record.poll_attempt > work.attempt:
            # A duplicate delivery or an older chain: the current chain carries on.
            return WorkResult(work, "check_superseded", record=record)
        if (self._clock() - work.since).total_seconds() >= self._poll.timeout_seconds:
            stalled = self._store.mark_stalled(work.batch_id, work.watch_id, claim_token=token)
            return WorkResult(work, "stalled", record=stalled.record)
        following = replace(work, attempt=work.attempt + 1)
        return WorkResult(work, "cancelling", record=record, next_check=following)

    def _api_error(self, work: Work, answer: ApiResponse, token: str) -> WorkResult:
        error = answer.error()
        last_error = {
            "http_status": answer.status,
            "type": error.get("type"),
            "code": error.get("code"),
            "message": self._redact(str(error.get("message") or f"HTTP {answer.status}")),
            "at": iso(self._clock()),
        }
        reason = work.reason if isinstance(work, CancelWork) else None
        requested_by = work.requested_by if isinstance(work, CancelWork) else None
        if answer.status in (401, 403):
            # Not the batch's fault: keep the message for later, and make noise.
            self._store.save_error(
                work.batch_id, last_error, announce=False, reason=reason, requested_by=requested_by
            )
            self._tally.count("ConfigurationErrors")
            logger.error(
                "OpenAI API rejected the credentials; check the key secret and its permissions",
                extra={
                    "batch_id": work.batch_id,
                    "http_status": answer.status,
                    "request_id": answer.request_id,
                },
            )
            return WorkResult(work, "unauthorized", failure=f"HTTP {answer.status}: key rejected")
        saved = self._store.save_error(
            work.batch_id,
            last_error,
            announce=True,
            reason=reason,
            requested_by=requested_by,
            claim_token=token,
        )
        logger.info(
            "cancel failed permanently",
            extra={
                "batch_id": work.batch_id,
                "http_status": answer.status,
                "request_id": answer.request_id,
            },
        )
        return WorkResult(work, "cancel_failed", record=saved.record)

    # -- what a run produced ---------------------------------------------------------------

    def _send_checks(self, results: list[WorkResult]) -> list[WorkResult]:
        due = [i for i, result in enumerate(results) if result.next_check and not result.failed]
        if not due:
            return results
        now = self._clock()
        checks = [results[i].next_check for i in due]
        messages = [
            OutgoingMessage(
                check.to_message(), self._poll.delay_before(check.attempt, check.since, now)
            )
            for check in checks
            if check is not None
        ]
        sent = self._queue.send_many(messages, self._executor.map)

        def record_sent(index_and_sent: tuple[int, bool]) -> WorkResult:
            index, was_sent = index_and_sent
            result = results[index]
            check = result.next_check
            assert check is not None
            if not was_sent:
                return replace(result, failure="status check could not be queued")
            # A first check's chain was written with the record (a send that failed fails the
            # message, whose redelivery starts a new chain). A later check is recorded only once
            # sent; a crash in between leaves an orphan check that is superseded.
            if check.attempt > 1:
                try:
                    self._store.advance_watch(check.batch_id, check.watch_id, check.attempt)
                except (ClientError, BotoCoreError) as exc:
                    return replace(result, failure=f"watch not recorded: {type(exc).__name__}")
            self._tally.count("StatusChecksScheduled")
            return result

        updated = list(self._executor.map(record_sent, zip(due, sent, strict=True)))
        for index, result in zip(due, updated, strict=True):
            results[index] = result
        return results

    def _announce(self, results: list[WorkResult], started_ms: int) -> list[WorkResult]:
        owed: dict[tuple[str, str], tuple[Announcement, str, BatchRecord]] = {}
        for result in results:
            if result.record is None or result.failed:
                continue
            for detail_type in sorted(result.record.pending_events):
                key = (result.record.batch_id, detail_type)
                if key not in owed:
                    announcement = announcement_from(result.record, detail_type)
                    owed[key] = (announcement, result.token, result.record)
        if not owed:
            return results
        now = self._clock().timestamp()
        # Deliveries in this invocation: a claim by any of them is this invocation's to honour.
        tokens_here = {result.token for result in results}
        # Events an earlier attempt of this delivery claimed and may have published: wait
        # (seconds left) for the receipt before announcing them again.
        awaiting: dict[tuple[str, str], float] = {}
        held: dict[tuple[str, str], str] = {}  # the claims this run announces under

        def ours(entry: tuple[Announcement, str, BatchRecord]) -> bool | None:
            """True: this invocation announces it; False: another live one does; None: unknown."""
            announcement, token, record = entry
            claim = record.claims.get(announcement.detail_type)
            key = (announcement.batch_id, announcement.detail_type)
            if claim is not None and claim[0] in tokens_here:
                written = claim[1] - CLAIM_LEASE_SECONDS
                # Written by this run (compared in the claim's whole milliseconds), or long
                # enough ago that a receipt would have marked it announced.
                waited = now - written
                if round(written * 1000) >= started_ms or waited >= RECEIPT_GRACE_SECONDS:
                    held[key] = claim[0]
                    return True
                awaiting[key] = RECEIPT_GRACE_SECONDS - waited
                return None
            if record.claimed_by_other(announcement.detail_type, token, now):
                return False
            try:
                claimed = self._store.claim(announcement.batch_id, announcement.detail_type, token)
            except (ClientError, BotoCoreError):
                return None
            if claimed:
                held[key] = token
            return claimed

        decisions = list(self._executor.map(ours, owed.values()))
        mine = [
            entry[0] for entry, decision in zip(owed.values(), decisions, strict=True) if decision
        ]
        undecided = {key for key, decision in zip(owed, decisions, strict=True) if decision is None}

        def settle(chunk: list[Announcement], accepted: list[bool]) -> None:
            # Marked right after its PutEvents: the window in which a crash could repeat an
            # event is one call long, not the whole announce phase.
            for announcement, ok in zip(chunk, accepted, strict=True):
                if not ok:
                    # Refused, so not published: let the claim go, so that the redelivery
                    # announces at once instead of waiting for a receipt that cannot come.
                    key = (announcement.batch_id, announcement.detail_type)
                    with contextlib.suppress(ClientError, BotoCoreError):
                        self._store.release_claim(*key, held[key])
                    continue
                self._tally.count(announcement.detail_type.replace(" ", ""))
                try:
                    self._store.mark_announced(announcement.batch_id, announcement.detail_type)
                except (ClientError, BotoCoreError):
                    # The event is out; failing the message would only announce it twice.
                    logger.exception(
                        "event sent but not marked announced",
                        extra={"batch_id": announcement.batch_id},
                    )

        accepted = self._publisher.publish(mine, self._executor.map, settle) if mine else []
        unpublished = undecided | {
            (a.batch_id, a.detail_type) for a, ok in zip(mine, accepted, strict=True) if not ok
        }
        if unpublished:
            self._tally.count("EventPublishFailures", len(unpublished))
            logger.warning("events not published", extra={"count": len(unpublished)})
        return [_unpublished(result, unpublished, awaiting) for result in results]


def _unpublished(
    result: WorkResult, unpublished: set[tuple[str, str]], awaiting: dict[tuple[str, str], float]
) -> WorkResult:
    """A result that owes an event not published now fails, so that its message comes back."""
    if result.record is None or result.failed:
        return result
    keys = [(result.record.batch_id, t) for t in result.record.pending_events]
    if not any(key in unpublished for key in keys):
        return result
    waits = [awaiting[key] for key in keys if key in awaiting]
    if waits:
        return replace(
            result,
            failure="waiting for the receipt of an event an earlier attempt may have published",
            retry_after=max(waits),
        )
    return replace(result, failure="event not published")


def _says_cannot_cancel(answer: ApiResponse) -> bool:
    return "cannot cancel" in str(answer.error().get("message", "")).lower()


def _batch_object(answer: ApiResponse, batch_id: str) -> dict[str, Any]:
    body = answer.body
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise TransientApiError(
            f"HTTP {answer.status} answer for {batch_id} is not a Batch object",
            answer.status,
            answer.request_id,
        )
    return body
