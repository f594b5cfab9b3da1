"""An OpenAI answer that trickles in keeps the invocation running far past its deadline.

`OpenAIBatchClient._attempt` bounds a request with `urllib3.Timeout(connect=min(5, usable),
read=min(30, usable))`. urllib3's read timeout is per socket read (the gap between bytes), not
a bound on the whole answer: a gateway/proxy that sends the status line and then the body a
byte at a time, each byte inside the read timeout, keeps `pool.request` (preload_content)
reading for as long as it likes. Nothing else checks the deadline until it returns, so the
work phase, the announce share and the 5 s reserve are all overrun and Lambda kills the
invocation (every message in the batch then comes back after the visibility timeout,
including the ones that were done).

Sequence: an 8 s invocation (work phase usable 0.7 * 3 = 2.1 s, so read timeout 2.1 s); the API
answers 200 with a 30-byte body sent one byte per second.

Found by an adversarial review of the exactly-once work; the test failed before the fix.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import Stack, context, sqs_event

DRIP_SECONDS = 1.0


class _Drip(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        batch_id = self.path.split("/")[3] if self.path.count("/") >= 3 else "b"
        body = json.dumps({"id": batch_id, "status": "cancelling"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        try:
            for index in range(len(body)):
                self.wfile.write(body[index : index + 1])
                self.wfile.flush()
                if index < 29:
                    time.sleep(DRIP_SECONDS)
        except (OSError, BrokenPipeError, ConnectionResetError):
            pass

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


class _DripHead(_Drip):
    """The status line and headers a byte at a time: no bytes of a body are ever reached."""

    def _answer(self) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"x" * 40
        try:
            for index in range(len(head)):
                self.wfile.write(head[index : index + 1])
                self.wfile.flush()
                time.sleep(DRIP_SECONDS)
        except (OSError, BrokenPipeError, ConnectionResetError):
            pass

    do_GET = _answer
    do_POST = _answer


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture
def dripping_api() -> Iterator[str]:
    yield from _serve(_Drip)


@pytest.fixture
def dripping_head_api() -> Iterator[str]:
    yield from _serve(_DripHead)


def test_a_trickling_api_answer_does_not_overrun_the_invocation(
    stack: Stack, dripping_api: str
) -> None:
    app = stack.app(dripping_api)
    budget = 8.0
    started = time.monotonic()
    app.handle(sqs_event("batch_drip"), context(budget))
    took = time.monotonic() - started
    print(f"invocation of {budget:.0f} s returned after {took:.1f} s")
    assert took < budget, f"ran {took - budget:.1f} s past its deadline (Lambda kills it there)"


def test_an_answer_whose_head_trickles_does_not_overrun_the_invocation(
    stack: Stack, dripping_head_api: str
) -> None:
    """The head is read by http.client before urllib3 hands over the response: each byte comes
    inside the read timeout, so only a bound on the whole answer stops it."""
    app = stack.app(dripping_head_api)
    budget = 8.0
    started = time.monotonic()
    app.handle(sqs_event("batch_drip_head"), context(budget))
    took = time.monotonic() - started
    print(f"invocation of {budget:.0f} s returned after {took:.1f} s")
    assert took < budget, f"ran {took - budget:.1f} s past its deadline (Lambda kills it there)"


def test_a_sweep_summary_does_not_overrun_the_invocation(stack: Stack, moto_url: str) -> None:
    """After listing (which stops with ~1 s of usable time left, 6 s before the deadline, when
    the listing is long; here it is short), `Sweeper.run`'s `put_detail` makes up to SUMMARY_ATTEMPTS (3) PutEvents calls with no deadline at all,
    each bounded only by the events client's connect (3 s) + read (10 s) timeouts. A PutEvents
    that hangs (here: the proxy holds it 11 s) costs 3 x 10 s: the sweep answers ~25 s after
    Lambda would have killed it. (The same missing bound applies to every DynamoDB/SQS call
    after the work phase: `leaves(1.5)` is checked, then a call that may take 13 s x 5 SDK
    attempts is started.)"""
    from infra.fault_proxy import FaultProxy, Rule
    from infra.openai_emulator import OpenAIEmulator
    from tests.support import API_KEY

    with OpenAIEmulator(api_keys={API_KEY}) as emulator, FaultProxy(upstream=moto_url) as proxy:
        emulator.seed(status="in_progress")
        proxy.add_rule(
            Rule(operation="Events.PutEvents", action="delay", delay_seconds=11, times=None)
        )
        app = stack.app(emulator.base_url, aws_endpoint=proxy.url)
        budget = 8.0
        started = time.monotonic()
        answer = app.handle({"sweep": {"dry_run": True}}, context(budget))
        took = time.monotonic() - started
        print(f"sweep of a {budget:.0f} s invocation answered after {took:.1f} s: {answer}")
        assert took < budget, f"ran {took - budget:.1f} s past its deadline"
