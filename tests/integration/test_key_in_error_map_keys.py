"""The API key quoted as a *map key* inside an error's `code`/`type` is stored and published.

`WorkRunner._redacted` redacts every string *value* of `error.type` / `error.code`, however
deeply nested, but rebuilds dicts with `{key: self._redacted(item) ...}`: the keys are copied
verbatim. A gateway that quotes the request's headers keyed by their values (or any map whose
keys hold the key) puts the key into `last_error` on the record and into the `Batch Cancel
Failed` event. (`message` is safe: it is `str()`-ed as a whole, then redacted.)

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import API_KEY, Stack, context, sqs_event


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = json.dumps(
            {
                "error": {
                    "message": "bad request",
                    "type": "invalid_request_error",
                    "code": {key: "rejected by gateway"},
                }
            }
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echoing_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_key_as_a_map_key_in_an_error_is_redacted(stack: Stack, echoing_api: str) -> None:
    app = stack.app(echoing_api)
    app.handle(sqs_event("batch_echo"), context())
    record = json.dumps(stack.item("batch_echo"), default=str)
    events = json.dumps(stack.events_of("Batch Cancel Failed"), default=str)
    leaked_in = [
        where for where, text in (("record", record), ("event", events)) if API_KEY in text
    ]
    print("key found in:", leaked_in)  # (the name only: printing the key would fail the run)
    assert leaked_in == []
