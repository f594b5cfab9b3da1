"""What the function talks to in the model-based test, under the model's control: a clock, SQS
(queue, visibility, redelivery, the DLQ), the EventBridge bus (accept, refuse, accept and then
time out; receipts on time, twice, late or never) and the OpenAI API. DynamoDB is the real
thing (moto in server mode); these are fakes because the model must own time and order.

The bus checks the protocol's core rule at the moment of every publication: the publishing
delivery holds a live claim on the event in the record, and the record does not say announced.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError

from batch_canceller.api_errors import TransientApiError
from batch_canceller.json_values import from_item
from batch_canceller.openai_api import ApiResponse

START = 1_800_000_000.0  # the model's epoch: 2027-01-15
SOURCE = "batch-canceller"
QUEUE_URL = "https://sqs.model/cancel"
DLQ_URL = "https://sqs.model/cancel-dlq"
TERMINAL = {"cancelled", "completed", "failed", "expired"}


class ModelClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@dataclass
class ModelContext:
    """A Lambda context whose deadline runs on the model's clock."""

    clock: ModelClock
    started: float
    timeout: float
    aws_request_id: str

    @property
    def deadline(self) -> float:
        return self.started + self.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.clock.now) * 1000))


@dataclass
class Message:
    message_id: str
    body: str
    kind: str  # command, check, receipt, webhook
    visible_at: float
    receives: int = 0
    handle: str = ""
    deleted: bool = False
    publication: int | None = None  # a receipt: the publication it confirms
    sent_at: float = 0.0


@dataclass
class Publication:
    number: int
    key: tuple[str, str]
    delivery: int
    at: float
    lease_end: float  # of the claim the publisher held
    receipt: str  # on_queue, twice, delayed, never


class Faults:
    """The fault the model chose for the one I/O call it lets through next."""

    def __init__(self) -> None:
        self._next = "none"
        self._lock = threading.Lock()

    def set(self, fault: str) -> None:
        with self._lock:
            self._next = fault

    def take(self) -> str:
        with self._lock:
            fault, self._next = self._next, "none"
            return fault


