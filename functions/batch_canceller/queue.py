"""Messages this function sends itself: delayed status checks, requeued work, dead letters."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.concurrency import MapFn

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SEND_BATCH_MAX_ENTRIES = 10
MAX_DELAY_SECONDS = 900
MAX_VISIBILITY_SECONDS = 43200


def whole_seconds(seconds: float | None, longest: int) -> int:
    """A delay or visibility timeout SQS takes, from any float: `inf` is the longest, `nan`
    (or None) none; `math.ceil` alone raises on either."""
    if seconds is None or math.isnan(seconds):
        return 0
    return math.ceil(max(0.0, min(seconds, float(longest))))


@dataclass(frozen=True)
class OutgoingMessage:
    body: dict[str, Any]
    delay_seconds: int = 0


def command_messages(
    batch_ids: Sequence[str], reason: str | None, requested_by: str | None, per_message: int
) -> list[OutgoingMessage]:
    """Cancel commands for `batch_ids`, `per_message` IDs each, as the queue's consumers read them."""
    messages = []
    for start in range(0, len(batch_ids), per_message):
        body: dict[str, Any] = {"batch_ids": list(batch_ids[start : start + per_message])}
        if reason is not None:
            body["reason"] = reason
        if requested_by is not None:
            body["requested_by"] = requested_by
        messages.append(OutgoingMessage(body))
    return messages


class QueueSender:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send_many(self, messages: Sequence[OutgoingMessage], map_fn: MapFn = map) -> list[bool]:
        """SendMessageBatch ten at a time (concurrently with an executor's `map_fn`); per
        message, whether SQS accepted it."""
        chunks = [
            messages[start : start + SEND_BATCH_MAX_ENTRIES]
            for start in range(0, len(messages), SEND_BATCH_MAX_ENTRIES)
        ]
        return [ok for results in map_fn(self._send_chunk, chunks) for ok in results]

    def postpone(self, handles: Sequence[tuple[str, float]]) -> int:
        """Make messages that failed come back after their seconds, not the visibility timeout:
        ten to a ChangeMessageVisibilityBatch call (one call per message took a slow SQS past
        the deadline with receipts still hidden). How many SQS took."""
        done = 0
        for start in range(0, len(handles), SEND_BATCH_MAX_ENTRIES):
            chunk = handles[start : start + SEND_BATCH_MAX_ENTRIES]
            answer = self._client.change_message_visibility_batch(
                QueueUrl=self._url,
                Entries=[
                    {
                        "Id": str(index),
                        "ReceiptHandle": handle,
                        "VisibilityTimeout": whole_seconds(wait, MAX_VISIBILITY_SECONDS),
                    }
                    for index, (handle, wait) in enumerate(chunk)
                ],
            )
            done += len(answer.get("Successful", []))
        return done

    def _send_chunk(self, chunk: Sequence[OutgoingMessage]) -> list[bool]:
        entries = [
            {
                "Id": str(index),
                "MessageBody": json.dumps(message.body, separators=(",", ":")),
                "DelaySeconds": max(0, min(MAX_DELAY_SECONDS, message.delay_seconds)),
            }
            for index, message in enumerate(chunk)
        ]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._url, Entries=entries)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError):
            return [False] * len(chunk)
        ok = {entry["Id"] for entry in answer.get("Successful", [])}
        return [str(index) in ok for index in range(len(chunk))]


class DeadLetterSender:
    """Puts a permanently invalid input on the DLQ with the reason as message attributes."""

    def __init__(self, client: SQSClient, queue_url: str | None) -> None:
        self._client = client
        self._url = queue_url

    @property
    def configured(self) -> bool:
        return self._url is not None

    def send(self, body: str, reason: str, source: str, original_id: str | None) -> None:
        if self._url is None:
            raise RuntimeError("DEAD_LETTER_QUEUE_URL is not set")
        attributes: dict[str, Any] = {
            "error_reason": {"DataType": "String", "StringValue": reason[:1024] or "invalid"},
            "error_source": {"DataType": "String", "StringValue": source},
        }
        if original_id:
            attributes["original_message_id"] = {"DataType": "String", "StringValue": original_id}
        # SQS accepts only certain Unicode code points; keep the body faithful where possible.
        self._client.send_message(
            QueueUrl=self._url,
            MessageBody=_sqs_safe(body) or "<empty>",
            MessageAttributes=attributes,
        )


def _sqs_safe(text: str) -> str:
    def allowed(char: str) -> bool:
        code = ord(char)
        return (
            code in (0x9, 0xA, 0xD)
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF
        )

    return "".join(char if allowed(char) else "\ufffd" for char in text)
