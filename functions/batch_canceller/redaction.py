"""Redaction of API answers before they are stored, published or logged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def redact_all(value: Any, redact: Callable[[str], str]) -> Any:
    """`value` with every string in it redacted, map keys included, however deeply nested: a
    gateway may quote the request (and its key) anywhere in an answer."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_all(key, redact): redact_all(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_all(item, redact) for item in value]
    return value
