"""Error bodies in the shapes OpenAI and Azure OpenAI send them."""

from __future__ import annotations

from typing import Any

from infra.openai_emulator.wire import Response


class ApiError(Exception):
    """Raised by request logic; the handler turns it into an HTTP error answer."""

    def __init__(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(str(payload))
        self.status = status
        self.payload = payload
        self.headers = dict(headers or {})

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return Response.json(self.status, self.payload, {**self.headers, **(headers or {})})


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> ApiError:
    return ApiError(
        status, {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def azure_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"error": {"code": code, "message": message}})


def mask_key(key: str) -> str:
    """Enough of a key to recognise it, never the key itself."""
    return (key[:3] if len(key) >= 8 else "") + "****"


def not_found(batch_id: str) -> ApiError:
    return openai_error(404, f"No batch found with id '{batch_id}'.")
