"""A valid command bigger than one invocation's work phase finishes, whatever the cut-off.

Each sequence was found by an adversarial review of the exactly-once work, and its test failed
before the fix: a message whose IDs were not all started came back whole, started again from
its first ID (the done ones now cost two API calls each) and ended in the DLQ. The part not
started is now sent on as a new message and the original reported done; an item cut off by the
deadline in the middle of its API calls (no time for its retrieve) counts as not started.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.openai_emulator import OpenAIEmulator
from tests.support import API_KEY, Stack, client

IDS = 24


@pytest.fixture
def slow_api() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=0, latency_seconds=0.25) as emu:
        yield emu


def test_a_valid_command_bigger_than_one_work_phase_is_finished(
    stack: Stack, slow_api: OpenAIEmulator
) -> None:
    ids = [slow_api.seed(status="in_progress")["id"] for _ in range(IDS)]
    app = stack.app(slow_api.base_url, MAX_IN_FLIGHT="1")
    client("sqs", stack.endpoint).send_message(
        QueueUrl=stack.queue_url, MessageBody=json.dumps({"batch_ids": ids})
    )
    source = stack.event_source(app, function_timeout_seconds=9.0)
    handled = []
    for _ in range(8):
        result = source.poll_once(wait_seconds=3)
        if result.received:
            handled.append((result.received, result.failed))
        if stack.queue_depth() == 0:
            break
    dead = stack.dead_letters()
    statuses = [slow_api.get(b)["status"] for b in ids]
    print(
        "deliveries (received, failed):",
        handled,
        "| in the DLQ:",
        len(dead),
        "| not cancelled:",
        sum(s != "cancelled" for s in statuses),
    )
    assert dead == [], "a valid command was dead-lettered after making no progress"
    assert all(s == "cancelled" for s in statuses)


DONE_IDS = [f"batch_done_{i}" for i in range(6)]
CANCEL_SECONDS = 1.0


class _Finished(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # cancel
        time.sleep(CANCEL_SECONDS)
        message = "Cannot cancel a batch with status 'completed'."
        self._send(409, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self) -> None:  # retrieve
        batch_id = self.path.rstrip("/").split("/")[-1]
        self._send(200, {"id": batch_id, "object": "batch", "status": "completed"})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def finished_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Finished)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_a_big_command_cut_off_mid_item_still_finishes(stack: Stack, finished_api: str) -> None:
    app = stack.app(finished_api, MAX_IN_FLIGHT="1")
    client("sqs", stack.endpoint).send_message(
        QueueUrl=stack.queue_url, MessageBody=json.dumps({"batch_ids": DONE_IDS})
    )
    source = stack.event_source(app, function_timeout_seconds=9.0)
    rounds = []
    for _ in range(10):
        result = source.poll_once(wait_seconds=3)
        if result.received:
            rounds.append((result.received, result.failed, dict(app.tally.counts)))
            app.tally.counts.clear()
        if stack.queue_depth() == 0:
            break
    dead = stack.dead_letters()
    handled = [b for b in DONE_IDS if (stack.item(b) or {}).get("status") == "completed"]
    for received, failed, tally in rounds:
        print(f"received {received}, failed {failed}:", tally)
    print(f"in the DLQ: {len(dead)} | recorded: {len(handled)} of {len(DONE_IDS)}")
    assert dead == [], "a valid command was dead-lettered"
    assert len(handled) == len(DONE_IDS)
