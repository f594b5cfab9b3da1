"""Converting between API JSON, DynamoDB attribute values and event JSON without losing numbers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value (floats as Decimal) as a DynamoDB attribute value."""
    return dict(_serializer.serialize(value))


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


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
