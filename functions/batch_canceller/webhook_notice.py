"""A webhook notice: the receiver's word that OpenAI signed a `batch.*` webhook for a batch
(`../shared/DESIGN.md`, "Webhook intake"). It is a trigger, not a fact: the canceller reads the
batch with `GET /batches/{id}` and stores what that says, through the same monotonic write and
announce protocol as a status check. Classified once against the record (`classify_notice`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from batch_canceller.input_fields import (
    LATEST_TIME,
    Fields,
    InvalidInput,
    preview,
    quoted,
    validate_batch_id,
)
from batch_canceller.records import BatchRecord
from batch_canceller.statuses import is_terminal

WEBHOOK_TYPES = frozenset({"batch.cancelled", "batch.completed", "batch.failed", "batch.expired"})
NOTICE_FIELDS = frozenset({"delivery_id", "event_id", "type", "batch_id", "created_at"})
# Standard Webhooks IDs (`msg_...`) and OpenAI event IDs (`evt_...`) are short; this bounds
# what a notice may write into the record (`webhook_events`).
MAX_WEBHOOK_ID = 256
MAX_CREATED_AT = int(LATEST_TIME.timestamp())


@dataclass(frozen=True)
class WebhookNotice:
    """`{"webhook": {...}}` on the CancelQueue, sent by the webhook receiver after it verified
    the signature. Internal: accepted from the queue only, like a status check."""

    batch_id: str
    delivery_id: str  # the `webhook-id` header: the same for every retry of one delivery
    event_id: str  # the body's `id`: the same for every delivery of one event
    type: str
    created_at: int  # the event's `created_at` (Unix seconds), as OpenAI sent it

    def to_message(self) -> dict[str, Any]:
        return {
            "webhook": {
                "delivery_id": self.delivery_id,
                "event_id": self.event_id,
                "type": self.type,
                "batch_id": self.batch_id,
                "created_at": self.created_at,
            }
        }


def parse_webhook_notice(fields: Fields) -> WebhookNotice:
    fields.only({"webhook"})
    notice = fields.object("webhook")
    notice.only(NOTICE_FIELDS)
    kind = _required_text(notice, "type", 64)
    created_at = notice.integer("created_at", 0, MAX_CREATED_AT, required=True)
    assert created_at is not None  # required: present, or InvalidInput was raised
    if kind not in WEBHOOK_TYPES:
        raise InvalidInput(
            f"{quoted(notice.name('type'))} must be one of {', '.join(sorted(WEBHOOK_TYPES))},"
            f" got {preview(kind)}"
        )
    return WebhookNotice(
        batch_id=validate_batch_id(notice.required("batch_id"), notice.name("batch_id")),
        delivery_id=_required_text(notice, "delivery_id", MAX_WEBHOOK_ID),
        event_id=_required_text(notice, "event_id", MAX_WEBHOOK_ID),
        type=kind,
        created_at=created_at,
    )


def _required_text(fields: Fields, key: str, most: int) -> str:
    value = fields.text(key, most, required=True, empty=False)
    assert value is not None  # required: present, or InvalidInput was raised
    return value


class NoticeStep(Enum):
    UNKNOWN = "unknown"  # no record: not a batch this service cancels; nothing to do
    KNOWN = "known"  # terminal already, or this event was handled: no second GET or write
    REFRESH = "refresh"  # read the batch and store it (the protocol announces a transition)


def classify_notice(record: BatchRecord | None, notice: WebhookNotice) -> NoticeStep:
    """What a notice does, from the record as read (consistently) before any API call. A
    replay (the same delivery, or the same event re-sent) finds its event ID recorded, or the
    terminal status its first handling stored: the record is the dedup, no store of its own."""
    if record is None or (record.status is None and record.updated_at is None):
        # No record, or only the note of a `cancel_at` schedule (no cancel sent yet, nothing
        # stored): the schedule still stands, and when it fires it announces with its reason.
        return NoticeStep.UNKNOWN
    if is_terminal(record.status) or notice.event_id in record.webhook_events:
        return NoticeStep.KNOWN
    return NoticeStep.REFRESH
