"""The API client's failures, shared by the client and the pacing of its requests."""

from __future__ import annotations

# No request starts unless at least this much usable time is left.
MIN_REQUEST_SECONDS = 1.0


class TransientApiError(Exception):
    """The API could not be reached or kept failing; the work is retried later.

    `status` and `request_id` are those of the last answer (None when there was none, e.g. a
    timeout); the message says what happened and never holds the key.
    """

    status: int | None
    request_id: str | None

    def __init__(
        self, message: str, status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id


class OutOfTime(TransientApiError):
    """The invocation has no time left for the request (or its retry): nothing was done, so
    the work can go on elsewhere as it is; `retry_after`, when known, is how long the API
    asked everyone to wait (the work is better sent on that much later)."""

    retry_after: float | None

    def __init__(
        self,
        message: str,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status, request_id)
        self.retry_after = retry_after
