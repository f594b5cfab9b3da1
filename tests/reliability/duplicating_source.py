"""SQS delivering some messages twice, as it does: a handled message is sometimes not deleted.

The event source deletes what the function handled; this SQS client wrapper lets some of those
deletes silently not happen. The message then comes back after the visibility timeout with the
same MessageId and body and a higher ApproximateReceiveCount: a true redelivery, not a copy.
"""

from __future__ import annotations

import random
import threading
from typing import Any


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
