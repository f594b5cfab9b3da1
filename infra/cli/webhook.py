"""`batch-canceller webhook send BATCH_ID`: a signed test delivery, as OpenAI would send it.

The body and the Standard Webhooks signature are the emulator's (one implementation); the
secret is read from Secrets Manager (the local stack's, or --secret-id /
$OPENAI_WEBHOOK_SECRET_ID for a deployed stack) and never printed."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.cli import EXIT_FAILED, EXIT_OK, OperationFailed, UsageError
from infra.cli.output import print_json, print_pairs
from infra.cli.target import Target
from infra.openai_emulator.webhook_events import (
    event_body,
    new_webhook_id,
    secret_key,
    signed_headers,
)
from infra.openai_emulator.webhook_sender import post

SECRET_ID_ENV = "OPENAI_WEBHOOK_SECRET_ID"  # noqa: S105 - a variable's name, as the function's
URL_OUTPUT = "WebhookUrl"
DEFAULT_TYPE = "batch.cancelled"
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class WebhookSendOptions:
    batch_id: str
    event_type: str = DEFAULT_TYPE
    url: str | None = None
    secret_id: str | None = None
    json: bool = False


def run(target: Target, options: WebhookSendOptions) -> int:
    local = target.webhook or {}
    url = options.url or local.get("url") or target.optional_output(URL_OUTPUT)
    if not url:
        raise UsageError(
            f"where to? The {target.description} has no function URL: pass --url"
            f" (a deployed stack's is its {URL_OUTPUT} output)"
        )
    secret_id = options.secret_id or local.get("secret_id") or os.environ.get(SECRET_ID_ENV)
    if not secret_id:
        raise UsageError(f"which secret signs it? Pass --secret-id or set {SECRET_ID_ENV}")
    key = _key(target, secret_id)
    event_id, body = event_body(options.event_type, options.batch_id, int(time.time()))
    webhook_id = new_webhook_id()
    headers = signed_headers(key, webhook_id, int(time.time()), body)
    status, error = post(url, body, headers, TIMEOUT_SECONDS)
    if status is None:
        raise OperationFailed(f"POST {url} failed: {error}")
    result: dict[str, Any] = {
        "status": status,
        "url": url,
        "webhook_id": webhook_id,
        "event_id": event_id,
        "type": options.event_type,
        "batch_id": options.batch_id,
    }
    if options.json:
        print_json(result)
    else:
        print_pairs([(name.replace("_", " "), value) for name, value in result.items()])
    return EXIT_OK if 200 <= status < 300 else EXIT_FAILED


def _key(target: Target, secret_id: str) -> bytes:
    try:
        text = target.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError) as exc:
        raise OperationFailed(f"cannot read the webhook secret {secret_id}: {exc}") from None
    secret = _secret_from(text)
    try:
        return secret_key(secret)
    except ValueError:
        # Said without the value: a secret is never printed, even a malformed one.
        raise UsageError(f"the secret {secret_id} holds no 'whsec_' webhook secret") from None


def _secret_from(text: str) -> str:
    """The `whsec_...` string, or JSON `{"webhook_secret": "whsec_..."}` (as DESIGN.md allows),
    or its rotation form `{"webhook_secret": ["whsec_new", "whsec_old"]}`: the first signs."""
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            return ""
        value = document.get("webhook_secret") if isinstance(document, dict) else None
        if isinstance(value, list) and value:
            value = value[0]
        return value.strip() if isinstance(value, str) else ""
    return text.strip()
