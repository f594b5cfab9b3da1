"""The key never reaches logs, records, events, dead letters, answers or exception text."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from infra.openai_emulator import Fault, OpenAIEmulator
from infra.servers import BackgroundHTTPServer
from tests.support import API_KEY, SECRETS, Stack, context, sqs_event


class _EchoingGateway(BaseHTTPRequestHandler):
    """A misbehaving gateway that quotes the request's Authorization header in its error."""

    def do_POST(self) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": f"bad request with {self.headers.get('Authorization')}",
                    "type": "x",
                }
            }
        ).encode()
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echoing_gateway() -> Iterator[str]:
    server = BackgroundHTTPServer(("127.0.0.1", 0), _EchoingGateway).start("echoing-gateway")
    yield f"http://127.0.0.1:{server.port}/v1"
    server.stop()


def test_key_appears_nowhere_across_every_outcome(
    stack: Stack,
    emulator: OpenAIEmulator,
    echoing_gateway: str,
    capfd: pytest.CaptureFixture[str],
    function_logs: io.StringIO,
) -> None:
    # GIVEN batches that end every way the contract knows
    cancelling = emulator.seed(status="in_progress")
    finished = emulator.seed(status="completed")
    flaky = emulator.seed(status="in_progress")
    emulator.inject(Fault("status", status=500, path_regex=flaky["id"], times=None))
    app = stack.app(emulator.base_url)
    answers = [
        app.handle(
            sqs_event(
                json.dumps({"batch_ids": [cancelling["id"], finished["id"]], "reason": "r"}),
                "batch_missing",
                flaky["id"],
                "../not-an-id",
                "{broken json",
            ),
            context(),
        )
    ]
    emulator.set_api_keys({"sk-another"})  # 401s from here on
    answers.append(app.handle(sqs_event(emulator.seed(status="in_progress")["id"]), context()))
    echo_app = stack.app(echoing_gateway)
    answers.append(echo_app.handle(sqs_event("batch_echo"), context()))

    # THEN the key was really used, and there was plenty to log...
    assert (
        "key rejected" in function_logs.getvalue()
        or "rejected the credentials" in function_logs.getvalue()
    )
    assert any(API_KEY in r.headers.get("authorization", "") for r in emulator.requests)
    # ...and shows up in none of what the function produced
    produced = {
        "logs": function_logs.getvalue() + capfd.readouterr().out,
        "records": json.dumps(stack.items(), default=str),
        "events": json.dumps(stack.events(), default=str),
        "dead letters": json.dumps(stack.dead_letters(), default=str),
        "answers": json.dumps(answers),
    }
    assert "batch_echo" in produced["records"]  # the echoing gateway's error was recorded
    for where, text in produced.items():
        for secret in SECRETS:
            assert secret not in text, f"the API key leaked into {where}"
