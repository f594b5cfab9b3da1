"""A tiny real HTTP endpoint for webhook tests: records each POST and answers as scripted."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from infra.servers import BackgroundHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        receiver: WebhookReceiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, sleep = receiver.next_answer()
        if sleep:
            time.sleep(sleep)  # past the sender's timeout: it gives up and retries
        receiver.record(
            Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
        )
        try:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the sender timed out and closed


class WebhookReceiver:
    """Answers each POST with the next scripted (status, sleep seconds); then with 200."""

    def __init__(self, *answers: int | tuple[int, float]) -> None:
        self._answers: deque[tuple[int, float]] = deque(
            a if isinstance(a, tuple) else (a, 0.0) for a in answers
        )
        self._received: list[Received] = []
        self._cond = threading.Condition()
        self._server = BackgroundHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.receiver = self  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/hooks/openai"

    def __enter__(self) -> Self:
        self._server.start("webhook-receiver")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def next_answer(self) -> tuple[int, float]:
        with self._cond:
            return self._answers.popleft() if self._answers else (200, 0.0)

    def record(self, received: Received) -> None:
        with self._cond:
            self._received.append(received)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._cond:
            self._cond.wait_for(lambda: len(self._received) >= count, timeout)
            return list(self._received)

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)
