"""Plain values passed between the HTTP handler and the emulator logic (no I/O here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

JSON_TYPE = "application/json"

Abort = Literal["drop", "reset"]


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON (empty body reads as `{}`); raises ValueError when it is not JSON."""
        if not self.body.strip():
            return {}
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), JSON_TYPE, dict(headers or {}))

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(status, b"", None)


@dataclass(frozen=True)
class Reply:
    """What the handler must do: wait `delay_seconds`, then send `response` or abort."""

    response: Response | None
    delay_seconds: float = 0.0
    abort: Abort | None = None


@dataclass
class RecordedRequest:
    """One API request as the emulator saw it (control-plane calls are not recorded)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float
    status: int | None = None  # None when the connection was dropped or reset
    # The wait a rate-limited answer asked for (its `retry-after-ms`), else None.
    retry_after_ms: int | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def organization(self) -> str | None:
        return self.header("openai-organization")

    @property
    def project(self) -> str | None:
        return self.header("openai-project")

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", errors="replace"),
            "at": self.at,
            "status": self.status,
            "retry_after_ms": self.retry_after_ms,
        }
