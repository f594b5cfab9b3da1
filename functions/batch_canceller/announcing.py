"""The announce phase of a run: every owed event through the protocol's table
(`announce_protocol`), with the conditional writes and the PutEvents calls around it.

Each helper returns what it found; nothing is shared between the threads that run them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.announce_protocol import (
    Claim,
    Decision,
    Delivery,
    Ledger,
    PutOutcome,
    Settle,
    Step,
    after_put,
    decide,
)
from batch_canceller.announcer import (
    EVENTS_CALL_SECONDS,
    Announcement,
    EventPublisher,
    announcement_from,
)
from batch_canceller.commands import PublicationReceipt
from batch_canceller.concurrency import MapFn
from batch_canceller.deadline import FINISH_SECONDS, Deadline
from batch_canceller.event_ledger import EventLedger
from batch_canceller.observability import Tally, logger
from batch_canceller.work import WorkResult

EventKey = tuple[str, str]  # (batch ID, detail type)
RESEND_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class OwedEvent:
    announcement: Announcement
    ledger: Ledger  # as the record this run holds says
    delivery: Delivery  # who claims it, or already did
    claimed_here: bool  # this run's own write claimed it

    @property
    def key(self) -> EventKey:
        return self.announcement.key


@dataclass(frozen=True)
class Verdict:
    """Whether the work owing an event is done, or when its message should come back."""

    done: bool
    after: float | None = None  # seconds; None: the queue's visibility timeout
    why: str = ""


DONE = Verdict(done=True)


def owed_events(results: Sequence[WorkResult]) -> list[OwedEvent]:
    """Every event the records of a run owe, once each: a batch handled twice in one run (two
    messages asking for it) is announced once, under the claim this run wrote, if it wrote one."""
    owed: dict[EventKey, OwedEvent] = {}
    for result in results:
        if result.record is None or result.failed:
            continue
        for detail_type in sorted(result.record.pending_events):
            event = OwedEvent(
                announcement_from(result.record, detail_type, result.delivery.token),
                result.record.ledger(detail_type),
                result.delivery,
                claimed_here=detail_type in result.claimed,
            )
            known = owed.get(event.key)
            if known is None or (event.claimed_here and not known.claimed_here):
                owed[event.key] = event
    return list(owed.values())


class Announcer:
    def __init__(
        self,
        ledger: EventLedger,
        publisher: EventPublisher,
        map_fn: MapFn,
        clock: Callable[[], datetime],
        tally: Tally,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ledger = ledger
        self._publisher = publisher
        self._map = map_fn
        self._clock = clock
        self._tally = tally
        self._sleep = sleep

    def announce(
        self, owed: Sequence[OwedEvent], deadline: Deadline, lease: float
    ) -> dict[EventKey, Verdict]:
        """Decide, claim what is free or lapsed, publish what this run holds, settle each."""
        now = self._now()
        first = {event.key: decide(event.ledger, event.claimed_here, now) for event in owed}
        to_claim = [event for event in owed if first[event.key].step is Step.CLAIM]
        claimed = self._map(partial(self._claim, deadline=deadline, lease=lease), to_claim)
        after_claim = dict(zip((event.key for event in to_claim), claimed, strict=True))
        verdicts: dict[EventKey, Verdict] = {}
        to_publish: list[OwedEvent] = []
        for event in owed:
            decision = after_claim.get(event.key, first[event.key])
            if isinstance(decision, Verdict):  # the claim write failed
                verdicts[event.key] = decision
            elif decision.step is Step.PUBLISH:
                to_publish.append(event)
            else:
                verdicts[event.key] = _verdict(decision)
        by_key = {event.key: event for event in to_publish}
        chunks = [
            [by_key[a.key] for a in chunk]
            for chunk in self._publisher.chunked([e.announcement for e in to_publish])
        ]
        announce = partial(self._announce_chunk, deadline=deadline, lease=lease)
        for settled in self._map(announce, chunks):
            verdicts.update(settled)
        return verdicts

    def confirm(self, receipts: Sequence[PublicationReceipt]) -> list[bool]:
        """Marks announced the events the bus delivered back. A publisher marks its event right
        after PutEvents, so a receipt changes something only when the publisher died or did not
        learn the outcome; then it keeps a later delivery from publishing the event again. Per
        receipt: whether it was handled (False: retry it)."""
        self._tally.count("PublicationReceipts", len(receipts))
        try:
            owed_claims = self._ledger.owed_claims_of([r.batch_id for r in receipts])
        except Exception as exc:
            logger.warning("receipts not checked", extra={"why": type(exc).__name__})
            return [False] * len(receipts)
        owed = []
        for receipt in dict.fromkeys(receipts):
            claims = owed_claims.get(receipt.batch_id, {})
            if receipt.detail_type not in claims:
                continue  # announced already, or never owed: nothing to do
            if (
                receipt.publication_id is None
                or claims[receipt.detail_type] != receipt.publication_id
            ):
                # Not the publication of the claim that holds the event: a receipt arriving
                # after a takeover, or one nobody published. It proves nothing about the
                # current claim, whose publisher (or its receipt) settles the event.
                self._tally.count("ReceiptsNotMatchingTheClaim")
                continue
            owed.append(receipt)
        marked = dict(zip(owed, self._map(self._mark_by_receipt, owed), strict=True))
        return [marked.get(receipt, True) for receipt in receipts]

    # -- steps, each returning what it found ---------------------------------------------

    def _claim(self, event: OwedEvent, deadline: Deadline, lease: float) -> Decision | Verdict:
        """The conditional claim write. Won: publish; lost: the table again, on the record the
        failed write returned; not written (an AWS error): the message comes back."""
        if not deadline.leaves(FINISH_SECONDS):
            return Verdict(False, None, "not claimed: deadline")
        claim = Claim(event.delivery.token, lease)
        try:
            lost_to = self._ledger.claim(event.announcement.batch_id, event.key[1], claim)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "claim not written", extra={"batch_id": event.key[0], "why": type(exc).__name__}
            )
            return Verdict(False, None, "claim not written")
        if lost_to is None:
            if event.ledger.claim is not None:
                self._tally.count("ClaimsTakenOver")
            return Decision(Step.PUBLISH)
        again = decide(lost_to.ledger(event.key[1]), claimed_here=False, now=self._now())
        # Lapsed by now although the write found it live (a claim taken and given up between):
        # come back in a second rather than spin.
        return Decision(Step.WAIT, 1.0) if again.step is Step.CLAIM else again

    def _announce_chunk(
        self, chunk: list[OwedEvent], deadline: Deadline, lease: float
    ) -> list[tuple[EventKey, Verdict]]:
        """PutEvents for one chunk, resending refused entries, then each entry settled."""
        if not deadline.leaves(FINISH_SECONDS + EVENTS_CALL_SECONDS):
            # No time for it: the claims are this run's until the lease ends, so the messages
            # come back then and publish.
            later = Verdict(False, max(0.0, lease - self._now()), "not announced: deadline")
            return [(event.key, later) for event in chunk]
        settled: list[tuple[EventKey, Verdict]] = []
        attempts, sending = 0, chunk
        while sending:
            attempts += 1
            outcomes = self._publisher.put([event.announcement for event in sending])
            resend = []
            for event, outcome in zip(sending, outcomes, strict=True):
                time_left = deadline.leaves(
                    FINISH_SECONDS + EVENTS_CALL_SECONDS + RESEND_PAUSE_SECONDS * attempts
                )
                step = after_put(outcome, attempts, time_left)
                if step is Settle.RESEND:
                    resend.append(event)
                else:
                    settled.append((event.key, self._settle(event, step, outcome, lease, deadline)))
            sending = resend
            if sending:
                self._sleep(RESEND_PAUSE_SECONDS * attempts)
        return settled

    def _settle(
        self, event: OwedEvent, step: Settle, outcome: PutOutcome, lease: float, deadline: Deadline
    ) -> Verdict:
        batch_id, detail_type = event.key
        if step is Settle.MARK:
            self._tally.count(detail_type.replace(" ", ""))
            if not deadline.leaves(FINISH_SECONDS):
                self._tally.count("EventMarksLeftToReceipts")
                return DONE  # published; its receipt marks it
            try:
                self._ledger.mark_announced(batch_id, detail_type)
            except (ClientError, BotoCoreError):
                # The event is out and its receipt will mark it; failing the message would only
                # make it wait for that receipt.
                self._tally.count("EventMarkFailures")
                logger.exception(
                    "event sent but not marked announced", extra={"batch_id": batch_id}
                )
            return DONE
        self._tally.count("EventPublishFailures")
        if step is Settle.KEEP:
            self._tally.count("EventPublishUnknown")
            logger.warning(
                "PutEvents outcome not known; waiting for its receipt", extra={"batch_id": batch_id}
            )
            return Verdict(
                False,
                max(0.0, lease - self._now()),
                "event outcome not known: waiting for its receipt",
            )
        try:
            self._ledger.release_claim(batch_id, detail_type, event.delivery.token)
        except (ClientError, BotoCoreError):
            # Not released: the claim lapses with its lease, and the redelivery waits for it.
            return Verdict(False, max(0.0, lease - self._now()), "event refused by the bus")
        logger.warning(
            "event refused by the bus", extra={"batch_id": batch_id, "outcome": outcome.value}
        )
        return Verdict(False, None, "event refused by the bus")

    def _mark_by_receipt(self, receipt: PublicationReceipt) -> bool:
        try:
            marked = self._ledger.mark_announced(
                receipt.batch_id, receipt.detail_type, claimed_by=receipt.publication_id
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "receipt not recorded",
                extra={"batch_id": receipt.batch_id, "why": type(exc).__name__},
            )
            return False
        if not marked:
            return True  # marked by its publisher meanwhile, or the claim moved on: handled
        self._tally.count("EventsConfirmedByReceipt")
        logger.info(
            "event marked announced by its receipt (its publisher did not mark it)",
            extra={"batch_id": receipt.batch_id, "detail_type": receipt.detail_type},
        )
        return True

    def _now(self) -> float:
        return self._clock().timestamp()


def _verdict(decision: Decision) -> Verdict:
    if decision.step is Step.DONE:
        return DONE
    return Verdict(False, decision.wait_seconds, "another delivery holds the event's claim")
