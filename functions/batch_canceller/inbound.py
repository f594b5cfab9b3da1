"""Turns each entry point's raw event into messages: a parsed request, or the reason it is invalid."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from batch_canceller.commands import (
    CANCEL_REQUESTED,
    InvalidInput,
    Request,
    parse_message_body,
    parse_payload,
)

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
        parsed = _parse(message_id, "sqs", text, lambda text=text: parse_message_body(text))
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
        return InboundMessage(
            event_id,
            "eventbridge",
            raw,
            error=f"unsupported detail-type {detail_type!r}; expected {CANCEL_REQUESTED!r}",
        )
    parsed = _parse(event_id, "eventbridge", raw, lambda: parse_payload(event.get("detail")))
    return replace(parsed, sent_at=_from_iso(event.get("time")))


def from_direct(event: object, request_id: str) -> InboundMessage:
    raw = _raw_json(event)
    if isinstance(event, str):
        return _parse(request_id, "direct", raw, lambda: parse_message_body(event))
    return _parse(request_id, "direct", raw, lambda: parse_payload(event))


def _parse(message_id: str, source: Source, raw: str, parse: Any) -> InboundMessage:
    try:
        request = parse()
    except InvalidInput as exc:
        return InboundMessage(message_id, source, raw, error=str(exc))
    return InboundMessage(message_id, source, raw, request=request)


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
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _raw_json(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        return repr(value)[:4096]
