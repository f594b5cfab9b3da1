"""A stand-in webhook receiver for the local-stack tests (the real one is another slice's):
it verifies each event's signature with the `openai` SDK, using the secret its environment
names, and records what it saw."""

from __future__ import annotations

import base64
import os
import threading
from typing import Any

import boto3
from openai import InvalidWebhookSignatureError, OpenAI

RECEIVED: list[tuple[str, dict[str, Any]]] = []
ARRIVED = threading.Condition()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    secret_id = os.environ["OPENAI_WEBHOOK_SECRET_ID"]
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    body = event.get("body", "")
    raw = base64.b64decode(body) if event["isBase64Encoded"] else body.encode()
    try:
        OpenAI(api_key="x", webhook_secret=secret).webhooks.unwrap(raw, event["headers"])
        verdict, status = "verified", 200
    except InvalidWebhookSignatureError:
        verdict, status = "rejected", 401
    with ARRIVED:
        RECEIVED.append((verdict, event))
        ARRIVED.notify_all()
    return {"statusCode": status}


def wait_for(count: int, timeout: float = 15.0) -> list[tuple[str, dict[str, Any]]]:
    with ARRIVED:
        ARRIVED.wait_for(lambda: len(RECEIVED) >= count, timeout)
        return list(RECEIVED)
