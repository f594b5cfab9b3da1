"""Input models: every entry point's payload becomes one of these, or an InvalidInput whose
message names the field at fault (`batch_ids[3]`, `check.attempt`, `detail.batch_id`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batch_canceller.input_fields import (
    Fields,
    InvalidInput,
    join,
    json_type,
    parse_time,
    preview,
    quoted,
    validate_batch_id,
)
from batch_canceller.statuses import DetailType
from batch_canceller.strict_json import load_json
from batch_canceller.sweep_policy import (
    MAX_SWEEP_CANCELS,
    NON_TERMINAL_STATUSES,
    SweepRequest,
    parse_sweep,
)
from batch_canceller.webhook_notice import WebhookNotice, parse_webhook_notice

__all__ = [
    "MAX_SWEEP_CANCELS",
    "NON_TERMINAL_STATUSES",
    "CancelCommand",
    "InternalWork",
    "InvalidInput",
    "PublicationReceipt",
    "Request",
    "StatusCheck",
    "SweepRequest",
    "WebhookNotice",
    "parse_message_body",
    "parse_payload",
    "validate_batch_id",
]

MAX_BATCH_IDS = 1000
MAX_BODY_BYTES = 512 * 1024
MAX_TEXT_FIELD = 1024
# `schedule`: set by the function's own cancel_at schedules (the one that fired and sent it).
COMMAND_FIELDS = frozenset(
    {"batch_id", "batch_ids", "reason", "requested_by", "cancel_at", "schedule"}
)
MAX_SCHEDULE_NAME = 64  # Scheduler's limit on a schedule's name
CHECK_FIELDS = frozenset({"batch_id", "watch_id", "attempt", "since", "step"})
# A chain checks at most once a second for at most POLL_TIMEOUT_SECONDS (14 days at most):
# an attempt beyond this was not sent by the function.
MAX_CHECK_ATTEMPT = 10_000_000
MAX_WATCH_ID = 128
MAX_STEP = 64
MAX_SOURCE = 256
# The events a record owes and marks announced; the bus sends each back as a receipt.
RECEIPTED_DETAIL_TYPES = frozenset(t.value for t in DetailType) - {DetailType.SWEEP_COMPLETED}
CANCEL_REQUESTED = "Batch Cancel Requested"
ENVELOPE_FIELDS = frozenset({"detail-type", "source", "detail"})


@dataclass(frozen=True)
class CancelCommand:
    batch_ids: tuple[str, ...]
    reason: str | None = None
    requested_by: str | None = None
    cancel_at: datetime | None = None
    # The cancel_at schedule that sent this command (it fired, and deleted itself).
    schedule: str | None = None


@dataclass(frozen=True)
class StatusCheck:
    """An internal follow-up: look at a `cancelling` batch again (sent by the function itself)."""

    batch_id: str
    watch_id: str
    attempt: int
    since: datetime
    # Drawn by whoever sends the check: one token wins each step of the chain.
    step: str = ""

    def to_message(self) -> dict[str, Any]:
        return {
            "check": {
                "batch_id": self.batch_id,
                "watch_id": self.watch_id,
                "attempt": self.attempt,
                "since": self.since.isoformat(),
                "step": self.step,
            }
        }


@dataclass(frozen=True)
class PublicationReceipt:
    """One of the function's own events, delivered back to the queue by the bus: proof that it
    was published, even when the publisher died before marking it announced."""

    batch_id: str
    detail_type: str
    source: str
    # The token of the claim it was published under (the event's `publication_id`): only the
    # current claim's own publication can be confirmed, so a receipt nobody published (sent
    # by whoever may write to the queue or invoke the function) proves nothing.
    publication_id: str | None = None
    # When the bus took the event (its `time`): how long a receipt is still worth retrying.
    published_at: datetime | None = field(default=None, compare=False)


MAX_RECONCILE_RECORDS = 10_000
# A delivery's token: a message or request ID, "/", the invocation's nonce.
MAX_PUBLICATION_ID = 128


@dataclass(frozen=True)
class ReconcileRequest:
    """Requeue the follow-through of records no queue message will touch again (sent by the
    reconcile schedule; it only sends status checks, so a stray one is harmless)."""

    max_records: int = 1000


Request = (
    CancelCommand
    | StatusCheck
    | WebhookNotice
    | SweepRequest
    | PublicationReceipt
    | ReconcileRequest
)
# Per-batch work the function's own queue carries (a check it sent, a notice its receiver sent):
# each becomes one work item as it is.
InternalWork = StatusCheck | WebhookNotice


def parse_message_body(body: str) -> Request:
    """An SQS body: JSON (a command, sweep, check or an event a rule delivered) or a bare ID."""
    if len(body.encode("utf-8", errors="surrogatepass")) > MAX_BODY_BYTES:
        raise InvalidInput(f"the message body is larger than {MAX_BODY_BYTES} bytes")
    text = body.strip()
    if not text.startswith(("{", "[", '"')):
        # Not JSON-shaped: a bare batch ID, as sent by `aws sqs send-message --message-body ID`.
        return CancelCommand(batch_ids=(validate_batch_id(text, ""),))
    payload = load_json(text)
    if isinstance(payload, str):
        return CancelCommand(batch_ids=(validate_batch_id(payload, ""),))
    if isinstance(payload, dict) and payload.keys() >= ENVELOPE_FIELDS:
        return _parse_event(Fields(payload))
    return parse_payload(payload)


def parse_payload(payload: object, path: str = "") -> Request:
    """A JSON object: an SQS body, an EventBridge `detail` (path "detail"), or a direct payload."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"{quoted(path)}: expected a JSON object, got {json_type(payload)}")
    fields = Fields(payload, path)
    if fields.has("check"):
        return _parse_check(fields)
    if fields.has("webhook"):
        return parse_webhook_notice(fields)
    if fields.has("sweep"):
        return parse_sweep(fields)
    if fields.has("reconcile"):
        return _parse_reconcile(fields)
    return _parse_command(fields)


