"""Sending a chaos run's messages, and the queue's depth that paces it."""

from __future__ import annotations

from typing import Any

from tests.reliability.workload import Message


class Sender:
    """Sends the messages ten at a time, keeping the pipeline short.

    A batch costs about three messages (its command's share and two status checks), and moto's
    SQS costs grow with the queue's depth (every send and receive scans the queue): sending
    everything at once would measure moto, not the function. So commands go out while fewer
    than `max_open` of the batches sent are still unannounced and the queue is not too deep.
    """

    def __init__(
        self, sqs: Any, queue_url: str, messages: list[Message], max_open: int, max_depth: int
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._chunks = [messages[i : i + 10] for i in range(0, len(messages), 10)]
        self._max_open = max_open
        self._max_depth = max_depth
        self._next = 0
        self.total = len(messages)
        self.sent = 0
        self.batches_sent = 0
        self.invalid_ids: dict[str, str] = {}  # SQS MessageId -> body

    @property
    def done(self) -> bool:
        return self._next >= len(self._chunks)

    def send_due(self, announced: int) -> None:
        if self.done:
            return
        depth = sum(queue_depth(self._sqs, self._url))
        while (
            not self.done
            and depth < self._max_depth
            and self.batches_sent - announced < self._max_open
        ):
            chunk = self._chunks[self._next]
            self._send(chunk)
            self._next += 1
            depth += len(chunk)

    def _send(self, chunk: list[Message]) -> None:
        answer = self._sqs.send_message_batch(
            QueueUrl=self._url,
            Entries=[{"Id": str(i), "MessageBody": m.body} for i, m in enumerate(chunk)],
        )
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused a command: {answer['Failed']}")
        self.sent += len(chunk)
        self.batches_sent += sum(m.batches for m in chunk)
        for entry in answer["Successful"]:
            message = chunk[int(entry["Id"])]
            if not message.valid:
                self.invalid_ids[entry["MessageId"]] = message.body


def queue_depth(sqs: Any, queue_url: str) -> tuple[int, int, int]:
    """Visible, in flight (received, or postponed, and not yet deleted), delayed."""
    names = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(names))
    visible, in_flight, delayed = (int(attributes["Attributes"].get(n, 0)) for n in names)
    return visible, in_flight, delayed
