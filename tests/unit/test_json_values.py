"""API JSON <-> DynamoDB values <-> event JSON without losing numbers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_canceller.json_values import dumps, from_item, plain, to_attribute


def test_plain_turns_whole_decimals_into_ints() -> None:
    value = plain(Decimal("1712345678"))
    assert value == 1712345678
    assert type(value) is int


def test_plain_turns_fractional_decimals_into_floats() -> None:
    value = plain(Decimal("0.1"))
    assert value == 0.1
    assert type(value) is float


def test_plain_keeps_large_ints_exact() -> None:
    assert plain(Decimal("123456789012345678901234567890")) == 123456789012345678901234567890


def test_plain_turns_sets_into_sorted_lists() -> None:
    assert plain({"b", "c", "a"}) == ["a", "b", "c"]
    assert plain(frozenset({Decimal(3), Decimal(1)})) == [1, 3]


def test_plain_converts_inside_nested_containers() -> None:
    value = {"a": [Decimal("1"), {"b": Decimal("2.5")}], "c": (Decimal("0"),), "d": None}
    assert plain(value) == {"a": [1, {"b": 2.5}], "c": [0], "d": None}


def test_plain_leaves_strings_bools_and_none_alone() -> None:
    assert plain(["x", True, False, None]) == ["x", True, False, None]


def test_dumps_is_compact_and_keeps_unicode() -> None:
    text = dumps({"a": [Decimal("1"), Decimal("0.5")], "name": "caf\u00e9"})
    assert text == '{"a":[1,0.5],"name":"caf\u00e9"}'


def test_api_json_round_trips_through_attribute_values() -> None:
    original = (
        '{"x": 0.1, "y": [1, 2.5e-7, null, true], "z": {"k": "v"}, "big": 12345678901234567890}'
    )
    parsed = json.loads(original, parse_float=Decimal)
    item = {"value": to_attribute(parsed)}
    assert plain(from_item(item)["value"]) == json.loads(original)


_decimals = st.decimals(min_value=-(10**15), max_value=10**15, places=None)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | _decimals
    | st.text()
    | st.frozensets(st.text(), max_size=3)
    | st.sets(_decimals, max_size=3),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_values)
def test_dumps_writes_what_plain_then_json_dumps_write(value: Any) -> None:
    # dumps lets the C encoder walk and converts only the leaves it cannot write.
    expected = json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False)
    assert dumps(value) == expected


def test_dumps_refuses_what_json_cannot_write() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})


_attribute_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | _decimals
    | st.text()
    | st.binary(max_size=4)
    | st.frozensets(st.text(), min_size=1, max_size=3)
    | st.sets(st.integers(), min_size=1, max_size=3),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children)
        | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_attribute_values)
def test_attribute_values_are_what_boto3_writes_and_reads(value: Any) -> None:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    written = to_attribute(value)
    assert written == TypeSerializer().serialize(value)
    item = {"a": written, "b": {"S": "x"}}
    assert from_item(item) == {k: TypeDeserializer().deserialize(v) for k, v in item.items()}


def test_attribute_values_keep_boto3s_checks() -> None:
    with pytest.raises(TypeError):
        to_attribute({"ratio": 0.5})  # floats: Decimal only, as TypeSerializer demands
    with pytest.raises(TypeError):
        from_item({"a": {}})
