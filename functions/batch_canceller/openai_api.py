"""A small OpenAI Batch API client on urllib3: retries, deadlines, and no key in any message."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import urllib3

from batch_canceller import __version__
from batch_canceller.api_errors import MIN_REQUEST_SECONDS, OutOfTime, TransientApiError
from batch_canceller.api_key import ApiKeySource
from batch_canceller.api_pacing import current_pacing
from batch_canceller.bounded_answers import (
    answer_by,
    bounded_pool_manager,
    describe_network_error,
    parse_json,
    read_body,
)
from batch_canceller.commands import validate_batch_id
from batch_canceller.config import ApiStyle
from batch_canceller.deadline import Deadline
from batch_canceller.retry_policy import RetryPolicy, is_retryable_status, retry_after_seconds

USER_AGENT = f"batch-canceller/{__version__} urllib3/{version('urllib3')}"
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0
# An answer larger than this is not a Batch or a page of them.
MAX_BODY_BYTES = 16 * 1024 * 1024
# A 401 refreshes the key from Secrets Manager at most this often per container.
KEY_REFRESH_INTERVAL_SECONDS = 30.0

_NETWORK_ERRORS = (
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.SSLError,
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.DecodeError,
    urllib3.exceptions.ProxyError,
)


@dataclass(frozen=True)
class _Failure:
    """Why one attempt failed, how long to wait before the next, and the answer's identity."""

    reason: str
    wait: float
    status: int | None = None
    request_id: str | None = None


class ApiObserver(Protocol):
    def api_call(self, operation: str, status: int | None, seconds: float) -> None: ...

    def api_retry(self, operation: str, reason: str) -> None: ...


class _NoObserver:
    def api_call(self, operation: str, status: int | None, seconds: float) -> None:
        pass

    def api_retry(self, operation: str, reason: str) -> None:
        pass


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any
    request_id: str | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> dict[str, Any]:
        """The OpenAI error object (`{"message", "type", "code", ...}`), or what stands in for it."""
        body = self.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return dict(body["error"])
        return {"message": f"HTTP {self.status}", "type": None, "code": None}


@dataclass(frozen=True)
class ApiEndpoint:
    base_url: str
    style: ApiStyle = "openai"
    azure_api_version: str | None = None
    organization: str | None = None
    project: str | None = None


