"""One work item: a batch ID to cancel, a status check of a batch not yet terminal after its
cancel, or a webhook notice. The API call and the conditional write for it, ending in a result
that says what the record now owes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.announce_protocol import Claim
from batch_canceller.api_errors import MIN_REQUEST_SECONDS, OutOfTime, TransientApiError
from batch_canceller.commands import StatusCheck
from batch_canceller.config import ConfigurationError
from batch_canceller.deadline import Deadline
from batch_canceller.follow_up import CheckStep, PollSettings, classify
from batch_canceller.observability import Tally, logger
from batch_canceller.openai_api import ApiResponse
from batch_canceller.records import Watch, iso
from batch_canceller.statuses import is_terminal
from batch_canceller.store import BatchStore
from batch_canceller.webhook_notice import NoticeStep, WebhookNotice, classify_notice
from batch_canceller.work_items import BatchApi, CancelWork, Work, WorkItem, WorkResult

__all__ = ["BatchApi", "CancelWork", "Work", "WorkItem", "WorkResult", "WorkRunner"]


class WorkRunner:
    def __init__(
        self,
        api: BatchApi,
        store: BatchStore,
        poll: PollSettings,
        tally: Tally,
        redact: Callable[[Any], Any],
        clock: Callable[[], datetime],
        *,
        webhooks: bool = False,
    ) -> None:
        self._api = api
        self._store = store
        self._poll = poll
        self._tally = tally
        # Redacts a JSON value (an answer's Batch object, an error's fields): every string in it.
        self._redact = redact
        self._clock = clock
        # With webhooks a check often arrives after a notice ended the batch: it reads the
        # record first (one GetItem) rather than the API. Without, checks are as before.
        self._read_before_check = webhooks

    def run(self, item: WorkItem, deadline: Deadline, lease: float) -> WorkResult:
        """Never raises for an expected failure: the result says what went wrong. A transition
        this work writes is claimed for its delivery until `lease` (epoch seconds)."""
        work, claim = item.work, Claim(item.delivery.token, lease)
        if not deadline.allows(MIN_REQUEST_SECONDS):
            self._tally.count("DeadlineDeferrals")
            return self._failed(item, "deferred", "not started: invocation deadline")
        try:
            if isinstance(work, CancelWork):
                self._tally.count("CancelRequests")
                return self._cancel(item, work, claim, deadline)
            if isinstance(work, WebhookNotice):
                self._tally.count("WebhookNotices")
                return self._notice(item, work, claim, deadline)
            self._tally.count("StatusChecks")
            return self._check(item, work, claim, deadline)
        except OutOfTime as exc:
            # Nothing was written for it: the work goes on as it is, in another invocation
            # (after the rate limit's pause, when that is what stopped it).
            self._tally.count("DeadlineDeferrals")
            deferred = str(exc)
            return WorkResult(
                item.work, item.delivery, "deferred", deferred, retry_after=exc.retry_after
            )
        except TransientApiError as exc:
            self._tally.count("TransientFailures")
            logger.warning(
                "OpenAI API unavailable", extra={"batch_id": work.batch_id, "why": str(exc)}
            )
            return self._failed(item, "transient", str(exc))
        except ConfigurationError as exc:
            self._tally.count("ConfigurationErrors")
            logger.error("configuration error", extra={"batch_id": work.batch_id, "why": str(exc)})
            return self._failed(item, "configuration", str(exc))
        except (ClientError, BotoCoreError) as exc:
            self._tally.count("StoreFailures")
            logger.warning(
                "AWS call failed", extra={"batch_id": work.batch_id, "why": type(exc).__name__}
            )
            return self._failed(item, "aws", f"AWS call failed: {type(exc).__name__}")
        except Exception as exc:
            self._tally.count("UnexpectedErrors")
            logger.exception("unexpected error", extra={"batch_id": work.batch_id})
            return self._failed(item, "unexpected", f"unexpected {type(exc).__name__}")

    def _cancel(
        self, item: WorkItem, work: CancelWork, claim: Claim, deadline: Deadline
    ) -> WorkResult:
        answer = self._api.cancel_batch(work.batch_id, deadline)
        if not answer.ok and answer.status in (400, 409) and says_cannot_cancel(answer):
            # Already terminal (or otherwise not cancellable): store the batch's real state.
            answer = self._api.retrieve_batch(work.batch_id, deadline)
        if not answer.ok:
            return self._api_error(item, answer, claim)
        batch = self._redact(_batch_object(answer, work.batch_id))
        now = self._clock()
        # A batch the answer leaves short of terminal (`cancelling`, or the `in_progress` of a
        # gateway that answers before it acts) is followed by a chain of status checks. This
        # write starts one unless one already follows the batch; either way, this cancel sends
        # a check for the chain's next step (a running chain's own next check and this one race
        # for the step; one that died is revived).
        saved = self._store.save_batch(
            work.batch_id,
            batch,
            work.reason,
            work.requested_by,
            claim=claim,
            watch=None if is_terminal(batch["status"]) else Watch(uuid.uuid4().hex, now),
        )
        record = saved.record
        if not record.followed:
            outcome = record.status or "unknown"
            return WorkResult(work, item.delivery, outcome, None, record, saved.claimed)
        if record.watch_id is None or self._poll.expired(record.watch_since, now):
            # No chain yet (a stale answer did not write one), or the chain timed out (it
            # stalled, or will when its next check arrives): a new one, its clock from now.
            replacing = record.watch_id
            watch = Watch(uuid.uuid4().hex, now)
            record = self._store.start_watch(work.batch_id, watch, replacing).record
        next_check = StatusCheck(
            work.batch_id,
            str(record.watch_id),
            record.poll_attempt + 1,
            record.watch_since or now,
            uuid.uuid4().hex,
        )
        return WorkResult(
            work, item.delivery, str(record.status), None, record, saved.claimed, next_check
        )

    def _notice(
        self, item: WorkItem, work: WebhookNotice, claim: Claim, deadline: Deadline
    ) -> WorkResult:
        """A trigger to look now: the record decides whether to (`classify_notice`); the look
        is a status check's, stored by the same write, so the announce protocol publishes a
        transition it makes once. The chain is left alone: a terminal write ends it, and a
        batch still short of terminal keeps being polled (the safety net)."""
        known = self._store.get(work.batch_id)
        step = classify_notice(known, work)
        log = {"batch_id": work.batch_id, "event_id": work.event_id, "type": work.type}
        if step is NoticeStep.UNKNOWN:
            self._tally.count("WebhooksForUnknownBatches")
            logger.info("webhook for a batch with no record", extra=log)
            return WorkResult(work, item.delivery, "webhook_unknown_batch")
        if step is NoticeStep.KNOWN:
            # Its event is announced, or owed under a claim: the record, carried on, lets the
            # announce phase finish what is owed, as for any message that finds it.
            self._tally.count("WebhooksAlreadyKnown")
            return WorkResult(work, item.delivery, "webhook_already_known", None, known)
        answer = self._api.retrieve_batch(work.batch_id, deadline)
        if not answer.ok:
            if answer.status in (401, 403):
                return self._api_error(item, answer, claim)
            # A failed look is no news (as for a check): nothing stored, the chain goes on.
            logger.warning("webhook lookup failed", extra={**log, "http_status": answer.status})
            return WorkResult(work, item.delivery, "webhook_lookup_failed")
        batch = self._redact(_batch_object(answer, work.batch_id))
        saved = self._store.save_batch(
            work.batch_id, batch, claim=claim, webhook_event=work.event_id
        )
        record = saved.record
        if not is_terminal(record.status):
            # OpenAI's webhook ran ahead of its own GET: the chain's next check sees the end.
            self._tally.count("WebhooksNotTerminalYet")
        return WorkResult(
            work, item.delivery, record.status or "unknown", None, record, saved.claimed
        )

    def _check(
        self, item: WorkItem, work: StatusCheck, claim: Claim, deadline: Deadline
    ) -> WorkResult:
        if self._read_before_check:
            known = self._store.get(work.batch_id)
            if known is not None and is_terminal(known.status):
                # Superseded by whatever ended the batch (a webhook's notice, usually): no GET.
                # The record still goes to the announce phase, for anything it owes.
                self._tally.count("StatusChecksSuperseded")
                return WorkResult(work, item.delivery, "check_superseded", None, known)
        answer = self._api.retrieve_batch(work.batch_id, deadline)
        if answer.ok:
            batch = self._redact(_batch_object(answer, work.batch_id))
            saved = self._store.save_batch(work.batch_id, batch, claim=claim)
        elif answer.status in (401, 403):
            return self._api_error(item, answer, claim)
        else:
            # A failed look is no news: recorded, and the chain goes on (its timeout still ends
            # it). A one-off 404 from a gateway must not end the watch of a cancelling batch.
            saved = self._store.save_error(work.batch_id, self._last_error(answer), announce=False)
        record, step = saved.record, classify(saved.record, work)
        if step is CheckStep.TAKE:
            taken = self._store.take_step(work.batch_id, work.watch_id, work.attempt, work.step)
            record = taken.record
            # Lost: another token won this step (superseded), or a twin copy of this very
            # message did (current as well: both send, and only one of those next checks wins).
            step = CheckStep.CURRENT if taken.changed else classify(record, work)
            step = CheckStep.SUPERSEDED if step is CheckStep.TAKE else step
        if step is CheckStep.ENDED:
            return WorkResult(
                work, item.delivery, record.status or "unknown", None, record, saved.claimed
            )
        if step is CheckStep.SUPERSEDED:
            # A duplicate, or an older chain: the current chain carries on.
            return WorkResult(work, item.delivery, "check_superseded", None, record)
        if self._poll.timed_out(work, self._clock()):
            stalled = self._store.mark_stalled(work.batch_id, work.watch_id, claim)
            return WorkResult(work, item.delivery, "stalled", None, stalled.record, stalled.claimed)
        following = StatusCheck(
            work.batch_id, work.watch_id, work.attempt + 1, work.since, uuid.uuid4().hex
        )
        outcome = record.status or "unknown"
        return WorkResult(work, item.delivery, outcome, None, record, next_check=following)

    def _last_error(self, answer: ApiResponse) -> dict[str, Any]:
        error = answer.error()
        # Every text field: a gateway may quote the request (and its key) in any of them.
        return {
            "http_status": answer.status,
            "type": self._redact(error.get("type")),
            "code": self._redact(error.get("code")),
            "message": self._redact(str(error.get("message") or f"HTTP {answer.status}")),
            "at": iso(self._clock()),
        }

    def _api_error(self, item: WorkItem, answer: ApiResponse, claim: Claim) -> WorkResult:
        work = item.work
        last_error = self._last_error(answer)
        reason = work.reason if isinstance(work, CancelWork) else None
        requested_by = work.requested_by if isinstance(work, CancelWork) else None
        log = {
            "batch_id": work.batch_id,
            "http_status": answer.status,
            "request_id": answer.request_id,
        }
        if answer.status in (401, 403):
            # Not the batch's fault: keep the message for later, and make noise.
            self._store.save_error(
                work.batch_id, last_error, announce=False, reason=reason, requested_by=requested_by
            )
            self._tally.count("ConfigurationErrors")
            logger.error(
                "OpenAI API rejected the credentials; check the key secret and its permissions",
                extra=log,
            )
            return self._failed(item, "unauthorized", f"HTTP {answer.status}: key rejected")
        saved = self._store.save_error(
            work.batch_id,
            last_error,
            announce=True,
            reason=reason,
            requested_by=requested_by,
            claim=claim,
        )
        logger.info("cancel failed permanently", extra=log)
        return WorkResult(work, item.delivery, "cancel_failed", None, saved.record, saved.claimed)

    @staticmethod
    def _failed(item: WorkItem, outcome: str, failure: str) -> WorkResult:
        return WorkResult(item.work, item.delivery, outcome, failure)


def says_cannot_cancel(answer: ApiResponse) -> bool:
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
