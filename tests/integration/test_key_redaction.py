"""The API key stays out of records and events, even rotated mid-request (found by an adversarial review).

The threat model the project already tests (tests/integration/test_secret_hygiene.py): a
gateway that quotes the request's Authorization header in its error. `WorkRunner._api_error`
redacts only `error.message`, and with `service._redactor`, which replaces *the key the key
source holds at redaction time* (`key_source.get()`), not the key the request was sent with.

(a) The key is rotated while a request is in flight, and the cache (300 s) expires before the
    answer is redacted, so `get()` fetches the new key: the old key, the one the gateway quoted,
    is not replaced. It is stored in `last_error.message` and published in the event.
(b) The gateway quotes the header in `error.code` (or `type`): those two fields are stored and
    published without any redaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from batch_canceller.api_key import SecretsManagerApiKey
from batch_canceller.service import build_application
from infra.servers import BackgroundHTTPServer
from tests.support import API_KEY, ROTATED_API_KEY, Stack, client, context, sqs_event


class _Gateway(BaseHTTPRequestHandler):
    mode = "message"
    on_request: Any = None

    def do_POST(self) -> None:
        if type(self).on_request is not None:
            type(self).on_request()
        quoted = f"bad request with {self.headers.get('Authorization')}"
        error = (
            {"message": quoted, "type": "x"}
            if self.mode == "message"
            else {"message": "bad request", "type": "invalid_request_error", "code": quoted}
        )
        body = json.dumps({"error": error}).encode()
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[type[_Gateway]]:
    handler = type("Gateway", (_Gateway,), {})
    server = BackgroundHTTPServer(("127.0.0.1", 0), handler).start("gateway")
    handler.url = f"http://127.0.0.1:{server.port}/v1"  # type: ignore[attr-defined]
    yield handler
    server.stop()


def leaked(stack: Stack, batch_id: str) -> list[str]:
    places = {
        "record": json.dumps(stack.item(batch_id), default=str),
        "events": json.dumps(stack.events(), default=str),
    }
    return [where for where, text in places.items() if API_KEY in text]


def test_a_key_rotated_during_the_request_is_still_redacted(
    stack: Stack, gateway: type[_Gateway]
) -> None:
    secrets = client("secretsmanager", stack.endpoint)

    def rotate_and_let_the_cache_expire() -> None:
        secrets.put_secret_value(
            SecretId=stack.secret_id, SecretString=json.dumps({"api_key": ROTATED_API_KEY})
        )
        time.sleep(1.2)

    gateway.on_request = staticmethod(rotate_and_let_the_cache_expire)
    key = SecretsManagerApiKey(
        stack.secret_id, lambda: client("secretsmanager", stack.endpoint), max_age_seconds=1
    )
    app = build_application(stack.settings(gateway.url), api_key=key)  # type: ignore[attr-defined]

    app.handle(sqs_event("batch_rotating"), context())

    assert leaked(stack, "batch_rotating") == []


def test_a_key_quoted_in_the_error_code_is_redacted(stack: Stack, gateway: type[_Gateway]) -> None:
    gateway.mode = "code"
    app = stack.app(gateway.url)  # type: ignore[attr-defined]

    app.handle(sqs_event("batch_quoted"), context())

    assert leaked(stack, "batch_quoted") == []
