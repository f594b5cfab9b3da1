"""Webhook deliveries as OpenAI sends them, in the payload-2.0 events a function URL builds."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from batch_canceller.webhook_signature import WebhookKey, sign
from tests.support import WEBHOOK_SECRET

EVENT_TYPES = ("batch.cancelled", "batch.completed", "batch.failed", "batch.expired")


def event_body(
    event_type: str = "batch.cancelled", batch_id: str = "batch_abc123", **fields: Any
) -> bytes:
    """An OpenAI webhook body (the spec's WebhookBatchCancelled and its siblings)."""
    document: dict[str, Any] = {
        "object": "event",
        "id": "evt_" + uuid.uuid4().hex,
        "type": event_type,
        "created_at": int(time.time()),
        "data": {"id": batch_id},
    }
    document.update(fields)
    return json.dumps(document).encode()


def signed_headers(
    body: bytes,
    secret: str = WEBHOOK_SECRET,
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    webhook_id = webhook_id or "wh_" + uuid.uuid4().hex
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(WebhookKey.from_secret(secret), webhook_id, timestamp, body),
    }


def url_event(
    body: bytes | str | None,
    headers: dict[str, Any],
    *,
    method: str = "POST",
    base64_body: bool = False,
) -> dict[str, Any]:
    """The payload-2.0 event a Lambda function URL delivers (body as text, or base64)."""
    all_headers = {
        "content-type": "application/json",
        "host": "abcdefghij.lambda-url.us-east-1.on.aws",
        "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
        **headers,
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghij",
            "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghij",
            "http": {
                "method": method,
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": all_headers["user-agent"],
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:12:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": base64_body,
    }
    if isinstance(body, bytes) and not base64_body:
        try:
            body.decode()
        except UnicodeDecodeError:  # Lambda passes a body that is not text as base64
            base64_body = event["isBase64Encoded"] = True
    if body is not None:
        if base64_body:
            raw = body.encode() if isinstance(body, str) else body
            event["body"] = base64.b64encode(raw).decode()
        else:
            event["body"] = body.decode() if isinstance(body, bytes) else body
    return event


def delivery(body: bytes | None = None) -> dict[str, Any]:
    """A signed delivery of `body` (a batch.cancelled event by default)."""
    body = event_body() if body is None else body
    return url_event(body, signed_headers(body))