class OpenAIBatchClient:
    def __init__(
        self,
        endpoint: ApiEndpoint,
        api_key: ApiKeySource,
        pool: urllib3.PoolManager,
        retry_policy: RetryPolicy | None = None,
        observer: ApiObserver | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._api_key = api_key
        self._pool = pool
        self._retry = retry_policy or RetryPolicy()
        self._observer = observer or _NoObserver()
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._key_lock = threading.Lock()
        self._last_key_refresh = -KEY_REFRESH_INTERVAL_SECONDS

    @staticmethod
    def new_pool(max_in_flight: int) -> urllib3.PoolManager:
        """One pool per container, sized so every worker thread keeps a warm connection; its
        answers are bounded in total time (head included), not only between bytes."""
        return bounded_pool_manager(num_pools=4, maxsize=max_in_flight, block=True, retries=False)

    def cancel_batch(self, batch_id: str, deadline: Deadline) -> ApiResponse:
        return self._call("POST", self._batch_path(batch_id) + "/cancel", {}, deadline, "cancel")

    def retrieve_batch(self, batch_id: str, deadline: Deadline) -> ApiResponse:
        return self._call("GET", self._batch_path(batch_id), {}, deadline, "retrieve")

    def list_batches(
        self, deadline: Deadline, after: str | None = None, limit: int = 100
    ) -> ApiResponse:
        query: dict[str, str] = {"limit": str(limit)}
        if after is not None:
            # A cursor, passed on as the server gave it (a gateway's need not be a batch ID);
            # it travels URL-encoded in the query, so it cannot change the path.
            query["after"] = after
        return self._call("GET", "/batches", query, deadline, "list")

    def _batch_path(self, batch_id: str) -> str:
        # Validated and quoted: an ID can never change the path it is sent to.
        return "/batches/" + quote(validate_batch_id(batch_id), safe="")

    def _url(self, path: str, query: dict[str, str]) -> str:
        params = dict(query)
        if self._endpoint.style == "azure" and self._endpoint.azure_api_version:
            params["api-version"] = self._endpoint.azure_api_version
        suffix = "?" + urlencode(params) if params else ""
        return self._endpoint.base_url + path + suffix

    def _headers(self, key: str) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._endpoint.style == "azure":
            headers["api-key"] = key
        else:
            headers["Authorization"] = f"Bearer {key}"
        if self._endpoint.organization:
            headers["OpenAI-Organization"] = self._endpoint.organization
        if self._endpoint.project:
            headers["OpenAI-Project"] = self._endpoint.project
        return headers

    def _call(
        self, method: str, path: str, query: dict[str, str], deadline: Deadline, operation: str
    ) -> ApiResponse:
        url = self._url(path, query)
        if not deadline.allows(MIN_REQUEST_SECONDS):
            raise OutOfTime(f"{operation}: no time left in this invocation")
        key = self._api_key.get()
        refreshed_key = False
        attempt = 0
        while True:
            attempt += 1
            if not deadline.allows(MIN_REQUEST_SECONDS):
                raise OutOfTime(f"{operation}: no time left in this invocation")
            outcome = self._attempt(method, url, key, deadline, operation, attempt)
            if isinstance(outcome, ApiResponse):
                if outcome.status in (401, 403) and not refreshed_key:
                    # The key may have been rotated since it was cached: refetch it once.
                    refreshed_key = True
                    fresh = self._refresh_key()
                    if fresh is not None and fresh != key:
                        key = fresh
                        self._observer.api_retry(operation, f"HTTP {outcome.status}, key refreshed")
                        continue
                return outcome
            wait = outcome.wait
            # Paced, a 429 is a wait, not a failure: retried until the deadline, then deferred;
            # one answer's word holds it back at most max_retry_after_seconds (api_pacing).
            waits = outcome.status == 429 and current_pacing().retries_rate_limits
            if waits:
                wait = min(wait, self._retry.max_retry_after_seconds)
            if attempt >= self._retry.max_attempts and not waits:
                raise TransientApiError(
                    f"{operation}: {outcome.reason} after {attempt} attempts",
                    outcome.status,
                    outcome.request_id,
                )
            if wait > self._retry.max_retry_after_seconds and not waits:
                raise TransientApiError(
                    f"{operation}: {outcome.reason}; asked to wait {wait:.1f}s",
                    outcome.status,
                    outcome.request_id,
                )
            if not deadline.allows(wait + MIN_REQUEST_SECONDS):
                raise OutOfTime(
                    f"{operation}: {outcome.reason}; retry in {wait:.1f}s would pass the deadline",
                    outcome.status,
                    outcome.request_id,
                    retry_after=wait if waits else None,
                )
            self._observer.api_retry(operation, outcome.reason)
            self._sleep(wait)

    def _attempt(
        self, method: str, url: str, key: str, deadline: Deadline, operation: str, attempt: int
    ) -> ApiResponse | _Failure:
        """One request: the response to return, or why it failed and how long to wait."""
        usable = max(MIN_REQUEST_SECONDS, deadline.usable_seconds())
        timeout = urllib3.Timeout(
            connect=min(CONNECT_TIMEOUT_SECONDS, usable), read=min(READ_TIMEOUT_SECONDS, usable)
        )
        answer_within = min(READ_TIMEOUT_SECONDS, usable)
        # The invocation's window and pause (api_pacing) bound every attempt, retries included.
        with current_pacing().slot(deadline) as slot:
            started = time.perf_counter()
            try:
                with answer_by(answer_within):
                    raw = self._pool.request(
                        method,
                        url,
                        headers=self._headers(key),
                        timeout=timeout,
                        retries=False,
                        redirect=False,
                        preload_content=False,
                    )
                    data = read_body(raw, started + answer_within, MAX_BODY_BYTES)
            except _NETWORK_ERRORS as exc:
                self._observer.api_call(operation, None, time.perf_counter() - started)
                wait = self._retry.backoff(attempt, self._rng)
                return _Failure(describe_network_error(exc), wait)
            slot.answered(raw.status, raw.headers)
        self._observer.api_call(operation, raw.status, time.perf_counter() - started)
        headers = {name.lower(): value for name, value in raw.headers.items()}
        request_id = headers.get("x-request-id") or headers.get("apim-request-id")
        if request_id and key in request_id:
            # It is logged and stored; a gateway may echo the Authorization header into it.
            request_id = request_id.replace(key, "[redacted]")
        if is_retryable_status(raw.status):
            # A hint of no wait is no hint: the backoff spaces the retries all the same.
            wait = self._retry.retry_wait(retry_after_seconds(headers), attempt, self._rng)
            return _Failure(
                f"HTTP {raw.status} (request {request_id})", wait, raw.status, request_id
            )
        try:
            body = parse_json(data)
        except ValueError:
            if 200 <= raw.status < 300:
                return _Failure(
                    f"malformed JSON in HTTP {raw.status} answer",
                    self._retry.backoff(attempt, self._rng),
                    raw.status,
                    request_id,
                )
            body = None
        return ApiResponse(raw.status, body, request_id, headers)

    def _refresh_key(self) -> str | None:
        with self._key_lock:
            now = time.monotonic()
            if now - self._last_key_refresh < KEY_REFRESH_INTERVAL_SECONDS:
                return self._api_key.get()
            self._last_key_refresh = now
            return self._api_key.get(refresh=True)
