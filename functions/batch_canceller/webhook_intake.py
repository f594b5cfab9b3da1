"""One webhook request, classified into one Answer (README, *Webhooks*), then dispatched: the
message queued for the canceller, the answer counted and logged once.

Order of the checks: method, size (before any decoding or HMAC work), the signature headers'
shape, the timestamp, the signature, then the body. Nothing the sender could learn from an
answer's body is specific: it names the HTTP status, no more."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.config import ConfigurationError
from batch_canceller.input_fields import BATCH_ID_PATTERN, InvalidInput
from batch_canceller.observability import count_once, logger
from batch_canceller.strict_json import load_json
from batch_canceller.webhook_notice import MAX_CREATED_AT
from batch_canceller.webhook_request import RequestProblem, read_request
from batch_canceller.webhook_secret import Keys, WebhookSecretUnavailable
from batch_canceller.webhook_signature import (
    SignatureHeaders,
    Verdict,
    matches,
    read_headers,
    timely,
)

BATCH_EVENT_TYPES = frozenset(
    {"batch.cancelled", "batch.completed", "batch.failed", "batch.expired"}
)
MAX_EVENT_ID_CHARS = 256
Outcome = Literal["queued", "ignored", "rejected", "failed"]
# The metric each outcome is counted as (README, Metrics); all but queued carry a reason.
METRICS: dict[Outcome, str] = {
    "queued": "WebhooksQueued",
    "ignored": "WebhooksIgnored",
    "rejected": "WebhooksRejected",
    "failed": "WebhooksFailed",
}
_BODIES = {
    200: {"status": "received"},
    400: {"error": "bad_request"},
    401: {"error": "unauthorized"},
    405: {"error": "method_not_allowed"},
    413: {"error": "payload_too_large"},
    500: {"error": "internal_error"},
    503: {"error": "unavailable"},
}
_VERDICT_STATUS = {Verdict.MISSING: 401, Verdict.MALFORMED: 400, Verdict.STALE: 401}


class SecretSource(Protocol):
    def keys(self) -> Keys: ...
    def refreshed(self) -> Keys | None: ...


@dataclass(frozen=True)
class Answer:
    status: int
    outcome: Outcome
    reason: str | None = None
    # For the queued outcome: the message for the canceller (DESIGN.md, Webhook intake).
    message: Mapping[str, Any] | None = None
    # What may be logged: only facts of a verified request.
    facts: Mapping[str, object] | None = None

    def response(self) -> dict[str, Any]:
        headers = {"content-type": "application/json"}
        if self.status == 405:
            headers["allow"] = "POST"
        return {
            "statusCode": self.status,
            "headers": headers,
            "body": json.dumps(_BODIES[self.status]),
        }


def reject(status: int, reason: str, **facts: object) -> Answer:
    return Answer(status, "rejected", reason, facts=facts or None)


class WebhookIntake:
    def __init__(
        self,
        secrets: SecretSource,
        send: Callable[[str], object],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = secrets
        self._send = send
        self._clock = clock

    def handle(self, event: object) -> Answer:
        answer = self.classify(event)
        if answer.message is not None:
            try:
                self._send(json.dumps(answer.message))
            except (BotoCoreError, ClientError) as exc:
                # Not bad input: 503 makes OpenAI deliver it again later.
                answer = Answer(
                    503, "failed", "queue_unavailable", facts={"error": type(exc).__name__}
                )
        record(answer)
        return answer

    def classify(self, event: object) -> Answer:
        request = read_request(event)
        if isinstance(request, RequestProblem):
            return reject(request.status, request.reason)
        headers = read_headers(request.headers)
        if isinstance(headers, Verdict):
            return reject(_VERDICT_STATUS[headers], headers.value)
        if not timely(headers, self._clock()):
            return reject(401, Verdict.STALE.value)
        try:
            verified = self._verified(headers, request.body)
        except WebhookSecretUnavailable:
            return Answer(503, "failed", "secret_unavailable")
        except ConfigurationError as exc:
            count_once("ConfigurationErrors")
            return Answer(503, "failed", "secret_invalid", facts={"error": str(exc)})
        if not verified:
            return reject(401, Verdict.MISMATCH.value)
        return read_event(request.body, headers.webhook_id)

    def _verified(self, headers: SignatureHeaders, body: bytes) -> bool:
        keys = self._secrets.keys()
        if matches(headers, body, keys):
            return True
        # Perhaps the secret was rotated since it was read: read it again (at most once a minute).
        # If it cannot be read again, the request matched no key we have: 401, not 503 (a
        # forged signature must not turn into "try again"; OpenAI retries a 401 anyway).
        try:
            fresh = self._secrets.refreshed()
        except WebhookSecretUnavailable:
            logger.warning("the webhook secret could not be read again after a mismatch")
            return False
        except ConfigurationError:
            count_once("ConfigurationErrors")
            logger.error("the webhook secret read again after a mismatch is not valid")
            return False
        return fresh is not None and fresh != keys and matches(headers, body, fresh)


def read_event(body: bytes, delivery_id: str) -> Answer:
    """A verified body: a batch event to queue, another type to ignore, or a bad request."""
    try:
        document = load_json(body.decode("utf-8"), "the webhook body")
    except (UnicodeDecodeError, InvalidInput):
        return reject(400, "not_json", delivery_id=delivery_id)
    kind = document.get("type") if isinstance(document, dict) else None
    if not isinstance(kind, str):
        return reject(400, "malformed_event", delivery_id=delivery_id)
    if kind not in BATCH_EVENT_TYPES:
        return Answer(
            200, "ignored", "other_type", facts={"delivery_id": delivery_id, "type": kind[:100]}
        )
    data = document.get("data")
    batch_id = data.get("id") if isinstance(data, dict) else None
    if batch_id is None:
        return reject(400, "missing_batch_id", delivery_id=delivery_id, type=kind)
    if not isinstance(batch_id, str) or not BATCH_ID_PATTERN.fullmatch(batch_id):
        return reject(400, "invalid_batch_id", delivery_id=delivery_id, type=kind)
    event_id, created_at = document.get("id"), document.get("created_at")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_CHARS:
        return reject(400, "malformed_event", delivery_id=delivery_id, type=kind)
    # The canceller's own bounds (webhook_notice): what is queued here, it accepts.
    if type(created_at) is not int or not 0 <= created_at <= MAX_CREATED_AT:
        return reject(400, "malformed_event", delivery_id=delivery_id, type=kind)
    webhook = {
        "delivery_id": delivery_id,
        "event_id": event_id,
        "type": kind,
        "batch_id": batch_id,
        "created_at": created_at,
    }
    return Answer(200, "queued", message={"webhook": webhook}, facts=webhook)


def record(answer: Answer) -> None:
    """The answer's metric and its one log line (never headers or body: facts only)."""
    count_once(METRICS[answer.outcome], answer.reason)
    extra: dict[str, object] = {
        "status": answer.status,
        "outcome": answer.outcome,
        "reason": answer.reason,
    }
    extra.update(answer.facts or {})
    if answer.outcome == "failed":
        logger.error("webhook not taken", extra=extra)
    elif answer.outcome == "rejected":
        logger.warning("webhook rejected", extra=extra)
    else:
        logger.info("webhook received", extra=extra)
