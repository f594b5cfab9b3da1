"""(d) The API key reaches the record and the outcome event through a *successful* answer.

Round two redacts every string of `last_error` (a gateway may quote the request, and its key,
in any field of an error). A 2xx answer's Batch object is stored verbatim (`save_batch`:
`batch = :batch`) and published verbatim as `detail.batch` of `Batch Cancelled` /
`Batch Finished Before Cancel`: a gateway that quotes the request in an answer it passes on
(here: into `metadata`) puts the key in DynamoDB and on the bus, where every subscriber reads it.

Sequence: the API answers a cancel 200 with a `cancelled` Batch whose metadata holds the
request's Authorization header.

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import SECRETS, Stack, context, sqs_event


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        parts = self.path.split("/")
        batch_id = parts[3] if len(parts) > 3 else "b"
        body = {
            "id": batch_id,
            "object": "batch",
            "status": "cancelled",
            "metadata": {"gateway_request": str(self.headers.get("Authorization"))},
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echoing_gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_a_batch_object_quoting_the_key_is_not_stored_or_published(
    stack: Stack, echoing_gateway: str
) -> None:
    app = stack.app(echoing_gateway)
    app.handle(sqs_event("batch_echo"), context(30))
    record = json.dumps(stack.item("batch_echo"), default=str)
    events = json.dumps(stack.events_of("Batch Cancelled", "batch_echo"))
    in_record = any(s in record for s in SECRETS)
    in_events = any(s in events for s in SECRETS)
    print(f"key in the record: {in_record}; key in the Batch Cancelled event: {in_events}")
    assert not in_record
    assert not in_events
