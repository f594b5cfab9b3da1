"""`OpenAIEmulator`: a stateful OpenAI Batch API on a real local HTTP server."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Self

from infra.openai_emulator import control
from infra.openai_emulator.api import API_STYLES, ApiSurface
from infra.openai_emulator.faults import Fault, FaultSet
from infra.openai_emulator.http_server import EmulatorHTTPServer
from infra.openai_emulator.lifecycle import LifecycleThread
from infra.openai_emulator.rate_limit import TokenBucket, rate_limited
from infra.openai_emulator.store import BatchStore
from infra.openai_emulator.webhook_sender import WebhookSender
from infra.openai_emulator.webhook_settings import WebhookSettings
from infra.openai_emulator.wire import Abort, RecordedRequest, Reply, Request
from infra.servers import ManagedServer

logger = logging.getLogger("infra.openai_emulator")


def _normalise_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    return "/" + stripped if stripped else ""


class OpenAIEmulator(ManagedServer):
    """Batches, faults and a request log behind one lock; latency is slept outside it."""

    def __init__(
        self,
        api_keys: Iterable[str] = ("sk-test",),
        cancel_delay_seconds: float = 2.0,
        port: int = 0,
        path_prefix: str = "/v1",
        clock: Callable[[], float] = time.time,
        api_style: str = "openai",
        *,
        host: str = "127.0.0.1",
        latency_seconds: float = 0.0,
        max_recorded_requests: int = 100_000,
        webhook_settings: WebhookSettings | None = None,
        webhook_secret: str | None = None,
        rate_limit: float | None = None,
        burst: float | None = None,
    ) -> None:
        if api_style not in API_STYLES:
            raise ValueError(f"api_style must be one of {API_STYLES}, not {api_style!r}")
        self.host = host
        self.path_prefix = _normalise_prefix(path_prefix)
        self.api_style = api_style
        # Read once per request without the lock: a float attribute swap is atomic.
        self.latency_seconds = latency_seconds
        self._requested_port = port
        self._lock = threading.Lock()
        self._api_keys = frozenset(api_keys)
        self._store = BatchStore(clock, cancel_delay_seconds, self._lock)
        # Terminal status changes become webhook deliveries (none while no url is set).
        self.webhooks = WebhookSender(webhook_settings, webhook_secret, clock=clock)
        # Each batch's terminal change and its exact time, webhooks or not (the bench's start).
        self._changes: dict[str, tuple[str, float]] = {}
        self._store.on_terminal = self._state_changed
        self._lifecycle = LifecycleThread(self._store, clock)
        self._faults = FaultSet(self._lock)
        self._clock = clock
        # Requests per second shared by every caller; off (None) unless set.
        self.rate_limit = TokenBucket(rate_limit, burst)
        self._surface = ApiSurface(api_style, self.path_prefix)
        self._log: deque[RecordedRequest] = deque(maxlen=max_recorded_requests)
        self._server: EmulatorHTTPServer | None = None
        self._port: int | None = None  # kept after stop() so urls stay printable

    # -- server lifecycle ---------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server = EmulatorHTTPServer((self.host, self._requested_port), self.respond)
        self._port = server.port
        self._server = server.start(f"openai-emulator:{self._port}")
        self.webhooks.start()
        self._lifecycle.start()
        logger.info("OpenAI emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._lifecycle.stop()
            self.webhooks.stop()
            server.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.path_prefix

    # -- state ----------------------------------------------------------------------------

    def seed(
        self,
        batch_id: str | None = None,
        status: str = "in_progress",
        created_at: int | None = None,
        metadata: dict[str, str] | None = None,
        endpoint: str = "/v1/chat/completions",
        model: str | None = None,
        cancel_delay_seconds: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add (or replace) a batch; `extra` fields are stored verbatim."""
        return self._store.seed(
            batch_id,
            status,
            created_at,
            metadata,
            endpoint,
            model,
            cancel_delay_seconds,
            **extra,
        )

    def finish(self, batch_id: str, status: str) -> dict[str, Any]:
        """Move a running batch to a terminal status now (completed, failed, expired or
        cancelled): a state change, so a webhook goes out when they are configured."""
        return self._store.finish(batch_id, status)

    def seed_many(self, n: int, status: str = "in_progress", **kw: Any) -> list[dict[str, Any]]:
        if "batch_id" in kw or "id" in kw:
            raise ValueError("seed_many generates ids; seed batches one by one to choose them")
        return [self._store.seed(status=status, **kw) for _ in range(n)]

    def get(self, batch_id: str) -> dict[str, Any] | None:
        return self._store.get(batch_id)

    def batches(self) -> list[dict[str, Any]]:
        """Every batch, newest first, lifecycle applied."""
        return self._store.all()

    @property
    def cancel_delay_seconds(self) -> float:
        return self._store.cancel_delay_seconds

    @cancel_delay_seconds.setter
    def cancel_delay_seconds(self, value: float) -> None:
        with self._lock:
            self._store.cancel_delay_seconds = value

    @property
    def cancel_lag_seconds(self) -> float | None:
        """None: a cancel answers `cancelling`. A number: it answers the batch unchanged (as
        compatible gateways do) and takes effect that many seconds later."""
        return self._store.cancel_lag_seconds

    @cancel_lag_seconds.setter
    def cancel_lag_seconds(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("cancel_lag_seconds must be >= 0, or None")
        with self._lock:
            self._store.cancel_lag_seconds = value

    @property
    def api_keys(self) -> frozenset[str]:
        return self._api_keys

    def set_api_keys(self, api_keys: Iterable[str]) -> None:
        self._api_keys = frozenset(api_keys)

    def config(self) -> dict[str, Any]:
        return {
            "api_style": self.api_style,
            "path_prefix": self.path_prefix,
            "latency_seconds": self.latency_seconds,
            "cancel_delay_seconds": self.cancel_delay_seconds,
            "cancel_lag_seconds": self.cancel_lag_seconds,
            "api_key_count": len(self._api_keys),  # never the keys themselves
        }

    def state_change(self, batch_id: str) -> tuple[str, float] | None:
        """(status, time) of the batch's change to a terminal status, as it happened (the
        emulator's clock, `time.time()` by default); None while it has not ended here."""
        return self._changes.get(batch_id)

    def _state_changed(self, batch_id: str, status: str, at: float) -> None:
        # Called under the store's lock (the emulator's): a dict write, then the sender queues.
        self._changes[batch_id] = (status, at)
        self.webhooks.state_changed(batch_id, status, at)

    # -- faults ---------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        self._faults.add(fault)

    def inject_chaos(
        self, rate: float = 0.2, seed: int | None = 1, *, read_timeout: float = 1.0
    ) -> None:
        """On `rate` of API requests: 429, 500, 503, a delay past `read_timeout`, a reset or
        a malformed body, picked at random; see `fault_counts` for what was injected."""
        self._faults.add(
            Fault(
                "chaos",
                times=None,
                probability=rate,
                seed=seed,
                delay_seconds=read_timeout + 0.5,
            )
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def fault_counts(self) -> dict[str, int]:
        """How often each fault fired: by status code ("429", "503"...) or by kind."""
        return self._faults.counts()

    # -- request log ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def reset(self) -> None:
        """No batches, no state changes, no faults, no fault counts, empty request log, no
        webhook deliveries or webhook faults (the webhook url and secret stay), no rate-limit
        counts (the limit itself stays as set)."""
        self._store.clear()
        self._changes.clear()
        self._faults.clear(counts=True)
        self.clear_requests()
        self.webhooks.faults.clear(counts=True)
        self.webhooks.clear()
        self.rate_limit.reset_counts()

    # -- request handling (called on server threads) --------------------------------------

    def respond(self, request: Request) -> Reply:
        if control.is_control(request.path):
            return Reply(control.handle(self, request))
        arrived = time.time()
        latency = self.latency_seconds
        verdict = self.rate_limit.take(self._clock(), time.monotonic(), latency)
        if not verdict.allowed:
            # Refused at the edge, as OpenAI's limiter does: at once, without the latency.
            limited = rate_limited(verdict, int(self.rate_limit.burst)).response()
            wait_ms = int(verdict.headers["retry-after-ms"])
            self._record(request, arrived, limited.status, wait_ms)
            return Reply(limited)
        action = self._faults.match(request.method, request.path)
        if action is not None and action.kind in ("drop", "reset"):
            self._record(request, arrived, None)
            abort: Abort = "reset" if action.kind == "reset" else "drop"
            return Reply(None, latency + action.delay_seconds, abort)
        response = action.response() if action is not None else None
        if response is None:
            response = self._surface.handle(request, self._store, self._api_keys)
        delay = latency + (action.delay_seconds if action is not None else 0.0)
        self._record(request, arrived, response.status)
        if verdict.headers:
            headers = {**verdict.headers, **response.headers}
            response = dataclasses.replace(response, headers=headers)
        return Reply(response, delay)

    def _record(
        self, request: Request, at: float, status: int | None, retry_after_ms: int | None = None
    ) -> None:
        entry = RecordedRequest(
            request.method,
            request.path,
            request.query,
            request.headers,
            request.body,
            at,
            status,
            retry_after_ms,
        )
        with self._lock:
            self._log.append(entry)
