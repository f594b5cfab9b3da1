"""Redaction of API answers before they are stored, published or logged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# Characters a str's repr() may write otherwise than as themselves (besides non-printables).
_REPR_ESCAPED = frozenset("\\'\"")


def redact_all(value: Any, redact: Callable[[str], str], keys: Sequence[str] | None = None) -> Any:
    """`value` with every string in it redacted, map keys included, however deeply nested: a
    gateway may quote the request (and its key) anywhere in an answer. With `keys` (every
    text `redact` replaces), a value that cannot hold any of them is returned as it is,
    without the walk (`may_quote`)."""
    if keys is not None and not may_quote(value, keys):
        return value
    return _walk(value, redact)


def may_quote(value: Any, keys: Sequence[str]) -> bool:
    """False only when no string in `value` (a JSON value as `json.loads` builds it: dicts,
    lists, str, numbers, Decimal, bool, None), map keys included, contains any of `keys`.

    One repr() of the whole value, in C, instead of a walk in Python: repr writes each
    printable character of a string other than a backslash or a quote as itself, so a key
    made only of those is in the repr of every string holding it, and so in the repr of the
    value. A key with any other character makes this answer True (the caller walks)."""
    if not keys:
        return False
    if not all(_written_as_itself(key) for key in keys):
        return True
    text = repr(value)
    return any(key in text for key in keys)


def _written_as_itself(key: str) -> bool:
    return bool(key) and key.isprintable() and _REPR_ESCAPED.isdisjoint(key)


def _walk(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_walk(key, redact): _walk(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, redact) for item in value]
    return value
