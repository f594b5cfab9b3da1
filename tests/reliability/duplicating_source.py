"""SQS delivering some messages twice, as a standard queue does, one after the other or at once.

- One after the other: the event source deletes what the function handled, and `SkippingDeletes`
  (an SQS client wrapper) lets some of those deletes silently not happen. The message then comes
  back after the visibility timeout with the same MessageId and body and a higher
  ApproximateReceiveCount: a true redelivery, not a copy.
- At once: `ConcurrentCopies` makes some messages visible again (ChangeMessageVisibility to 0)
  as their invocation starts, so another consumer of the queue receives the same message while
  the first invocation still handles it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


class SkippingDeletes:
    """Wraps a boto3 SQS client; every other call passes through unchanged."""

    def __init__(self, sqs: Any, probability: float, seed: int | None) -> None:
        self._sqs = sqs
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.enabled = probability > 0
        self.probability = probability
        self.skipped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def _skip(self) -> bool:
        with self._lock:
            if self.enabled and self._rng.random() < self.probability:
                self.skipped += 1
                return True
            return False

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        entries = [entry for entry in kwargs["Entries"] if not self._skip()]
        if not entries:
            return {"Successful": [], "Failed": []}
        return dict(self._sqs.delete_message_batch(**{**kwargs, "Entries": entries}))

    def delete_message(self, **kwargs: Any) -> dict[str, Any]:
        if self._skip():
            return {}
        return dict(self._sqs.delete_message(**kwargs))


class ConcurrentCopies:
    """Makes some just-received messages of an invocation visible again right away."""

    def __init__(self, sqs: Any, queue_url: str, probability: float, seed: int | None) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._rng = random.Random(seed)
        self.enabled = probability > 0
        self.probability = probability
        self.released = 0

    def release_some(self, records: Sequence[dict[str, Any]]) -> None:
        """`records`: the invocation's SQS event records (their receipt handles)."""
        if not self.enabled:
            return
        chosen = [r for r in records if self._rng.random() < self.probability]
        for start in range(0, len(chosen), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": 0}
                for i, r in enumerate(chosen[start : start + 10])
            ]
            try:
                answer = self._sqs.change_message_visibility_batch(
                    QueueUrl=self._url, Entries=entries
                )
            except Exception:
                # Not a fault of the function's: the copies are simply not made this time.
                log.exception("making messages visible again failed")
                continue
            self.released += len(answer.get("Successful", []))
