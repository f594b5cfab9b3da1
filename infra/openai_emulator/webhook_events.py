"""What a webhook delivery carries: the event body OpenAI sends for a batch's state change, and
its Standard Webhooks signature. Pure: no I/O, no clock of its own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret

# The batch statuses OpenAI announces, and the event type of each (the spec's `webhooks:`).
EVENT_TYPES: dict[str, str] = {
    "cancelled": "batch.cancelled",
    "completed": "batch.completed",
    "failed": "batch.failed",
    "expired": "batch.expired",
}


def new_secret() -> str:
    """A fresh secret in the form the OpenAI dashboard shows: `whsec_` + base64 of 32 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64 decoding of what follows `whsec_`. ValueError when it is not."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None
    if not key:
        raise ValueError("a webhook secret's key is empty")
    return key


def new_webhook_id() -> str:
    return "msg_" + secrets.token_hex(12)


def event_body(event_type: str, batch_id: str, created_at: int) -> tuple[str, bytes]:
    """A new event's ID and the exact bytes sent (WebhookBatchCancelled and siblings)."""
    event_id = "evt_" + secrets.token_hex(12)
    event: dict[str, Any] = {
        "object": "event",
        "id": event_id,
        "type": event_type,
        "created_at": created_at,
        "data": {"id": batch_id},
    }
    return event_id, json.dumps(event, separators=(",", ":")).encode()


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, as the webhook-signature header."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, webhook_id, timestamp, body),
    }
