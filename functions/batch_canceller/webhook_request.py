"""The HTTP request in a Lambda payload-2.0 event (function URL, HTTP API): method, the headers
the receiver reads, and the body as the bytes that were sent. Sizes are checked before any
decoding or HMAC work; anything not shaped as Lambda builds it is a malformed request."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batch_canceller.webhook_signature import HEADERS

MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class WebhookRequest:
    headers: Mapping[str, str]  # the signature headers, by lower-case name
    body: bytes


@dataclass(frozen=True)
class RequestProblem:
    status: int
    reason: str


NOT_POST = RequestProblem(405, "method_not_allowed")
TOO_LARGE = RequestProblem(413, "too_large")
MALFORMED = RequestProblem(400, "malformed_request")


def read_request(event: Any) -> WebhookRequest | RequestProblem:
    if not isinstance(event, Mapping):
        return MALFORMED
    if _method(event) != "POST":
        return NOT_POST
    body = _body(event.get("body"), event.get("isBase64Encoded", False))
    if isinstance(body, RequestProblem):
        return body
    headers = _signature_headers(event.get("headers"))
    if headers is None:
        return MALFORMED
    return WebhookRequest(headers, body)


def _method(event: Mapping[str, Any]) -> object:
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    return http.get("method") if isinstance(http, Mapping) else None


def _body(body: object, encoded: object) -> bytes | RequestProblem:
    if body is None:
        return b""  # a POST without a body: Lambda leaves the field out
    if not isinstance(body, str) or not isinstance(encoded, bool):
        return MALFORMED
    if not encoded:
        # A character is 1 to 4 bytes of UTF-8: the length alone rules out most oversized bodies.
        if len(body) > MAX_BODY_BYTES:
            return TOO_LARGE
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no bytes were sent as that
            return MALFORMED
        return TOO_LARGE if len(raw) > MAX_BODY_BYTES else raw
    # 4 characters of base64 carry 3 bytes: decode only what can fit.
    if len(body) > (MAX_BODY_BYTES + 2) // 3 * 4:
        return TOO_LARGE
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        return MALFORMED
    return TOO_LARGE if len(raw) > MAX_BODY_BYTES else raw


def _signature_headers(headers: object) -> dict[str, str] | None:
    """The three headers by lower-case name; None if the headers are not a map of strings
    where they matter, or one name is given twice (in two cases) with different values."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        return None
    found: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str):
            return None
        lower = name.lower()
        if lower not in HEADERS:
            continue
        if not isinstance(value, str) or found.get(lower, value) != value:
            return None
        found[lower] = value
    return found
