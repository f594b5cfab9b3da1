"""The webhook signing secret, read from Secrets Manager (OPENAI_WEBHOOK_SECRET_ID) and cached.

The secret string is `whsec_...`, or JSON `{"webhook_secret": "whsec_..."}`; during a rotation
`{"webhook_secret": ["whsec_new", "whsec_old"]}` (up to 3, any may sign). A signature that
matches no cached key makes the receiver read the secret again (the first such mismatch
at once, then at most once a minute per container), so a secret updated in Secrets Manager takes effect without a deploy and a flood of
forged requests costs at most one read a minute. Errors name the secret, never its value.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.api_key import is_unreachable
from batch_canceller.config import ConfigurationError
from batch_canceller.webhook_signature import WebhookKey

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

SECRET_CACHE_SECONDS = 300
REFRESH_INTERVAL_SECONDS = 60
MAX_SECRETS = 3
VARIABLE = "OPENAI_WEBHOOK_SECRET_ID"

Keys = tuple[WebhookKey, ...]


class WebhookSecretUnavailable(Exception):
    """Secrets Manager did not answer now (timeout, throttling, 5xx): worth a retry."""


class WebhookSecrets:
    def __init__(
        self,
        secret_id: str,
        client: Callable[[], SecretsManagerClient],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_age_seconds: float = SECRET_CACHE_SECONDS,
        refresh_interval_seconds: float = REFRESH_INTERVAL_SECONDS,
    ) -> None:
        self._secret_id = secret_id
        self._make_client = client
        self._client: Any = None
        self._clock = clock
        self._max_age = max_age_seconds
        self._interval = refresh_interval_seconds
        self._keys: Keys = ()
        self._read_at = float("-inf")
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()

    def keys(self) -> Keys:
        """The cached keys, read again once they are SECRET_CACHE_SECONDS old (if that read
        fails, the old keys serve for another minute)."""
        with self._lock:
            age = self._clock() - self._read_at
            if self._keys and age < self._max_age:
                return self._keys
            try:
                return self._read()
            except WebhookSecretUnavailable:
                if not self._keys:
                    raise
                self._read_at = self._clock() - self._max_age + self._interval
                return self._keys

    def refreshed(self) -> Keys | None:
        """The keys read again now, or None if this was done less than a minute ago."""
        with self._lock:
            now = self._clock()
            if now - self._refreshed_at < self._interval:
                return None
            self._refreshed_at = now
            return self._read()

    def _read(self) -> Keys:
        if self._client is None:
            self._client = self._make_client()
        try:
            answer = self._client.get_secret_value(SecretId=self._secret_id)
        except (BotoCoreError, ClientError) as exc:
            if is_unreachable(exc):
                raise WebhookSecretUnavailable(
                    f"cannot read {VARIABLE} now: {type(exc).__name__}"
                ) from None
            raise ConfigurationError(
                f"cannot read {VARIABLE} {self._secret_id!r}: {_error_code(exc)}"
            ) from None
        self._keys = parse_webhook_secret(str(answer.get("SecretString") or ""))
        self._read_at = self._clock()
        return self._keys


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


def parse_webhook_secret(raw: str) -> Keys:
    text = raw.strip()
    secrets: object = text
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise ConfigurationError(
                f"{VARIABLE}: the secret looks like JSON but does not parse"
            ) from None
        secrets = document.get("webhook_secret") if isinstance(document, dict) else None
    listed = secrets if isinstance(secrets, list) else [secrets]
    if not listed or len(listed) > MAX_SECRETS or not all(isinstance(s, str) for s in listed):
        raise ConfigurationError(
            f'{VARIABLE}: the secret is "whsec_...", or JSON {{"webhook_secret": "whsec_..."}}'
            f" (or a list of 1 to {MAX_SECRETS} of them)"
        )
    try:
        return tuple(WebhookKey.from_secret(str(secret).strip()) for secret in listed)
    except ValueError as exc:  # its message quotes no part of the secret
        raise ConfigurationError(f"{VARIABLE}: {exc}") from None
