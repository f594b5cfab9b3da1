"""What the integration tests share: emulators whose cancels take effect at once or take an
hour, a fault proxy in front of moto, and a fake API for answers the emulator cannot give
(one that lists given batches in the order given)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from infra.fault_proxy import FaultProxy
from infra.openai_emulator import OpenAIEmulator
from infra.servers import BackgroundHTTPServer
from tests.support import API_KEY


@pytest.fixture
def instant_emulator() -> Iterator[OpenAIEmulator]:
    """Cancels take effect at once, so one invocation reaches `cancelled`."""
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=0) as emu:
        yield emu


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of moto (`aws_endpoint=proxy.url`)."""
    with FaultProxy(upstream=moto_url) as running:
        yield running


@pytest.fixture
def slow_emulator() -> Iterator[OpenAIEmulator]:
    """Cancels take an hour: a batch stays `cancelling`, followed by status checks."""
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=3600) as emu:
        yield emu


# What a fake API answers a request (method, path, headers): status, extra headers, JSON body.
Answer = Callable[[str, str, Mapping[str, str]], tuple[int, dict[str, str], Any]]


@contextmanager
def fake_api(answer: Answer) -> Iterator[str]:
    """A stand-in for the OpenAI API or a misbehaving gateway on loopback, answering every
    request as `answer` says; yields its base URL (`.../v1`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            status, headers, body = answer(self.command, self.path, self.headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = BackgroundHTTPServer(("127.0.0.1", 0), Handler).start("fake-api")
    try:
        yield f"http://127.0.0.1:{server.port}/v1"
    finally:
        server.stop()


def batch_id_in(path: str) -> str:
    """The batch ID of `/v1/batches/{id}[/cancel]`."""
    parts = path.split("/")
    return parts[3] if len(parts) > 3 else "batch_unknown"


def listed_as_given(batches: list[dict[str, Any]], page_size: int) -> Answer:
    """A gateway listing `batches` in the order given, `page_size` per page, with `last_id`."""
    ids = [b["id"] for b in batches]

    def answer(method: str, path: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        after = parse_qs(urlsplit(path).query).get("after", [None])[0]
        start = ids.index(after) + 1 if after in ids else 0
        page = batches[start : start + page_size]
        return (
            200,
            {},
            {
                "object": "list",
                "data": page,
                "last_id": page[-1]["id"] if page else None,
                "has_more": start + page_size < len(batches),
            },
        )

    return answer


def aged(number: int, status: str, age_hours: float) -> dict[str, Any]:
    """A batch as the API lists it, created `age_hours` ago, with metadata team=x."""
    return {
        "id": f"batch_{number:04d}",
        "object": "batch",
        "status": status,
        "created_at": int(time.time() - age_hours * 3600),
        "metadata": {"team": "x"},
    }
