"""Published AWS prices (us-east-1) and the billing rules the end-to-end cost is computed with."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PRICES_AS_OF = "2026-11-25"
PRICE_SOURCES = (
    "us-east-1 list prices as published by AWS; checked on 2026-11-25 against third-party"
    " write-ups of the AWS pricing pages dated March-June 2026 (the AWS pages themselves were"
    " not reachable from this machine), so treat them as assumed as of 2026-11-25"
)


@dataclass(frozen=True)
class Price:
    service: str
    unit: str
    usd: float  # per unit
    rule: str


DYNAMODB_WRITE = Price(
    "DynamoDB on-demand",
    "write request unit",
    0.625 / 1e6,
    "$0.625 per million WRU (since Nov 2024); one WRU per started 1 KB of the item, the larger"
    " of before and after; a failed condition still consumes it",
)
DYNAMODB_READ = Price(
    "DynamoDB on-demand",
    "read request unit",
    0.125 / 1e6,
    "$0.125 per million RRU; a strongly consistent read is one RRU per started 4 KB",
)
SQS_REQUEST = Price(
    "SQS standard",
    "request",
    0.40 / 1e6,
    "$0.40 per million requests; each started 64 KB of a request's payload is one request;"
    " batch calls (up to 10 messages) are one request",
)
EVENTBRIDGE_EVENT = Price(
    "EventBridge custom events",
    "event",
    1.00 / 1e6,
    "$1.00 per million events put; each started 64 KB of an entry is one event",
)
LAMBDA_REQUEST = Price("Lambda", "request", 0.20 / 1e6, "$0.20 per million requests")
LAMBDA_ARM_GB_SECOND = Price(
    "Lambda arm64",
    "GB-second",
    0.0000133334,
    "$0.0000133334 per GB-s (first 7.5 billion GB-s a month); duration billed per started ms",
)
ALL_PRICES = (
    DYNAMODB_WRITE,
    DYNAMODB_READ,
    SQS_REQUEST,
    EVENTBRIDGE_EVENT,
    LAMBDA_REQUEST,
    LAMBDA_ARM_GB_SECOND,
)


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for one typed attribute value (its published sizing rules)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "B":
        return len(inner)
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(attribute_size({"N": n}) for n in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, dict[str, Any]]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size_bytes: float) -> int:
    return max(1, math.ceil(size_bytes / 1024))


def read_units(size_bytes: float) -> int:
    return max(1, math.ceil(size_bytes / 4096))
