"""Lambda's SQS event source mapping, emulated: receive a batch, invoke, delete what succeeded.

As on AWS: messages the handler reports in `batchItemFailures` (or all of them, if it raises)
stay on the queue and come back after the visibility timeout; the queue's redrive policy moves
a message to the DLQ after maxReceiveCount receives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.local_stack.lambda_context import LocalLambdaContext

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class PollResult:
    received: int = 0
    failed: int = 0
    handler_errors: int = 0


class SqsEventSource:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        batching_window_seconds: float = 0.0,
        function_timeout_seconds: float = 60.0,
        region: str = "us-east-1",
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._handler = handler
        self._batch_size = batch_size
        self._window = batching_window_seconds
        self._timeout = function_timeout_seconds
        self._region = region
        self._arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def poll_once(self, wait_seconds: int = 0) -> PollResult:
        messages = self._receive(wait_seconds)
        if not messages:
            return PollResult()
        event = {"Records": [self._record(message) for message in messages]}
        context = LocalLambdaContext(timeout_seconds=self._timeout)
        try:
            answer = self._handler(event, context)
            failed_ids = {
                item["itemIdentifier"] for item in (answer or {}).get("batchItemFailures", [])
            }
            handler_errors = 0
        except Exception:
            failed_ids = {message["MessageId"] for message in messages}
            handler_errors = 1
        done = [m for m in messages if m["MessageId"] not in failed_ids]
        for start in range(0, len(done), 10):
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )
        return PollResult(len(messages), len(messages) - len(done), handler_errors)

    def _receive(self, wait_seconds: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        window_ends = time.monotonic() + self._window
        while len(messages) < self._batch_size:
            answer = self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=min(10, self._batch_size - len(messages)),
                WaitTimeSeconds=wait_seconds if not messages else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            batch = answer.get("Messages", [])
            messages.extend(batch)
            if not batch and time.monotonic() >= window_ends:
                break
            if not batch:
                time.sleep(0.05)
        return messages

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "dataType": value.get("DataType"),
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._arn,
            "awsRegion": self._region,
        }
