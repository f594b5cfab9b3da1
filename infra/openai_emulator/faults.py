"""Injected failures: which requests they hit, and what the client then sees."""

from __future__ import annotations

import dataclasses
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from infra.openai_emulator.errors import ApiError, openai_error
from infra.openai_emulator.wire import Response

FAULT_KINDS = frozenset({"status", "delay", "drop", "reset", "malformed", "html", "chaos"})
# What `chaos` picks from, uniformly; the keys are also its `fault_counts` labels.
CHAOS_CHOICES = ("429", "500", "503", "delay", "reset", "malformed")

MALFORMED_BODY = b'{"id": "batch_'
HTML_BODY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    429: (
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


@dataclass(frozen=True)
class Fault:
    """One failure rule; the first armed rule matching a request (in order) fires.

    kind: status | delay | drop | reset | malformed | html | chaos.
    `times` fires that often then disarms (None = forever); `probability` < 1 draws from
    `random.Random(seed)`. For `chaos`, `delay_seconds` is what its `delay` choice sleeps.
    """

    kind: str
    method: str | None = None
    path_regex: str | None = None
    times: int | None = 1
    probability: float = 1.0
    status: int | None = None
    retry_after: float | str | None = None
    retry_after_ms: int | None = None
    delay_seconds: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {sorted(FAULT_KINDS)}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1, or None for forever")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within 0..1")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.delay_seconds < 0:
            raise ValueError("delay_seconds must be >= 0")
        if self.path_regex is not None:
            re.compile(self.path_regex)  # fail at injection, not on the first request

    @classmethod
    def from_dict(cls, data: Any) -> Fault:
        """From control-plane JSON; unknown keys are an error rather than silently ignored."""
        if not isinstance(data, dict):
            raise TypeError("a fault must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class FaultAction:
    """A fault that fired, resolved to one concrete behaviour."""

    kind: str  # status | delay | drop | reset | malformed | html
    label: str  # key in fault_counts
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    delay_seconds: float = 0.0

    def response(self) -> Response | None:
        """The answer replacing normal handling; None for delay (answer normally) and aborts."""
        headers = dict(self.headers)
        if self.kind == "status":
            return _status_error(self.status).response(headers)
        if self.kind == "malformed":
            return Response(200, MALFORMED_BODY, "application/json", headers)
        if self.kind == "html":
            return Response(self.status or 502, HTML_BODY, "text/html", headers)
        return None


def _status_error(status: int) -> ApiError:
    message, type_, code = _STATUS_ERRORS.get(
        status,
        (
            f"Injected HTTP {status} error.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    return openai_error(status, message, type_=type_, code=code)


@dataclass
class _Armed:
    fault: Fault
    rng: random.Random
    pattern: re.Pattern[str] | None
    remaining: int | None

    def matches(self, method: str, path: str) -> bool:
        if self.fault.method is not None and self.fault.method.upper() != method.upper():
            return False
        return self.pattern is None or self.pattern.search(path) is not None


class FaultSet:
    """Armed faults in injection order, plus how often each kind fired."""

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self._lock = lock or threading.Lock()
        self._armed: list[_Armed] = []
        self._counts: Counter[str] = Counter()

    def add(self, fault: Fault) -> None:
        pattern = re.compile(fault.path_regex) if fault.path_regex is not None else None
        # Seeded per fault so a test's sequence of hits and misses is reproducible.
        rng = random.Random(fault.seed)  # noqa: S311 - test randomness, not security
        with self._lock:
            self._armed.append(_Armed(fault, rng, pattern, fault.times))

    def clear(self, *, counts: bool = False) -> None:
        with self._lock:
            self._armed.clear()
            if counts:
                self._counts.clear()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def __len__(self) -> int:
        with self._lock:
            return len(self._armed)

    def match(self, method: str, path: str) -> FaultAction | None:
        with self._lock:
            for armed in self._armed:
                if not armed.matches(method, path):
                    continue
                probability = armed.fault.probability
                if probability < 1.0 and armed.rng.random() >= probability:
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._armed.remove(armed)
                action = _resolve(armed.fault, armed.rng)
                self._counts[action.label] += 1
                return action
        return None


def _resolve(fault: Fault, rng: random.Random) -> FaultAction:
    if fault.kind == "chaos":
        return _resolve_chaos(fault, rng)
    if fault.kind == "status":
        status = fault.status or 500
        headers: list[tuple[str, str]] = []
        if fault.retry_after is not None:
            headers.append(("retry-after", str(fault.retry_after)))
        if fault.retry_after_ms is not None:
            headers.append(("retry-after-ms", str(fault.retry_after_ms)))
        return FaultAction("status", str(status), status, tuple(headers))
    if fault.kind == "html":
        return FaultAction("html", "html", fault.status or 502)
    return FaultAction(fault.kind, fault.kind, delay_seconds=fault.delay_seconds)


def _resolve_chaos(fault: Fault, rng: random.Random) -> FaultAction:
    choice = rng.choice(CHAOS_CHOICES)
    if choice == "429":
        # The hints a real 429 carries: `retry-after` is whole seconds (at least 1, per the
        # spec), and clients that read `retry-after-ms` get a short wait; half the time only
        # the latter is sent.
        hints: tuple[tuple[str, str], ...] = (("retry-after-ms", str(rng.randint(1, 20))),)
        if rng.random() < 0.5:
            hints = (("retry-after", "1"), *hints)
        return FaultAction("status", "429", 429, hints)
    if choice in ("500", "503"):
        return FaultAction("status", choice, int(choice))
    if choice == "delay":
        return FaultAction("delay", "delay", delay_seconds=fault.delay_seconds)
    return FaultAction(choice, choice)
