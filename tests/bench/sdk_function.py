"""The baseline: the same function with its OpenAI client replaced by the official `openai` SDK.

Everything else is the project's own code (boto3 clients, Powertools logger and metrics, the
processor, the store, the events), so a difference measured between this module and
`batch_canceller.handler` is the difference between the two OpenAI clients. The cancel itself
is `openai.OpenAI(base_url=..., api_key=...).batches.cancel(batch_id)`.

Usable as a Lambda handler module (`tests.bench.sdk_function.lambda_handler`), configured from
the same environment variables as the real one.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

import openai
from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_canceller.api_errors import MIN_REQUEST_SECONDS, TransientApiError
from batch_canceller.app import Application
from batch_canceller.commands import validate_batch_id
from batch_canceller.config import ConfigurationError
from batch_canceller.observability import logger, metrics
from batch_canceller.openai_api import (
    READ_TIMEOUT_SECONDS,
    ApiEndpoint,
    ApiObserver,
    ApiResponse,
)

if TYPE_CHECKING:
    from batch_canceller.api_key import ApiKeySource
    from batch_canceller.deadline import Deadline

_application: Application | None = None


class SdkBatchClient:
    """`OpenAIBatchClient`'s interface on the `openai` SDK (the SDK's own retries: 2)."""

    def __init__(
        self,
        endpoint: ApiEndpoint,
        api_key: ApiKeySource,
        pool: object = None,
        retry_policy: object = None,
        observer: ApiObserver | None = None,
    ) -> None:
        if endpoint.style != "openai":
            raise ConfigurationError("the SDK baseline speaks OPENAI_API_STYLE=openai only")
        self._endpoint = endpoint
        self._api_key = api_key
        self._observer = observer
        self._lock = threading.Lock()
        self._sdk: openai.OpenAI | None = None

    @staticmethod
    def new_pool(max_in_flight: int) -> None:
        """The SDK keeps its own connection pool."""
        return

    def openai_client(self) -> openai.OpenAI:
        with self._lock:
            if self._sdk is None:
                self._sdk = openai.OpenAI(
                    base_url=self._endpoint.base_url,
                    api_key=self._api_key.get(),
                    organization=self._endpoint.organization,
                    project=self._endpoint.project,
                )
            return self._sdk

    def cancel_batch(self, batch_id: str, deadline: Deadline) -> ApiResponse:
        batch_id = validate_batch_id(batch_id)
        return self._call(
            "cancel",
            deadline,
            lambda sdk, timeout: sdk.batches.cancel(batch_id, timeout=timeout).to_dict(),
        )

    def retrieve_batch(self, batch_id: str, deadline: Deadline) -> ApiResponse:
        batch_id = validate_batch_id(batch_id)
        return self._call(
            "retrieve",
            deadline,
            lambda sdk, timeout: sdk.batches.retrieve(batch_id, timeout=timeout).to_dict(),
        )

    def list_batches(
        self, deadline: Deadline, after: str | None = None, limit: int = 100
    ) -> ApiResponse:
        def page(sdk: openai.OpenAI, timeout: float) -> dict[str, Any]:
            raw = sdk.batches.with_raw_response.list(
                after=validate_batch_id(after) if after is not None else openai.omit,
                limit=limit,
                timeout=timeout,
            )
            body: dict[str, Any] = raw.http_response.json()
            return body

        return self._call("list", deadline, page)

    def _call(self, operation: str, deadline: Deadline, request: Any) -> ApiResponse:
        if not deadline.allows(MIN_REQUEST_SECONDS):
            raise TransientApiError(f"{operation}: no time left in this invocation")
        timeout = max(MIN_REQUEST_SECONDS, min(READ_TIMEOUT_SECONDS, deadline.usable_seconds()))
        sdk = self.openai_client()
        started = time.perf_counter()
        try:
            body = request(sdk, timeout)
        except openai.APIStatusError as exc:
            self._observed(operation, exc.status_code, started)
            if exc.status_code == 429 or exc.status_code >= 500:
                raise TransientApiError(
                    f"{operation}: HTTP {exc.status_code}", exc.status_code, exc.request_id
                ) from None
            try:
                error_body: Any = exc.response.json()
            except ValueError:
                error_body = None
            headers = {k.lower(): v for k, v in exc.response.headers.items()}
            return ApiResponse(exc.status_code, error_body, exc.request_id, headers)
        except openai.APIConnectionError as exc:
            self._observed(operation, None, started)
            raise TransientApiError(f"{operation}: {type(exc).__name__}") from None
        self._observed(operation, 200, started)
        return ApiResponse(200, body, None)

    def _observed(self, operation: str, status: int | None, started: float) -> None:
        if self._observer is not None:
            self._observer.api_call(operation, status, time.perf_counter() - started)


def build_sdk_application() -> Application:
    """`service.build_application` with `SdkBatchClient` in place of `OpenAIBatchClient`."""
    from batch_canceller import service
    from batch_canceller.config import Settings

    original = service.OpenAIBatchClient  # type: ignore[attr-defined]
    service.OpenAIBatchClient = SdkBatchClient  # type: ignore[attr-defined,assignment]
    try:
        return service.build_application(Settings.from_env(os.environ))
    finally:
        service.OpenAIBatchClient = original  # type: ignore[attr-defined]


def get_application() -> Application:
    global _application  # noqa: PLW0603 - one application per container, as in handler.py
    if _application is None:
        _application = build_sdk_application()
    return _application


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    application = get_application()
    try:
        return application.handle(event, context)
    finally:
        application.tally.flush(metrics)
