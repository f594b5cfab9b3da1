"""Routes an invocation's messages: invalid ones to the DLQ, work to the processor, and answers
each entry point the way it expects (a partial batch response for SQS, a summary otherwise)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from batch_canceller.announce_protocol import Delivery
from batch_canceller.aws_deadline import invocation_deadline
from batch_canceller.commands import (
    CancelCommand,
    InternalWork,
    InvalidInput,
    PublicationReceipt,
    ReconcileRequest,
    SweepRequest,
)
from batch_canceller.deadline import Deadline
from batch_canceller.inbound import (
    InboundMessage,
    from_direct,
    from_eventbridge,
    from_sqs,
    source_of,
)
from batch_canceller.observability import Tally, logger
from batch_canceller.processor import CancelProcessor
from batch_canceller.queue import (
    DeadLetterSender,
    OutgoingMessage,
    QueueSender,
)
from batch_canceller.records import utc_now
from batch_canceller.requeue import requeue_messages
from batch_canceller.work import CancelWork, Work, WorkItem, WorkResult

# A receipt that could not be recorded comes back this soon. After this many receives (the
# queue dead-letters at 5) it goes on as a fresh copy instead, for as long as it can still
# keep an event from being published twice: its publisher's claim lapses within a lease
# (at most Lambda's 900 s + RECEIPT_GRACE_SECONDS), and a takeover may come later still.
RECEIPT_RETRY_SECONDS = 5
RECEIPT_COPY_AFTER_RECEIVES = 4
RECEIPT_USEFUL_FOR = timedelta(hours=1)
CLOCK_SKEW = timedelta(seconds=60)
# Runs a request that is not per-batch work (a sweep, a scheduled cancellation); returns a summary.
SideRequestRunner = Callable[[Any, Deadline], dict[str, Any]]


@dataclass
class Application:
    processor: CancelProcessor
    dead_letters: DeadLetterSender
    queue: QueueSender
    tally: Tally
    run_sweep: SideRequestRunner | None = None
    run_schedule: SideRequestRunner | None = None
    run_reconcile: SideRequestRunner | None = None
    # The `source` of the function's own events: receipts must carry it.
    event_source: str = "batch-canceller"
    clock: Callable[[], datetime] = utc_now
    # Drawn once per invocation: with the message ID, the identity of each delivery.
    new_nonce: Callable[[], str] = field(default=lambda: uuid.uuid4().hex[:12])
    # The invocation's API rate-limit budget (api_pacing); none: each request on its own.
    api_pacing: Callable[[], AbstractContextManager[Any]] = nullcontext

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        deadline = Deadline.from_context(context)
        # Every DynamoDB and SQS call of the invocation ends before its deadline; one refused
        # for lack of time fails like any failed call (nothing was sent).
        with invocation_deadline(deadline), self.api_pacing():
            return self._handle(event, context, deadline)

    def _handle(self, event: Any, context: Any, deadline: Deadline) -> dict[str, Any]:
        source = source_of(event)
        if source == "sqs":
            return self._handle_sqs(from_sqs(event), deadline)
        if source == "eventbridge":
            message = from_eventbridge(event)
        else:
            message = from_direct(event, str(getattr(context, "aws_request_id", "direct")))
        return self._handle_single(message, deadline)

    def _handle_sqs(self, messages: list[InboundMessage], deadline: Deadline) -> dict[str, Any]:
        failed: set[str] = set()
        come_back_after: dict[str, float] = {}
        unconfirmed: dict[str, float] = {}
        nonce = self.new_nonce()
        # Receipts first: an event they confirm is not announced again by work in this batch.
        receipts = [
            (message, receipt)
            for message in messages
            if (receipt := self._own_receipt(message)) is not None
        ]
        if receipts:
            handled = self.processor.confirm([receipt for _, receipt in receipts])
            for (message, receipt), ok in zip(receipts, handled, strict=True):
                if not ok and not self._copied_on(message, receipt):
                    # Back soon, not after the visibility timeout: by then its publisher's
                    # message may have taken the lapsed claim over and published again. So
                    # now, before the work phase can use up the time for it.
                    failed.add(message.message_id)
                    unconfirmed[message.message_id] = RECEIPT_RETRY_SECONDS
            self._postpone(messages, unconfirmed)
        items: list[WorkItem] = []
        for message in messages:
            try:
                accepted, _ = self._accept(message, deadline)
            except _MessageFailed as exc:
                logger.warning(
                    "message will be retried",
                    extra={"message_id": message.message_id, "why": str(exc)},
                )
                failed.add(message.message_id)
                continue
            delivery = Delivery(message.message_id, nonce)
            items.extend(WorkItem(work, delivery) for work in accepted)
        results = self.processor.run(items, deadline)
        unfinished: dict[str, list[WorkResult]] = {}
        for result in results:
            if result.failed:
                unfinished.setdefault(result.delivery.message_id, []).append(result)
        for message_id, left in unfinished.items():
            if all(result.outcome == "deferred" for result in left) and self._requeued(left):
                continue  # the part not started goes on as a message of its own
            failed.add(message_id)
            waits = [result.retry_after for result in left if result.retry_after is not None]
            if waits:
                come_back_after[message_id] = max(waits)
        self._postpone(messages, come_back_after)
        self._log_outcomes(results)
        # The contract of ReportBatchItemFailures: only these messages come back.
        return {"batchItemFailures": [{"itemIdentifier": mid} for mid in sorted(failed)]}

    def _copied_on(self, message: InboundMessage, receipt: PublicationReceipt) -> bool:
        """A receipt near its last receive goes on as a fresh copy while it is still useful, so
        that a long DynamoDB outage does not dead-letter it before its publisher's claim
        lapses (a takeover would then publish the event again)."""
        published = receipt.published_at
        if message.receive_count < RECEIPT_COPY_AFTER_RECEIVES or published is None:
            return False
        if self.clock() - published > RECEIPT_USEFUL_FOR:
            return False
        body = json.loads(message.raw)
        copied = self.queue.send_many([OutgoingMessage(body, RECEIPT_RETRY_SECONDS)])
        if all(copied):
            self.tally.count("ReceiptsCopied")
        return all(copied)

    def _requeued(self, deferred: list[WorkResult]) -> bool:
        """Work not started for lack of time, sent on as a new message: coming back whole, a
        message bigger than one invocation would start again from its first ID each time and
        never finish (and end in the DLQ)."""
        try:
            self._requeue(deferred)
        except Exception as exc:
            logger.warning("deferred work not requeued", extra={"why": type(exc).__name__})
            return False
        return True

    def _own_receipt(self, message: InboundMessage) -> PublicationReceipt | None:
        """The message as a receipt of this function's own event (its source), if it is one."""
        request = message.request
        if isinstance(request, PublicationReceipt) and request.source == self.event_source:
            return request
        return None

    def _postpone(self, messages: list[InboundMessage], seconds: dict[str, float]) -> None:
        """Failed messages that should come back at a set time (not the visibility timeout)."""
        handles = [
            (message.receipt_handle, seconds[message.message_id])
            for message in messages
            if message.message_id in seconds and message.receipt_handle
        ]
        if not handles:
            return
        try:
            done = self.queue.postpone(handles)
        except Exception as exc:
            done, why = 0, type(exc).__name__
        else:
            why = "refused by SQS"
        if done < len(handles):
            # They come back after the visibility timeout instead; nothing is lost.
            logger.warning(
                "messages not postponed", extra={"count": len(handles) - done, "why": why}
            )

    def _handle_single(self, message: InboundMessage, deadline: Deadline) -> dict[str, Any]:
        try:
            works, side = self._accept(message, deadline)
        except _MessageFailed as exc:
            raise RuntimeError(f"request could not be handled: {exc}") from None
        if message.error is not None:
            # Invalid, or an internal kind (a check, a receipt) from outside the queue.
            return {"status": "rejected", "error": message.error}
        if not works:
            return {"status": "done", **side}
        delivery = Delivery(message.message_id, self.new_nonce())
        results = self.processor.run([WorkItem(work, delivery) for work in works], deadline)
        self._log_outcomes(results)
        unfinished = [result for result in results if result.failed]
        if unfinished:
            self._requeue(unfinished)
        return {
            "status": "done" if not unfinished else "partially_requeued",
            "outcomes": dict(Counter(result.outcome for result in results)),
            "requeued": [result.work.batch_id for result in unfinished],
        }

    def _accept(
        self, message: InboundMessage, deadline: Deadline
    ) -> tuple[list[Work], dict[str, Any]]:
        """The per-batch work a message asks for, and the summary of anything run on the spot
        (a sweep, a scheduled cancellation); invalid input goes to the DLQ here."""
        if message.error is not None:
            self._dead_letter(message)
            return [], {}
        request = message.request
        if isinstance(request, InternalWork):
            return [request], {}
        if isinstance(request, PublicationReceipt):
            if self._own_receipt(message) is None:
                # Only the bus's copy of the function's own events may mark one announced.
                wrong = InboundMessage(
                    message.message_id,
                    message.source,
                    message.raw,
                    error=(
                        f"a receipt of {request.detail_type!r} from source"
                        f" {request.source[:64]!r}; this function publishes as"
                        f" {self.event_source!r}"
                    ),
                )
                self._dead_letter(wrong)
                return [], {"status": "rejected", "error": wrong.error}
            return [], {}  # confirmed by the caller, before any work
        if isinstance(request, SweepRequest):
            return [], self._run_side(self.run_sweep, request, message, deadline, "sweep")
        if isinstance(request, ReconcileRequest):
            if message.source == "eventbridge":
                # The reconcile schedule sends to the queue; an operator may invoke it directly.
                wrong = replace(message, error="a reconcile is not accepted from the event bus")
                self._dead_letter(wrong)
                return [], {"status": "rejected", "error": wrong.error}
            return [], self._run_side(self.run_reconcile, request, message, deadline, "reconcile")
        assert isinstance(request, CancelCommand)
        if request.cancel_at is not None and not self._due(request, message):
            return [], self._run_side(self.run_schedule, request, message, deadline, "cancel_at")
        works: list[Work] = [
            CancelWork(batch_id, request.reason, request.requested_by, request.schedule)
            for batch_id in request.batch_ids
        ]
        return works, {}

    def _due(self, command: CancelCommand, message: InboundMessage) -> bool:
        """A `cancel_at` that was in the future when the message was sent, and has passed while
        it waited (a backlog, a retry): the cancellation is due, so it is done now."""
        at, now = command.cancel_at, self.clock()
        sent = message.sent_at or now
        # Sent at most a minute after its time (clock skew, or the function's own requeue of
        # a long command close to its time): still accepted, and due.
        if at is None or at > now or sent >= at + CLOCK_SKEW:
            return False
        self.tally.count("ScheduledCancelsDueOnArrival")
        return True

    def _run_side(
        self,
        runner: SideRequestRunner | None,
        request: Any,
        message: InboundMessage,
        deadline: Deadline,
        what: str,
    ) -> dict[str, Any]:
        if runner is None:
            bad = InboundMessage(
                message.message_id,
                message.source,
                message.raw,
                error=f"{what} is not enabled in this deployment",
            )
            self._dead_letter(bad)
            return {"status": "rejected", "error": bad.error}
        try:
            return runner(request, deadline)
        except InvalidInput as exc:
            self._dead_letter(
                InboundMessage(message.message_id, message.source, message.raw, error=str(exc))
            )
            return {"status": "rejected", "error": str(exc)}
        except Exception as exc:
            logger.exception(f"{what} failed", extra={"message_id": message.message_id})
            raise _MessageFailed(f"{what} failed: {type(exc).__name__}") from exc

    def _dead_letter(self, message: InboundMessage) -> None:
        reason = message.error or "invalid"
        self.tally.count("InvalidMessages")
        logger.error(
            "invalid message sent to the DLQ",
            extra={"message_id": message.message_id, "source": message.source, "why": reason},
        )
        if not self.dead_letters.configured:
            if message.source == "sqs":
                # Without a DLQ URL, SQS's own redrive moves it there after maxReceiveCount.
                raise _MessageFailed(reason)
            raise InvalidInput(reason)
        try:
            self.dead_letters.send(message.raw, reason, message.source, message.message_id)
        except Exception as exc:
            raise _MessageFailed(f"DLQ unavailable: {type(exc).__name__}") from exc

    def _requeue(self, unfinished: list[WorkResult]) -> None:
        accepted = self.queue.send_many(requeue_messages(unfinished))
        if not all(accepted):
            raise RuntimeError(f"{accepted.count(False)} unfinished requests could not be requeued")
        self.tally.count("Requeued", len(unfinished))

    def _log_outcomes(self, results: list[WorkResult]) -> None:
        if results:
            logger.info(
                "batch work finished",
                extra={
                    "outcomes": dict(Counter(result.outcome for result in results)),
                    "failed": sum(result.failed for result in results),
                },
            )


class _MessageFailed(Exception):
    """The message could not be handled now; it must come back (SQS) or the call must fail."""
