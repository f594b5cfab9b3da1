"""The emulated Lambda function URL: real HTTP requests become payload-2.0 events for a
recording handler, and its answers become HTTP responses."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local_stack.function_url import FunctionUrlServer


class Recorder:
    """A handler that records each event and context, and answers what it is told to."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.answer: Any = {"statusCode": 200, "body": "ok"}

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def handler() -> Recorder:
    return Recorder()


@pytest.fixture
def url(handler: Recorder) -> Iterator[FunctionUrlServer]:
    with FunctionUrlServer(handler, function_name="webhook-local", timeout_seconds=5) as server:
        yield server


def request(
    server: FunctionUrlServer,
    method: str,
    target: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.putrequest(method, target, skip_accept_encoding=True)
    for name, value in headers or []:
        connection.putheader(name, value)
    if body or method == "POST":
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body or None)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_a_post_becomes_the_payload_2_event(url: FunctionUrlServer, handler: Recorder) -> None:
    body = b'{"object":"event"}'
    request(
        url,
        "POST",
        "/hooks/openai?a=1&b=2&a=3",
        body,
        [
            ("Content-Type", "application/json"),
            ("User-Agent", "OpenAI/1.0"),
            ("Webhook-Id", "msg_1"),
            ("X-Dup", "one"),
            ("X-Dup", "two"),
            ("Cookie", "a=1; b=2"),
        ],
    )

    (event,) = handler.events
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/hooks/openai"
    assert event["rawQueryString"] == "a=1&b=2&a=3"
    assert event["queryStringParameters"] == {"a": "1,3", "b": "2"}
    assert event["cookies"] == ["a=1", "b=2"]
    headers = event["headers"]
    assert all(name == name.lower() for name in headers)
    assert headers["webhook-id"] == "msg_1"
    assert headers["x-dup"] == "one,two"
    assert "cookie" not in headers
    assert headers["content-type"] == "application/json"
    assert event["body"] == body.decode()
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/hooks/openai",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "OpenAI/1.0",
    }
    assert context["stage"] == "$default"
    assert context["routeKey"] == "$default"
    assert context["domainName"] == f"{context['apiId']}.lambda-url.us-east-1.on.aws"
    assert context["accountId"] == "anonymous"
    assert isinstance(context["timeEpoch"], int)
    assert context["time"].endswith(" +0000")
    assert context["requestId"]
    lambda_context = handler.contexts[0]
    assert lambda_context.function_name == "webhook-local"
    assert 0 < lambda_context.get_remaining_time_in_millis() <= 5000


@pytest.mark.parametrize(
    ("content_type", "body", "encoded"),
    [
        ("application/json; charset=utf-8", b'{"a": 1}', False),
        ("text/plain", "h\u00e9".encode(), False),
        ("application/cloudevents+json", b"{}", False),
        ("application/octet-stream", b"abc", True),
        (None, b"abc", True),
        ("application/json", b"\xff\xfe not utf-8", True),
    ],
)
def test_the_body_is_base64_unless_it_is_utf8_text(
    url: FunctionUrlServer,
    handler: Recorder,
    content_type: str | None,
    body: bytes,
    encoded: bool,
) -> None:
    headers = [] if content_type is None else [("Content-Type", content_type)]
    request(url, "POST", "/", body, headers)

    (event,) = handler.events
    assert event["isBase64Encoded"] is encoded
    sent = base64.b64decode(event["body"]) if encoded else event["body"].encode()
    assert sent == body


def test_a_request_without_a_body_has_no_body_key(
    url: FunctionUrlServer, handler: Recorder
) -> None:
    request(url, "GET", "/")

    (event,) = handler.events
    assert "body" not in event
    assert "queryStringParameters" not in event
    assert "cookies" not in event
    assert event["rawQueryString"] == ""
    assert event["requestContext"]["http"]["method"] == "GET"


def test_a_structured_answer_becomes_the_response(
    url: FunctionUrlServer, handler: Recorder
) -> None:
    handler.answer = {
        "statusCode": 401,
        "headers": {"Content-Type": "text/plain", "X-Reason": "none"},
        "cookies": ["a=1", "b=2"],
        "body": "no",
    }
    response = request(url, "POST", "/", b"x", [("Content-Type", "text/plain")])

    assert response.status == 401
    assert response.getheader("content-type") == "text/plain"
    assert response.getheader("x-reason") == "none"
    assert response.headers.get_all("set-cookie") == ["a=1", "b=2"]


def test_a_base64_answer_is_decoded(url: FunctionUrlServer, handler: Recorder) -> None:
    handler.answer = {
        "statusCode": 200,
        "body": base64.b64encode(b"\x00\x01").decode(),
        "isBase64Encoded": True,
        "headers": {"content-type": "application/octet-stream"},
    }
    connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=5)
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"\x00\x01"
    connection.close()


@pytest.mark.parametrize(
    ("answer", "body"),
    [("hello", b"hello"), ({"message": "hi"}, b'{"message": "hi"}'), ([1, 2], b"[1, 2]")],
)
def test_an_answer_without_status_code_is_a_200_json_body(
    url: FunctionUrlServer, handler: Recorder, answer: Any, body: bytes
) -> None:
    handler.answer = answer
    connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=5)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert (response.status, response.getheader("content-type")) == (200, "application/json")
    assert response.read() == body
    connection.close()


@pytest.mark.parametrize(
    "answer", [RuntimeError("boom"), {"statusCode": "200"}, {"statusCode": 200, "body": 5}]
)
def test_a_failing_handler_or_malformed_answer_is_a_502(
    url: FunctionUrlServer, handler: Recorder, answer: Any
) -> None:
    handler.answer = answer
    assert request(url, "POST", "/", b"{}", [("Content-Type", "application/json")]).status == 502
    assert url.errors == 1


def test_a_request_over_6_mb_never_reaches_the_handler(
    url: FunctionUrlServer, handler: Recorder
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=5)
    connection.putrequest("POST", "/")
    connection.putheader("Content-Length", str(6 * 1024 * 1024 + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["Message"].startswith("Request must be smaller")
    assert handler.events == []
    connection.close()
