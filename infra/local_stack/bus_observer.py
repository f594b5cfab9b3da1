"""The local stack's observer of the bus, kept drained by a thread of its own: every event the
function published, with the moment it was received (what the demo and the bench time)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Observed:
    event: dict[str, Any]
    received_at: float  # time.time() when the observer queue handed it over

    @property
    def batch_id(self) -> str | None:
        value = self.event.get("detail", {}).get("batch_id")
        return value if isinstance(value, str) else None

    @property
    def detail_type(self) -> str:
        return str(self.event.get("detail-type", ""))


class BusObserver:
    """Long-polls the observer queue (`LocalStack.observer_queue_url`) so that an event is
    stamped within milliseconds of reaching it, not at the reader's next look."""

    def __init__(self, sqs: Any, queue_url: str, wait_seconds: int = 1) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._wait = wait_seconds
        self._seen: list[Observed] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bus-observer")

    def start(self) -> BusObserver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._wait + 5)

    def __enter__(self) -> BusObserver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def observed(self) -> list[Observed]:
        with self._lock:
            return list(self._seen)

    def events(self) -> list[dict[str, Any]]:
        return [seen.event for seen in self.observed()]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=self._wait
                ).get("Messages", [])
            except Exception:  # the stack stopping under us: try again, or end with it
                self._stop.wait(0.2)
                continue
            received_at = time.time()
            if not messages:
                continue
            with self._lock:
                self._seen.extend(Observed(json.loads(m["Body"]), received_at) for m in messages)
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
