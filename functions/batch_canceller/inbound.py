"""Turns each entry point's raw event into messages: a parsed request, or the reason it is invalid."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from batch_canceller.commands import (
    CANCEL_REQUESTED,
    InvalidInput,
    PublicationReceipt,
    Request,
    StatusCheck,
    WebhookNotice,
    parse_message_body,
    parse_payload,
)
from batch_canceller.input_fields import parse_time, preview
from batch_canceller.observability import logger

Source = Literal["sqs", "eventbridge", "direct"]


@dataclass(frozen=True)
class InboundMessage:
    message_id: str
    source: Source
    raw: str
    request: Request | None = None
    error: str | None = None
    receipt_handle: str | None = None  # SQS only: lets the function postpone the message
    sent_at: datetime | None = None  # when the sender sent it (SQS SentTimestamp, event time)
    receive_count: int = 1  # SQS ApproximateReceiveCount: this is its n-th delivery


def source_of(event: object) -> Source:
    if isinstance(event, Mapping):
        records = event.get("Records")
        if (
            isinstance(records, list)
            and records
            and all(isinstance(r, Mapping) and r.get("eventSource") == "aws:sqs" for r in records)
        ):
            return "sqs"
        if "detail-type" in event and "detail" in event and "source" in event:
            return "eventbridge"
    return "direct"


def from_sqs(event: Mapping[str, Any]) -> list[InboundMessage]:
    messages = []
    for record in event["Records"]:
        message_id = str(record.get("messageId", ""))
        body = record.get("body")
        text = body if isinstance(body, str) else ""
        parsed = parse_guarded(
            message_id, "sqs", text, partial(parse_message_body, text), "message body"
        )
        handle = record.get("receiptHandle")
        attributes = record.get("attributes")
        sent = attributes.get("SentTimestamp") if isinstance(attributes, Mapping) else None
        messages.append(
            replace(
                parsed,
                receipt_handle=handle if isinstance(handle, str) else None,
                sent_at=_from_epoch_ms(sent),
                receive_count=_count(attributes),
            )
        )
    return messages


def from_eventbridge(event: Mapping[str, Any]) -> InboundMessage:
    event_id = str(event.get("id", "eventbridge"))
    raw = _raw_json(event.get("detail"))
    detail_type = event.get("detail-type")
    if detail_type != CANCEL_REQUESTED:
        shown = preview(detail_type) if isinstance(detail_type, str) else type(detail_type).__name__
        return InboundMessage(
            event_id,
            "eventbridge",
            raw,
            error=f"unsupported detail-type {shown}; expected {CANCEL_REQUESTED!r}",
        )
    parsed = parse_guarded(
        event_id, "eventbridge", raw, lambda: parse_payload(event.get("detail"), "detail"), "detail"
    )
    return replace(_external_only(parsed), sent_at=_from_iso(event.get("time")))


def from_direct(event: object, request_id: str) -> InboundMessage:
    raw = _raw_json(event)
    if isinstance(event, str):
        parsed = parse_guarded(
            request_id, "direct", raw, lambda: parse_message_body(event), "payload"
        )
    else:
        parsed = parse_guarded(request_id, "direct", raw, lambda: parse_payload(event), "payload")
    return _external_only(parsed)


def parse_guarded(
    message_id: str, source: Source, raw: str, parse: Callable[[], Request], what: str
) -> InboundMessage:
    """The one guard at the boundary: parsing ends in a request or a reason, never a crash
    that would fail every other message of the SQS batch. Any error but InvalidInput is a bug
    in the parser; it is logged (with its traceback) and the message dead-lettered."""
    try:
        request = parse()
    except InvalidInput as exc:
        return InboundMessage(message_id, source, raw, error=str(exc))
    except Exception as exc:
        logger.exception(
            "input parser failed", extra={"message_id": message_id, "why": type(exc).__name__}
        )
        return InboundMessage(
            message_id, source, raw, error=f"could not parse the {what}: {type(exc).__name__}"
        )
    return InboundMessage(message_id, source, raw, request=request)


def _external_only(message: InboundMessage) -> InboundMessage:
    """Status checks, webhook notices and receipts are the function's own messages and come
    only through its queue: from the `Batch Cancel Requested` rule or a direct invoke, anyone
    allowed to put an event or invoke could forge one (a receipt marks an event announced)."""
    kinds: dict[type, str] = {
        StatusCheck: "a status check",
        WebhookNotice: "a webhook notice",
        PublicationReceipt: "a receipt",
    }
    kind = kinds.get(type(message.request))
    if kind is None:
        return message
    return replace(
        message,
        request=None,
        error=f"{kind} is an internal message, accepted only from the queue, not from"
        f" {'an EventBridge event' if message.source == 'eventbridge' else 'a direct invoke'}",
    )


def _count(attributes: object) -> int:
    raw = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    try:
        return max(1, int(str(raw)))
    except ValueError:
        return 1


def _from_epoch_ms(value: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _from_iso(value: object) -> datetime | None:
    moment = parse_time(value) if isinstance(value, str) else None
    return moment.astimezone(UTC) if moment is not None and moment.tzinfo is not None else None


def _raw_json(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except Exception:
        try:
            return repr(value)[:4096]
        except Exception:
            return "<not representable>"
