"""Redaction of answers: the walk, and the fast path that skips it when no key can be there."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from batch_canceller.api_key import RememberedKeys, StaticApiKey
from batch_canceller.redaction import may_quote, redact_all

KEY = "sk-test-" + "k3y" * 12


def _redact(text: str) -> str:
    return text.replace(KEY, "[redacted]")


def _batch(**extra: Any) -> dict[str, Any]:
    return {
        "id": "batch_1",
        "object": "batch",
        "status": "cancelled",
        "request_counts": {"total": 3, "completed": 1, "failed": 0},
        "metadata": {"team": "evals"},
        "created_at": Decimal("1712345678"),
        **extra,
    }


def test_an_answer_quoting_no_key_is_returned_as_it_is_without_the_walk() -> None:
    batch = _batch()

    def must_not_be_called(text: str) -> str:
        raise AssertionError(f"walked: {text!r}")

    assert redact_all(batch, must_not_be_called, (KEY,)) is batch


def test_a_key_anywhere_in_the_answer_is_redacted_through_the_fast_path() -> None:
    batch = _batch(
        metadata={"echo": [{f"Bearer {KEY}": "x"}]},
        errors={"data": [{"message": f"'\"\\\n\x00{KEY}\u00e9"}]},
    )

    redacted = redact_all(batch, _redact, (KEY,))

    assert KEY not in json.dumps(redacted, default=str)
    assert redacted["metadata"] == {"echo": [{"Bearer [redacted]": "x"}]}
    assert redacted["errors"]["data"][0]["message"] == "'\"\\\n\x00[redacted]\u00e9"


def test_a_key_repr_would_escape_always_takes_the_walk() -> None:
    for odd_key in ("sk-'quote", 'sk-"dq', "sk-back\\slash", "sk-new\nline", "sk-\x00nul"):
        assert may_quote(_batch(), (odd_key,)) is True


def test_no_keys_handed_out_yet_means_nothing_to_redact() -> None:
    assert may_quote(_batch(metadata={"k": KEY}), ()) is False


def test_remembered_keys_redact_every_key_handed_out_in_the_whole_answer() -> None:
    keys = RememberedKeys(StaticApiKey(KEY))
    keys.get()

    redacted = keys.redact_all(_batch(metadata={"gateway_request": f"Bearer {KEY}"}))

    assert redacted["metadata"] == {"gateway_request": "Bearer [redacted]"}


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False).map(Decimal)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.text(min_size=1, max_size=12)


@given(value=_json, key=_keys, at=st.integers(min_value=0, max_value=40))
def test_the_fast_path_redacts_exactly_what_the_walk_does(value: Any, key: str, at: int) -> None:
    # The key planted in a string somewhere (or not at all: `at` past the value's strings).
    planted = _plant(value, key, [at])

    def redact(text: str) -> str:
        return text.replace(key, "[redacted]")

    assert redact_all(planted, redact, (key,)) == redact_all(planted, redact)


def _plant(value: Any, key: str, countdown: list[int]) -> Any:
    """`value` with `key` put inside its countdown[0]-th string (map keys included)."""
    if isinstance(value, str):
        countdown[0] -= 1
        return value[:1] + key + value[1:] if countdown[0] == -1 else value
    if isinstance(value, dict):
        return {_plant(k, key, countdown): _plant(v, key, countdown) for k, v in value.items()}
    if isinstance(value, list):
        return [_plant(item, key, countdown) for item in value]
    return value
