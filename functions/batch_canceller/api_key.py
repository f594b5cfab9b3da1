"""The OpenAI key, from Secrets Manager through Powertools Parameters (cached per container)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from batch_canceller.config import ConfigurationError
from batch_canceller.redaction import redact_all

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

SECRET_CACHE_SECONDS = 300


class ApiKeySource(Protocol):
    def get(self, *, refresh: bool = False) -> str: ...


class SecretsManagerApiKey:
    """Reads the raw key or JSON `{"api_key": "..."}`; `refresh` bypasses the cache after a 401.

    `client` makes the Secrets Manager client on first use, from the function's own boto3
    session: Powertools' default provider would build a second session (`make bench`: tens of
    ms at cold start)."""

    def __init__(
        self,
        secret_id: str,
        client: Callable[[], SecretsManagerClient] | None = None,
        max_age_seconds: int = SECRET_CACHE_SECONDS,
    ) -> None:
        self._secret_id = secret_id
        self._make_client = client
        self._max_age = max_age_seconds
        self._provider: Any = None
        # Worker threads ask at once on a cold start: one of them fetches, the rest wait.
        self._lock = threading.Lock()

    def get(self, *, refresh: bool = False) -> str:
        with self._lock:
            return self._fetch(refresh)

    def _fetch(self, refresh: bool) -> str:
        # Imported here: the parameters utility pulls in boto3, which cold start can defer.
        from aws_lambda_powertools.utilities import parameters

        if self._provider is None:
            client = self._make_client() if self._make_client is not None else None
            self._provider = parameters.SecretsProvider(boto3_client=client)
        try:
            raw = self._provider.get(self._secret_id, max_age=self._max_age, force_fetch=refresh)
        except parameters.exceptions.GetParameterError as exc:
            unreachable = _unreachable(exc)
            if unreachable is not None:
                # Secrets Manager slow, unreachable, or no time left for it: not a
                # configuration error; the work comes back like after any failed AWS call.
                raise unreachable from None
            # The provider's message names the secret, never its value.
            raise ConfigurationError(
                f"cannot read OPENAI_API_KEY_SECRET_ID {self._secret_id!r}: {type(exc).__name__}"
            ) from None
        return parse_secret(raw if isinstance(raw, str) else raw.decode("utf-8"))


def _unreachable(exc: BaseException) -> BotoCoreError | ClientError | None:
    """The SDK error behind the provider's wrapper (Powertools raises GetParameterError from
    it) when it says Secrets Manager could not answer now: a timeout, a refused connection, a
    call refused for time, throttling or a 5xx. Anything else (AccessDenied, no such secret)
    is the deployment's to fix."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, BotoCoreError | ClientError) and is_unreachable(cause):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def is_unreachable(error: BotoCoreError | ClientError) -> bool:
    """An SDK error that says Secrets Manager could not answer now (see `_unreachable`)."""
    return isinstance(error, BotoCoreError) or _is_transient(error)


def _is_transient(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = str(error.response.get("Error", {}).get("Code", ""))
    return status >= 500 or status == 429 or "Throttl" in code or code == "RequestLimitExceeded"


def parse_secret(raw: str) -> str:
    text = raw.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise ConfigurationError(
                "the API key secret looks like JSON but does not parse"
            ) from None
        key = document.get("api_key") if isinstance(document, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError('the API key secret JSON needs a string "api_key"')
        return key.strip()
    if not text:
        raise ConfigurationError("the API key secret is empty")
    return text


class RememberedKeys:
    """The key source as the function uses it, remembering every key it handed out, so that
    text quoting one is redacted even after the key was rotated (a gateway's error may echo
    the key a request was sent with, fetched before the rotation)."""

    def __init__(self, source: ApiKeySource) -> None:
        self._source = source
        # Replaced, never changed in place: `redact` reads it without a lock (it runs for every
        # string of every answer).
        self._keys: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def get(self, *, refresh: bool = False) -> str:
        key = self._source.get(refresh=refresh)
        if key not in self._keys:
            with self._lock:
                if key not in self._keys:
                    self._keys = tuple(sorted({*self._keys, key}, key=len, reverse=True))
        return key

    def redact(self, text: str) -> str:
        for key in self._keys:
            if key in text:
                text = text.replace(key, "[redacted]")
        return text

    def redact_all(self, value: Any) -> Any:
        """`value` (an answer's JSON) with every key handed out redacted in every string of
        it; an answer quoting none (almost every one) is returned as it is, unwalked."""
        return redact_all(value, self.redact, self._keys)


class StaticApiKey:
    """A fixed key (scripts and benchmarks)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def get(self, *, refresh: bool = False) -> str:
        return self._key
