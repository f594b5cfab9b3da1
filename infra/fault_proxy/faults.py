"""Fault rules and the canned AWS-shaped responses they produce."""

from __future__ import annotations

import json
import math
import random
import uuid
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal, get_args

from .operations import Protocol, Request, service_of

Action = Literal[
    "http_error", "throttle", "put_events_partial", "drop", "delay", "forward_then_drop"
]
ACTIONS: frozenset[str] = frozenset(get_args(Action))
PUT_EVENTS = "Events.PutEvents"


@dataclass(frozen=True)
class Rule:
    """Inject ``action`` into requests whose operation matches ``operation``.

    ``operation`` is an exact name or an fnmatch glob ("DynamoDB.*").
    ``times=None`` fires forever; ``probability`` is drawn from ``random.Random(seed)``.
    ``status`` overrides the status of http_error (500) and throttle (400, 429 for REST).
    """

    operation: str
    action: Action = "http_error"
    status: int | None = None
    times: int | None = 1
    probability: float = 1.0
    seed: int | None = None
    fail_fraction: float = 1.0
    delay_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {sorted(ACTIONS)}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if not 0.0 <= self.fail_fraction <= 1.0:
            raise ValueError("fail_fraction must be within [0, 1]")
        if self.delay_seconds < 0:
            raise ValueError("delay_seconds must be >= 0")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")

    def matches(self, operation: str) -> bool:
        if self.action == "put_events_partial" and operation != PUT_EVENTS:
            return False  # only PutEvents has per-entry results to fail
        return operation == self.operation or fnmatchcase(operation, self.operation)


@dataclass
class RuleState:
    """A rule plus its mutable bookkeeping; guarded by the proxy's lock."""

    rule: Rule
    remaining: int | None = field(init=False)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.remaining = self.rule.times
        self.rng = random.Random(self.rule.seed)  # noqa: S311 - test jitter, not crypto

    def try_fire(self, operation: str) -> bool:
        if self.remaining == 0 or not self.rule.matches(operation):
            return False
        # Skip the draw at 1.0 so a seeded RNG's sequence is only spent on real coin flips.
        if self.rule.probability < 1.0 and self.rng.random() >= self.rule.probability:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


@dataclass(frozen=True)
class CannedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _json_content_type(request: Request) -> str:
    # Echo the client's JSON flavour (SQS and DynamoDB speak 1.0, most others 1.1).
    sent = request.header("Content-Type") or ""
    if sent.startswith("application/x-amz-json-"):
        return sent
    return (
        "application/x-amz-json-1.0"
        if service_of(request) == "DynamoDB"
        else ("application/x-amz-json-1.1")
    )


def error_response(request: Request, status: int, code: str, message: str) -> CannedResponse:
    """An error in the wire shape botocore expects for the request's protocol."""
    request_id = str(uuid.uuid4())
    protocol = request.protocol
    if protocol is Protocol.QUERY:
        fault = "Receiver" if status >= 500 else "Sender"
        xml = (
            "<ErrorResponse><Error>"
            f"<Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return CannedResponse(
            status, (("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)), xml.encode()
        )
    headers: list[tuple[str, str]] = [("x-amzn-RequestId", request_id)]
    if protocol is Protocol.JSON:
        headers.append(("Content-Type", _json_content_type(request)))
    else:
        # REST-JSON parsers read the error code from this header first.
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
    body = json.dumps({"__type": code, "message": message}).encode()
    return CannedResponse(status, tuple(headers), body)


def http_error_response(request: Request, rule: Rule) -> CannedResponse:
    status = rule.status or 500
    code = "InternalFailure" if status >= 500 else "ValidationException"
    if request.protocol is Protocol.REST_JSON and status >= 500:
        code = "InternalServerException"
    return error_response(request, status, code, "injected")


def throttle_response(request: Request, rule: Rule) -> CannedResponse:
    if service_of(request) == "DynamoDB":
        code = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
    else:
        code = "ThrottlingException"
    default_status = 429 if request.protocol is Protocol.REST_JSON else 400
    return error_response(request, rule.status or default_status, code, "injected throttle")


def choose_failed(count: int, fraction: float, rng: random.Random) -> set[int]:
    """Indices to fail: round-half-up of ``fraction * count``, at least one if fraction > 0."""
    if count == 0 or fraction <= 0:
        return set()
    k = min(count, max(1, math.floor(fraction * count + 0.5)))
    return set(rng.sample(range(count), k))


INJECTED_ENTRY: dict[str, Any] = {"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}


def merge_put_events(
    total: int, failed: set[int], upstream_entries: list[dict[str, Any]]
) -> dict[str, Any]:
    """Rebuild a PutEvents result in the caller's order from moto's partial answer."""
    delivered = iter(upstream_entries)
    # A short upstream answer should never happen; report the gap rather than crash.
    entries = [
        dict(INJECTED_ENTRY) if i in failed else next(delivered, dict(INJECTED_ENTRY))
        for i in range(total)
    ]
    failed_count = sum(1 for entry in entries if "ErrorCode" in entry)
    return {"FailedEntryCount": failed_count, "Entries": entries}
