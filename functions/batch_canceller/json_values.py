"""Converting between API JSON, DynamoDB attribute values and event JSON without losing numbers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value (floats as Decimal) as a DynamoDB attribute value: what boto3's
    TypeSerializer writes. Strings, dicts and lists (most of a Batch object) are written here,
    without its chain of type tests per value; everything else (numbers, which it checks
    against DynamoDB's precision, bools, None, sets, bytes) goes to it."""
    if type(value) is str:
        return {"S": value}
    if type(value) is dict:
        return {"M": {key: to_attribute(item) for key, item in value.items()}}
    if type(value) is list:
        return {"L": [to_attribute(item) for item in value]}
    return dict(_serializer.serialize(value))


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: from_attribute(value) for key, value in item.items()}


def from_attribute(value: dict[str, Any]) -> Any:
    """What boto3's TypeDeserializer reads from an attribute value; S, N, M and L here, the
    rest by it."""
    if len(value) == 1:
        if "S" in value:
            return value["S"]
        if "N" in value:
            return DYNAMODB_CONTEXT.create_decimal(value["N"])
        if "M" in value:
            return {key: from_attribute(item) for key, item in value["M"].items()}
        if "L" in value:
            return [from_attribute(item) for item in value["L"]]
    return _deserializer.deserialize(value)  # type: ignore[arg-type]


def plain(value: Any) -> Any:
    """Decimals back to int or float, sets to sorted lists: what json.dumps can write."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(item) for item in value)
    return value


def dumps(value: Any) -> str:
    """`json.dumps(plain(value))`, compact, without the walk: the C encoder calls `_plain_leaf`
    only for what it cannot write itself (Decimals, sets)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_plain_leaf)


def _plain_leaf(value: Any) -> Any:
    if isinstance(value, Decimal | set | frozenset):
        return plain(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
