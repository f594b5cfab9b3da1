"""How the emulator delivers webhooks: where, and how it retries (OpenAI's 72 h, scaled down)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SETTING_NAMES = (
    "url",
    "max_attempts",
    "initial_backoff_seconds",
    "max_backoff_seconds",
    "timeout_seconds",
    "hold_seconds",
)


@dataclass(frozen=True)
class WebhookSettings:
    """`url` None: no deliveries. Attempt n+1 waits min(initial * 2**(n-1), max) after attempt
    n failed (non-2xx, connection error, no answer within `timeout_seconds`), up to
    `max_attempts` in all. `hold_seconds`: the longest an `out_of_order` delivery waits for a
    next delivery to overtake it."""

    url: str | None = None
    max_attempts: int = 5
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    timeout_seconds: float = 5.0
    hold_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("the webhook url must be an http:// or https:// URL")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        for name in ("initial_backoff_seconds", "max_backoff_seconds", "hold_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")

    def backoff(self, failed_attempts: int) -> float:
        """Seconds before the next attempt, after `failed_attempts` (>= 1) have failed."""
        return float(
            min(self.initial_backoff_seconds * 2 ** (failed_attempts - 1), self.max_backoff_seconds)
        )

    def replace(self, changes: dict[str, Any]) -> WebhookSettings:
        unknown = set(changes) - set(SETTING_NAMES)
        if unknown:
            raise ValueError(f"unknown webhook settings: {sorted(unknown)}")
        typed: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "url":
                if value is not None and not isinstance(value, str):
                    raise TypeError("'url' must be a string or null")
                typed[name] = value or None
            elif name == "max_attempts":
                typed[name] = int(value)
            else:
                typed[name] = float(value)
        return dataclasses.replace(self, **typed)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
