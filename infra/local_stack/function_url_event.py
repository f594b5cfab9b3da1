"""HTTP request <-> Lambda function URL payloads (format 2.0), as AWS builds and reads them.

Request: header names lower-cased, repeated headers joined with commas, cookies moved from the
`cookie` header to `cookies`, repeated query parameters joined with commas; the body is base64
(`isBase64Encoded: true`) unless its content type is text and it decodes as UTF-8; a request
without a body has no `body` key. An AuthType NONE URL reports `accountId: "anonymous"`.

Response: a dict with `statusCode` is read as the structured answer (`headers`, `cookies`,
`body`, `isBase64Encoded`); anything else is the body of a 200 `application/json` answer
(a string as it is, other values as JSON), as Lambda infers it. Pure: no sockets here."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "application/yaml",
        "application/x-www-form-urlencoded",
        "application/graphql",
    }
)
JSON_TYPE = "application/json"


def new_url_id() -> str:
    """A function URL's ID: 32 lower-case letters and digits, as in `<id>.lambda-url...`."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(32))


@dataclass(frozen=True)
class FunctionUrl:
    """Where the emulated URL lives, as its events report it."""

    url_id: str
    region: str = "us-east-1"
    account_id: str = "anonymous"  # AuthType NONE: no caller account

    @property
    def domain_name(self) -> str:
        return f"{self.url_id}.lambda-url.{self.region}.on.aws"


def is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/")
        or media in TEXT_TYPES
        or media.endswith("+json")
        or media.endswith("+xml")
    )


def request_event(
    url: FunctionUrl,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The payload-2.0 event for one HTTP request (`target`: the request line's path?query)."""
    now = now or datetime.now(UTC)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    joined.setdefault("x-forwarded-for", source_ip)
    joined.setdefault("x-forwarded-proto", "https")
    joined.setdefault(
        "x-amzn-trace-id", f"Root=1-{int(now.timestamp()):08x}-{secrets.token_hex(12)}"
    )
    parts = urlsplit(target)
    path = parts.path or "/"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": parts.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    query = _query_parameters(parts.query)
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": url.account_id,
        "apiId": url.url_id,
        "domainName": url.domain_name,
        "domainPrefix": url.url_id,
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": "$default",
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if body:
        text = _as_text(body, joined.get("content-type"))
        event["body"] = text if text is not None else base64.b64encode(body).decode()
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


def _as_text(body: bytes, content_type: str | None) -> str | None:
    if not is_text(content_type):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _query_parameters(query: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values[name] = f"{values[name]},{value}" if name in values else value
    return values


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_answer(answer: Any) -> HttpAnswer:
    """The HTTP response for what the handler returned. ValueError or TypeError when it is
    malformed (the caller answers 502, as Lambda does)."""
    if not (isinstance(answer, dict) and "statusCode" in answer):
        text = answer if isinstance(answer, str) else json.dumps(answer)
        return HttpAnswer(200, [("content-type", JSON_TYPE)], text.encode())
    status = answer["statusCode"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"statusCode must be an HTTP status, not {status!r}")
    headers = answer.get("headers") or {}
    if not isinstance(headers, dict):
        raise TypeError("headers must be an object")
    pairs = [(str(name).lower(), str(value)) for name, value in headers.items()]
    pairs += [("set-cookie", str(cookie)) for cookie in answer.get("cookies") or []]
    raw = answer.get("body")
    body: bytes
    if raw is None:
        body = b""
    elif not isinstance(raw, str):
        raise TypeError("body must be a string")
    elif answer.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = raw.encode()
    if body and not any(name == "content-type" for name, _ in pairs):
        pairs.append(("content-type", JSON_TYPE))
    return HttpAnswer(status, pairs, body)