class ModelQueue:
    def __init__(self, clock: ModelClock, visibility_timeout: float) -> None:
        self.clock = clock
        self.visibility_timeout = visibility_timeout
        self.messages: dict[str, Message] = {}
        self.dead_letters: list[str] = []
        self._count = 0
        self._lock = threading.Lock()

    def add(
        self, body: str, kind: str, delay: float = 0.0, publication: int | None = None
    ) -> Message:
        with self._lock:
            self._count += 1
            message = Message(
                f"m{self._count}",
                body,
                kind,
                self.clock.now + delay,
                publication=publication,
                sent_at=self.clock.now,
            )
            self.messages[message.message_id] = message
            return message

    def visible(self) -> list[Message]:
        return [
            m for m in self.messages.values() if not m.deleted and m.visible_at <= self.clock.now
        ]

    def in_flight(self) -> list[Message]:
        return [
            m
            for m in self.messages.values()
            if not m.deleted and m.visible_at > self.clock.now and m.receives
        ]

    def undeleted(self) -> list[Message]:
        return [m for m in self.messages.values() if not m.deleted]

    def receive(self, message: Message) -> dict[str, Any]:
        """The SQS record Lambda would hand over; the message hides for the visibility timeout."""
        message.receives += 1
        message.handle = f"{message.message_id}#{message.receives}"
        message.visible_at = self.clock.now + self.visibility_timeout
        return {
            "messageId": message.message_id,
            "receiptHandle": message.handle,
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.receives),
                "SentTimestamp": str(int(message.sent_at * 1000)),
            },
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:cancel",
            "awsRegion": "us-east-1",
        }

    # -- the function's SQS client ------------------------------------------------------

    def send_message_batch(self, fault: str, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        if fault in ("error", "refuse"):
            return {
                "Successful": [],
                "Failed": [{"Id": e["Id"], "Code": "InternalError"} for e in Entries],
            }
        for entry in Entries:
            body = entry["MessageBody"]
            kind = "check" if '"check"' in body[:12] else "command"
            kind = "webhook" if '"webhook"' in body[:12] else kind
            self.add(body, kind, float(entry.get("DelaySeconds", 0)))
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def change_message_visibility(
        self, fault: str, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int
    ) -> Any:
        message = self.messages.get(ReceiptHandle.split("#", maxsplit=1)[0])
        if fault != "none" or message is None or message.handle != ReceiptHandle:
            raise _client_error("ReceiptHandleIsInvalid", 400)
        message.visible_at = self.clock.now + VisibilityTimeout
        return {}

    def change_message_visibility_batch(
        self, fault: str, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> Any:
        if fault != "none":
            raise _client_error("InternalError", 500)
        done, failed = [], []
        for entry in Entries:
            try:
                self.change_message_visibility(
                    "none", QueueUrl, entry["ReceiptHandle"], entry["VisibilityTimeout"]
                )
                done.append({"Id": entry["Id"]})
            except ClientError:
                failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid"})
        return {"Successful": done, "Failed": failed}

    def send_message(self, fault: str, QueueUrl: str, MessageBody: str, **_: Any) -> Any:
        if QueueUrl == DLQ_URL:
            self.dead_letters.append(MessageBody)
        return {"MessageId": "dlq"}


class ModelBus:
    def __init__(
        self,
        clock: ModelClock,
        queue: ModelQueue,
        read_item: Callable[[str], dict[str, Any] | None],
        delayed_receipt_seconds: float,
    ) -> None:
        self.clock = clock
        self.queue = queue
        self.read_item = read_item
        self.delayed_receipt_seconds = delayed_receipt_seconds
        self.publications: list[Publication] = []
        self.violations: list[str] = []

    def put_events(
        self, fault: str, delivery: int, nonce: str, Entries: list[dict[str, Any]]
    ) -> Any:
        if fault == "timeout":  # never reached the bus, but the caller cannot know
            raise ReadTimeoutError(endpoint_url="https://events.model")
        if fault == "refuse":
            return {
                "FailedEntryCount": len(Entries),
                "Entries": [{"ErrorCode": "ThrottlingException"} for _ in Entries],
            }
        receipt = {
            "receipt_never": "never",
            "receipt_twice": "twice",
            "receipt_delayed": "delayed",
        }.get(fault, "on_queue")
        for entry in Entries:
            self._publish(entry, delivery, nonce, receipt)
        if fault == "accept_then_timeout":
            raise ReadTimeoutError(endpoint_url="https://events.model")
        return {
            "FailedEntryCount": 0,
            "Entries": [{"EventId": f"e{len(self.publications)}"} for _ in Entries],
        }

    def _publish(self, entry: dict[str, Any], delivery: int, nonce: str, receipt: str) -> None:
        detail = json.loads(entry["Detail"])
        key = (str(detail["batch_id"]), str(entry["DetailType"]))
        item = self.read_item(key[0]) or {}
        claim = item.get("claim " + key[1]) or {}
        token, expires = str(claim.get("token", "")), float(claim.get("expires", 0))
        if key[1] in item.get("announced_events", set()):
            self.violations.append(f"{key} published by delivery {delivery} after it was announced")
        if not token.endswith("/" + nonce) or expires <= self.clock.now:
            self.violations.append(
                f"{key} published by delivery {delivery} without a live claim of its own ({token!r}, expires {expires - self.clock.now:+.0f} s)"
            )
        earlier = [p for p in self.publications if p.key == key]
        if any(self.clock.now < p.lease_end for p in earlier):
            self.violations.append(
                f"{key} published again while an earlier publisher's lease was live"
            )
        publication = Publication(
            len(self.publications) + 1, key, delivery, self.clock.now, expires, receipt
        )
        self.publications.append(publication)
        body = json.dumps(
            {
                "version": "0",
                "id": f"evt-{publication.number}",
                "detail-type": key[1],
                "source": entry["Source"],
                "time": "2027-01-15T00:00:00Z",
                "region": "us-east-1",
                "resources": [],
                "detail": detail,
            }
        )
        copies = {"never": 0, "twice": 2}.get(receipt, 1)
        delay = self.delayed_receipt_seconds if receipt == "delayed" else 0.0
        for _ in range(copies):
            self.queue.add(body, "receipt", delay, publication=publication.number)


@dataclass
class ModelBatch:
    batch_id: str
    status: str
    instant: bool  # a cancel takes effect at once (else the batch stays cancelling a while)
    known: bool = True  # False: the API answers 404
    # Like some compatible gateways: a cancel is answered with the batch as it was before it.
    lagging: bool = False

    def body(self) -> dict[str, Any]:
        return {"id": self.batch_id, "object": "batch", "status": self.status, "created_at": 1}


@dataclass
class ModelApi:
    batches: dict[str, ModelBatch] = field(default_factory=dict)

    def cancel_batch(self, fault: str, batch_id: str, deadline: Any) -> ApiResponse:
        batch = self._batch(fault, batch_id)
        if batch is None:
            return _not_found(batch_id)
        if batch.status in TERMINAL:
            message = f"Cannot cancel a batch with status '{batch.status}'."
            return ApiResponse(
                409, {"error": {"message": message, "type": "invalid_request_error"}}, "req"
            )
        answer = batch.body()
        if batch.status != "cancelling":
            batch.status = "cancelled" if batch.instant else "cancelling"
        return ApiResponse(200, answer if batch.lagging else batch.body(), "req")

    def retrieve_batch(self, fault: str, batch_id: str, deadline: Any) -> ApiResponse:
        batch = self._batch(fault, batch_id)
        return _not_found(batch_id) if batch is None else ApiResponse(200, batch.body(), "req")

    def move_on(self, batch_id: str) -> None:
        """The batch's own life goes on: a cancel completes, or it finishes first."""
        batch = self.batches[batch_id]
        if batch.status == "cancelling":
            batch.status = "cancelled"
        elif batch.status not in TERMINAL:
            batch.status = "completed"

    def _batch(self, fault: str, batch_id: str) -> ModelBatch | None:
        if fault in ("error", "timeout"):
            raise TransientApiError("the API is unavailable (model)")
        batch = self.batches.get(batch_id)
        return batch if batch is not None and batch.known else None


def _not_found(batch_id: str) -> ApiResponse:
    error = {"message": f"No batch found with id '{batch_id}'.", "type": "invalid_request_error"}
    return ApiResponse(404, {"error": error}, "req")


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "op"
    )


def plain_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    return from_item(item) if item else None