def _parse_event(envelope: Fields) -> Request:
    """An EventBridge event a rule delivered to the queue: a receipt of one of the function's
    own events, or a `Batch Cancel Requested` routed through SQS. Envelope fields the function
    does not read (id, account, region, resources, replay-name, ...) are not checked."""
    detail_type = envelope.text("detail-type", MAX_SOURCE, required=True)
    if detail_type == CANCEL_REQUESTED:
        detail = envelope.object("detail")
        if detail.has("check") or detail.has("reconcile") or detail.has("webhook"):
            raise InvalidInput(
                f"{quoted(detail.path)} of {CANCEL_REQUESTED!r} must be a command or sweep;"
                " a status check, a webhook notice or a reconcile is internal"
            )
        return parse_payload(detail.value, detail.path)
    if detail_type not in RECEIPTED_DETAIL_TYPES:
        raise InvalidInput(
            f"unsupported 'detail-type' {preview(str(detail_type))} in an event on the queue;"
            f" expected {CANCEL_REQUESTED!r} or one of the function's own events"
        )
    source = envelope.text("source", MAX_SOURCE, required=True, empty=False)
    detail = envelope.object("detail")
    return PublicationReceipt(
        validate_batch_id(detail.required("batch_id"), detail.name("batch_id")),
        str(detail_type),
        str(source),
        detail.text("publication_id", MAX_PUBLICATION_ID),
        event_time(envelope.value.get("time")),
    )


def _parse_command(fields: Fields) -> CancelCommand:
    fields.only(COMMAND_FIELDS)
    one, many = fields.name("batch_id"), fields.name("batch_ids")
    if fields.has("batch_id") == fields.has("batch_ids"):
        raise InvalidInput(
            f"{quoted(fields.path)} needs exactly one of {quoted(one)} or {quoted(many)}"
        )
    if fields.has("batch_id"):
        ids: tuple[str, ...] = (validate_batch_id(fields.value["batch_id"], one),)
    else:
        raw_ids = fields.value["batch_ids"]
        if not isinstance(raw_ids, list):
            raise InvalidInput(f"{quoted(many)} must be a list, got {json_type(raw_ids)}")
        if not raw_ids:
            raise InvalidInput(f"{quoted(many)} is empty")
        if len(raw_ids) > MAX_BATCH_IDS:
            raise InvalidInput(
                f"{quoted(many)} has {len(raw_ids)} entries; at most {MAX_BATCH_IDS} are allowed"
            )
        # Duplicates in one command are one cancel each, not two.
        ids = tuple(
            dict.fromkeys(
                validate_batch_id(item, join(many, index)) for index, item in enumerate(raw_ids)
            )
        )
    return CancelCommand(
        batch_ids=ids,
        reason=fields.text("reason", MAX_TEXT_FIELD, null_is_absent=True),
        requested_by=fields.text("requested_by", MAX_TEXT_FIELD, null_is_absent=True),
        # A null `cancel_at` is an error, not "cancel now".
        cancel_at=fields.time("cancel_at"),
        schedule=fields.text("schedule", MAX_SCHEDULE_NAME, null_is_absent=True),
    )


def _parse_check(fields: Fields) -> StatusCheck:
    fields.only({"check"})
    check = fields.object("check")
    check.only(CHECK_FIELDS)
    attempt = check.integer("attempt", 1, MAX_CHECK_ATTEMPT, required=True)
    watch_id = check.text("watch_id", MAX_WATCH_ID, required=True, empty=False)
    since = check.time("since", required=True)
    # Required fields: present, or InvalidInput was raised.
    assert attempt is not None
    assert watch_id is not None
    assert since is not None
    return StatusCheck(
        batch_id=validate_batch_id(check.required("batch_id"), check.name("batch_id")),
        watch_id=watch_id,
        attempt=attempt,
        since=since,
        step=check.text("step", MAX_STEP) or "",
    )


def event_time(value: object) -> datetime | None:
    """An event's `time`, if it is one with an offset: it only tunes retries, so an odd one is
    no time rather than an error."""
    moment = parse_time(value) if isinstance(value, str) else None
    return moment.astimezone(UTC) if moment is not None and moment.tzinfo is not None else None


def _parse_reconcile(fields: Fields) -> ReconcileRequest:
    fields.only({"reconcile"})
    options = fields.object("reconcile")
    options.only({"max_records"})
    most = options.integer("max_records", 1, MAX_RECONCILE_RECORDS)
    return ReconcileRequest() if most is None else ReconcileRequest(max_records=most)
