"""Reading a JSON object field by field: every value is checked for its type and range before it
is used, and every error names the field's path (`sweep.statuses[0]`). A parser built on this
ends in a value or an InvalidInput, whatever JSON it is given."""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

# Times a message may carry: far enough from datetime's limits that adding a day, a timeout or
# a year never overflows.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)
MAX_TIME_CHARS = 64
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_ABSENT = object()


class InvalidInput(ValueError):
    """Permanently invalid input: retrying cannot help, so it goes to the DLQ with this reason."""


def join(path: str, step: str | int) -> str:
    """The path of a field (`sweep.model`), a list item (`batch_ids[3]`) or an odd map key
    (`sweep.metadata['a b']`)."""
    if isinstance(step, int):
        return f"{path}[{step}]"
    if _NAME.fullmatch(step):
        return f"{path}.{step}" if path else step
    return f"{path}[{preview(step)}]"


def quoted(path: str) -> str:
    return f"'{path}'" if path else "the message"


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def preview(value: str, limit: int = 40) -> str:
    """Quote user text in errors without echoing huge or control-character input."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return ascii(shown)


class Fields:
    """One JSON object found at `path` (`""`: the message itself)."""

    def __init__(self, value: object, path: str = "") -> None:
        if not isinstance(value, dict):
            raise InvalidInput(f"{quoted(path)} must be an object, got {json_type(value)}")
        self.value: dict[str, Any] = value
        self.path = path

    def name(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.value

    def only(self, allowed: Collection[str]) -> None:
        """A typo must not silently change what a message does: unknown fields are errors."""
        unknown = sorted(str(key) for key in self.value if key not in allowed)
        if unknown:
            names = ", ".join(quoted(join(self.path, key)) for key in unknown[:5])
            raise InvalidInput(
                f"unknown field(s) {names} in {quoted(self.path)};"
                f" allowed: {', '.join(sorted(allowed))}"
            )

    def required(self, key: str) -> Any:
        if key not in self.value:
            raise InvalidInput(f"{quoted(self.name(key))} is required")
        return self.value[key]

    def object(self, key: str) -> Fields:
        return Fields(self.required(key), self.name(key))

    def text(
        self,
        key: str,
        max_chars: int,
        *,
        required: bool = False,
        empty: bool = True,
        null_is_absent: bool = False,
    ) -> str | None:
        value = self._get(key, required, null_is_absent)
        if value is None:
            return None
        return text_value(value, self.name(key), max_chars, empty=empty)

    def integer(self, key: str, low: int, high: int, *, required: bool = False) -> int | None:
        value = self._get(key, required, False)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidInput(
                f"{quoted(self.name(key))} must be an integer from {low} to {high},"
                f" got {_shown(value)}"
            )
        return value

    def number(self, key: str, low: float, high: float) -> int | float | None:
        value = self._get(key, False, False)
        if value is None:
            return None
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise InvalidInput(
                f"{quoted(self.name(key))} must be a number from {_bound(low)} to {_bound(high)},"
                f" got {_shown(value)}"
            )
        return value

    def boolean(self, key: str) -> bool | None:
        value = self._get(key, False, False)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise InvalidInput(
                f"{quoted(self.name(key))} must be true or false, got {_shown(value)}"
            )
        return value

    def time(self, key: str, *, required: bool = False) -> datetime | None:
        """An ISO-8601 time with a UTC offset, within EARLIEST_TIME..LATEST_TIME."""
        value = self._get(key, required, False)
        if value is None:
            return None
        where = quoted(self.name(key))
        if not isinstance(value, str):
            raise InvalidInput(f"{where} must be an ISO-8601 string, got {json_type(value)}")
        moment = parse_time(value)
        if moment is None:
            raise InvalidInput(f"{where} is not an ISO-8601 time: {preview(value)}")
        if moment.tzinfo is None:
            raise InvalidInput(f"{where} needs a UTC offset, e.g. 2026-01-01T06:00:00+00:00")
        if not EARLIEST_TIME <= moment <= LATEST_TIME:
            raise InvalidInput(f"{where} is out of range: {preview(value)}")
        return moment

    def _get(self, key: str, required: bool, null_is_absent: bool) -> Any:
        """The value, or None when it is absent (and may be); a null that does not mean
        "absent" is an error: a wrong value never quietly becomes "no value"."""
        value = self.value.get(key, _ABSENT)
        if value is _ABSENT:
            if required:
                raise InvalidInput(f"{quoted(self.name(key))} is required")
            return None
        if value is None and not null_is_absent:
            raise InvalidInput(f"{quoted(self.name(key))} must not be null")
        return value


def validate_batch_id(value: object, path: str = "batch_id") -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{quoted(path)}: a batch ID must be a string, got {json_type(value)}")
    if not BATCH_ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"{quoted(path)}: invalid batch ID {preview(value)}:"
            " expected 1-256 characters of A-Z a-z 0-9 _ -"
        )
    return value


def text_value(value: object, path: str, max_chars: int, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{quoted(path)} must be a string, got {json_type(value)}")
    if len(value) > max_chars:
        raise InvalidInput(f"{quoted(path)} is longer than {max_chars} characters")
    if not value and not empty:
        raise InvalidInput(f"{quoted(path)} must not be empty")
    return value


def parse_time(value: str) -> datetime | None:
    """An ISO-8601 time, or None; an aware time is checked to convert to UTC (an offset near
    datetime's limits would overflow every comparison with it)."""
    if len(value) > MAX_TIME_CHARS:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment


def _bound(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else str(value)


def _shown(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return preview(repr(value), 24)
    return json_type(value)
