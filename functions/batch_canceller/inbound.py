"""Turns each entry point's raw event into messages: a parsed request, or the reason it is invalid."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
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
        messages.append(replace(parsed, receipt_handle=handle if isinstance(handle, str) else None))
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
    return _parse(event_id, "eventbridge", raw, lambda: parse_payload(event.get("detail")))


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


def _raw_json(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        return repr(value)[:4096]
