"""`WebhookSender`: signed webhook deliveries from background threads, retried with backoff.

`state_changed` (the store's terminal listener, called under the store's lock) only queues:
worker threads send, so no API request ever waits on a webhook endpoint. Every attempt of a
delivery carries the same `webhook-id` and body, and a fresh timestamp and signature (as
Standard Webhooks senders re-sign each attempt). The secret is kept as its key, and reported
only as `secret_set`."""

from __future__ import annotations

import heapq
import http.client
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from infra.openai_emulator.webhook_events import (
    EVENT_TYPES,
    event_body,
    new_webhook_id,
    secret_key,
    signed_headers,
)
from infra.openai_emulator.webhook_faults import WebhookFaultSet
from infra.openai_emulator.webhook_log import Attempt, Delivery
from infra.openai_emulator.webhook_settings import WebhookSettings

logger = logging.getLogger("infra.openai_emulator")

USER_AGENT = "openai-emulator-webhooks/1.0"
FINAL_STATES = frozenset({"delivered", "failed", "dropped"})


class WebhookSender:
    def __init__(
        self,
        settings: WebhookSettings | None = None,
        secret: str | None = None,
        *,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cond = threading.Condition()
        self._settings = settings or WebhookSettings()
        self._key: bytes | None = None if secret is None else secret_key(secret)
        self._check(self._settings, self._key)
        self._clock = clock
        self.faults = WebhookFaultSet()
        self._log: list[Delivery] = []
        # (due on the monotonic clock, sequence, delivery); `_due_seq` marks the live entry of
        # each delivery, so a released hold or a retry leaves older entries stale.
        self._queue: list[tuple[float, int, Delivery]] = []
        self._due_seq: dict[int, int] = {}
        self._seq = itertools.count()
        self._held: list[Delivery] = []
        self._generation = 0
        self._wrong_key = secrets.token_bytes(32)
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, daemon=True, name=f"webhook-sender-{n}")
            for n in range(workers)
        ]

    # -- configuration --------------------------------------------------------------------

    @property
    def settings(self) -> WebhookSettings:
        return self._settings

    def configure(self, changes: dict[str, Any]) -> None:
        """Change settings and/or the secret (`secret`: a `whsec_...` string)."""
        changes = dict(changes)
        key = self._key
        if "secret" in changes:
            secret = changes.pop("secret")
            if secret is not None and not isinstance(secret, str):
                raise TypeError("'secret' must be a string")
            key = None if secret is None else secret_key(secret)
        settings = self._settings.replace(changes)
        self._check(settings, key)
        with self._cond:
            self._settings, self._key = settings, key

    @staticmethod
    def _check(settings: WebhookSettings, key: bytes | None) -> None:
        if settings.url is not None and key is None:
            raise ValueError("a webhook url needs a secret ('whsec_...') to sign with")

    def config(self) -> dict[str, Any]:
        return {**self._settings.to_json(), "secret_set": self._key is not None}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=self._settings.timeout_seconds + 1)

    # -- the log --------------------------------------------------------------------------

    def deliveries(self, batch_id: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [d.to_json() for d in self._log if batch_id in (None, d.batch_id)]

    def clear(self) -> None:
        """Forget the log and anything queued (faults stay: see `faults.clear`)."""
        with self._cond:
            self._generation += 1
            self._log.clear()
            self._queue.clear()
            self._due_seq.clear()
            self._held.clear()

    def wait_idle(self, timeout: float) -> bool:
        """True once every delivery is delivered, failed or dropped (within `timeout`)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: all(d.state in FINAL_STATES for d in self._log), timeout
            )

    # -- queueing (any thread; never blocks on I/O) -----------------------------------------

    def state_changed(self, batch_id: str, status: str, at: float) -> None:
        event_type = EVENT_TYPES.get(status)
        with self._cond:
            url = self._settings.url
        if event_type is None or url is None:
            return
        fault = self.faults.match(event_type, batch_id)
        event_id, body = event_body(event_type, batch_id, int(at))
        delivery = Delivery(
            new_webhook_id(), event_id, event_type, batch_id, body, at, self._clock(), url
        )
        delivery.fault = None if fault is None else fault.kind
        now = time.monotonic()
        with self._cond:
            delivery.generation = self._generation
            self._log.append(delivery)
            if fault is None:
                self._schedule(delivery, now)
            elif fault.kind == "never_sent":
                delivery.state = "dropped"
            elif fault.kind == "delay":
                self._schedule(delivery, now + fault.delay_ms / 1000)
            elif fault.kind == "out_of_order":
                delivery.state = "held"
                self._held.append(delivery)
                self._schedule(delivery, now + self._settings.hold_seconds)
            elif fault.kind == "duplicate":
                copy = Delivery(**{**vars(delivery), "attempts": [], "copy_of_original": True})
                self._log.append(copy)
                self._schedule(delivery, now)
                self._schedule(copy, now + fault.delay_ms / 1000)
            else:  # wrong_signature: sent as usual, signed with another key
                self._schedule(delivery, now)
            self._cond.notify_all()

    def _schedule(self, delivery: Delivery, due: float) -> None:
        seq = next(self._seq)
        self._due_seq[id(delivery)] = seq
        heapq.heappush(self._queue, (due, seq, delivery))
        self._cond.notify()

    # -- sending (worker threads) -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                delivery = self._next_due()
                if delivery is None:
                    return
                settings, key = self._settings, self._key
                if delivery.fault == "wrong_signature":
                    key = self._wrong_key
                attempt = Attempt(len(delivery.attempts) + 1, self._clock())
                delivery.attempts.append(attempt)
            status: int | None
            error: str | None
            if key is None:  # the secret was removed after this was queued
                status, error = None, "no secret configured"
            else:
                headers = signed_headers(
                    key, delivery.webhook_id, int(self._clock()), delivery.body
                )
                status, error = post(delivery.url, delivery.body, headers, settings.timeout_seconds)
            with self._cond:
                self._finish(delivery, attempt, status, error, settings)

    def _next_due(self) -> Delivery | None:
        while not self._stopping:
            if not self._queue:
                self._cond.wait()
                continue
            due, seq, delivery = self._queue[0]
            if self._due_seq.get(id(delivery)) != seq:
                heapq.heappop(self._queue)  # superseded by a later schedule
                continue
            wait = due - time.monotonic()
            if wait > 0:
                self._cond.wait(wait)
                continue
            heapq.heappop(self._queue)
            del self._due_seq[id(delivery)]
            if delivery in self._held:  # identity: Delivery compares by identity
                self._held.remove(delivery)  # held past hold_seconds: sent anyway
            delivery.state = "pending"
            return delivery
        return None

    def _finish(
        self,
        delivery: Delivery,
        attempt: Attempt,
        status: int | None,
        error: str | None,
        settings: WebhookSettings,
    ) -> None:
        attempt.ended_at, attempt.status, attempt.error = self._clock(), status, error
        if delivery.generation != self._generation:
            return  # the log was cleared while this attempt was out: forget it
        if status is not None and 200 <= status < 300:
            delivery.state, delivery.delivered_at = "delivered", attempt.ended_at
        elif attempt.number >= settings.max_attempts:
            delivery.state = "failed"
        else:
            self._schedule(delivery, time.monotonic() + settings.backoff(attempt.number))
        if attempt.number == 1 and self._held:
            # The next delivery has gone out: the held ones follow it now.
            for held in self._held:
                self._schedule(held, time.monotonic())
            self._held.clear()
        self._cond.notify_all()


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int | None, str | None]:
    """One POST: (status, None) when answered, (None, why) when not."""
    parts = urlsplit(url)
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body, {**headers, "user-agent": USER_AGENT})
        response = connection.getresponse()
        response.read()
    except TimeoutError:
        return None, "timeout"
    except ConnectionRefusedError:
        return None, "connection refused"
    except (OSError, http.client.HTTPException) as exc:
        return None, f"connection error: {type(exc).__name__}"
    else:
        return response.status, None
    finally:
        connection.close()
