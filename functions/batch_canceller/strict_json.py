"""Reading input JSON text strictly: a key given twice in one object is an error, not its last
value (`{"dry_run": true, "dry_run": false}` would show one message and do another)."""

from __future__ import annotations

import json
from typing import Any

from batch_canceller.input_fields import InvalidInput, join, preview, quoted


class _Duplicated(dict[str, Any]):
    """An object that had `key` twice; found by its path once the whole text is read."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def load_json(text: str, what: str = "the message body") -> Any:
    """`text` as JSON; InvalidInput (naming the repeated key and its path) on a duplicate key,
    NaN or Infinity, too deep a nesting or anything that is not JSON."""
    seen_duplicate = False

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen_duplicate
        keys: set[str] = set()
        for key, _ in pairs:
            if key in keys:
                seen_duplicate = True
                return _Duplicated(pairs, key)
            keys.add(key)
        return dict(pairs)

    try:
        value = json.loads(text, parse_constant=_not_json, object_pairs_hook=unique)
    except RecursionError:
        raise InvalidInput(f"{what} is JSON nested too deeply") from None
    except ValueError as exc:  # also an integer of more than 4,300 digits
        raise InvalidInput(f"{what} is not valid JSON: {preview(str(exc), 80)}") from None
    if seen_duplicate:
        path, key = _first_duplicate(value)
        raise InvalidInput(
            f"{quoted(join(path, key))} is given more than once: a repeated key is ambiguous"
        )
    return value


def _first_duplicate(value: Any) -> tuple[str, str]:
    """The path of the first object with a repeated key, in document order (iteratively: the
    text may be nested as deep as json.loads allows)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _Duplicated):
            return path, item.key
        if isinstance(item, dict):
            stack.extend((join(path, key), child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(
                (join(path, index), child) for index, child in reversed(list(enumerate(item)))
            )
    raise AssertionError("a duplicate key was seen but not found")


def _not_json(constant: str) -> Any:
    # Python reads NaN and Infinity; JSON has neither.
    raise ValueError(f"{constant} is not a JSON value")
