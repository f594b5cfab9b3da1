"""(d) The API key reaches the logs through the answer's request ID.

Round two redacted every string of `last_error` (a gateway may quote the request, and its key,
in any field). The answer's `x-request-id` / `apim-request-id` header is taken verbatim
(`OpenAIBatchClient._attempt`) and logged unredacted: as `request_id` in "cancel failed
permanently" / the 401 error log (`WorkRunner._api_error`), and inside the reason
"HTTP 500 (request ...)" that `api_retry` logs on every retry and `TransientApiError` carries
into "OpenAI API unavailable". A gateway that echoes the Authorization header into its request
ID (the same kind of quoting the team already guards against in the body) puts the key in
CloudWatch.

Sequence: the API answers 404 (then, for a second batch, 500) with
`x-request-id: <the request's Authorization header>`.

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import SECRETS, Stack, context, sqs_event


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        status = 500 if "batch_five" in self.path else 404
        body = json.dumps({"error": {"message": "no such batch", "type": "invalid_request_error"}})
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-request-id", "req_" + str(self.headers.get("Authorization")))
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


def test_a_request_id_quoting_the_key_is_not_logged(
    stack: Stack, echoing_gateway: str, function_logs: io.StringIO
) -> None:
    app = stack.app(echoing_gateway)
    app.handle(sqs_event("batch_four", "batch_five"), context(30))
    logs = function_logs.getvalue()
    leaked_lines = [
        json.loads(line).get("message")
        for line in logs.splitlines()
        if any(s in line for s in SECRETS)
    ]
    print("log lines holding the key:", leaked_lines)
    assert not leaked_lines, f"{len(leaked_lines)} log lines hold the API key"
