"""OpenAI's `x-ratelimit-*-requests` headers: the formats OpenAI sends, and garbage, which is
no budget, never an exception, never inf or nan."""

from __future__ import annotations

import math

import pytest

from batch_canceller.rate_headers import Budget, budget, duration_seconds
from infra.openai_emulator.rate_limit import duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("120ms", 0.12),
        ("1.5s", 1.5),
        ("1h2m3.5s", 3723.5),
        ("17ms", 0.017),
        ("250us", 0.00025),
        ("0s", 0.0),
        (" 2s ", 2.0),
        ("3", 3.0),  # a bare number: seconds
        ("99999h", 86_400.0),  # bounded to a day
    ],
)
def test_durations_as_openai_writes_them(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "soon", "1x", "s", "1s2", "-1s", "1 s", "nan", "inf", "-3", "1e999", "1s" * 40, "½s"],
)
def test_garbage_durations_are_none(text: str) -> None:
    assert duration_seconds(text) is None


@pytest.mark.parametrize("seconds", [0.0004, 0.12, 0.999, 1.0, 1.5, 59.9, 360.0, 3725.25])
def test_reads_back_what_the_emulator_writes(seconds: float) -> None:
    parsed = duration_seconds(duration(seconds))
    assert parsed is not None
    assert parsed == pytest.approx(seconds, abs=1e-3)


def test_a_budget_from_any_case_of_header_names() -> None:
    headers = {
        "X-RateLimit-Limit-Requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
    }
    assert budget(headers) == Budget(500, 499, 0.12)
    assert Budget(500, 125).share_left == 0.25


def test_a_budget_without_a_usable_reset_still_counts() -> None:
    headers = {"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "0"}
    assert budget(headers) == Budget(50, 0, None)
    assert budget({**headers, "x-ratelimit-reset-requests": "later"}) == Budget(50, 0, None)


@pytest.mark.parametrize(
    ("limit", "remaining"),
    [
        (None, "3"),
        ("50", None),
        ("0", "0"),
        ("50", "51"),
        ("50", "-1"),
        ("fifty", "3"),
        ("50.0", "3"),
        ("1e9", "3"),
        ("nan", "3"),
        ("inf", "3"),
        ("9" * 400, "3"),
        ("\u0665\u0660", "3"),  # digits, but not ASCII ones
    ],
)
def test_no_budget_from_garbage(limit: str | None, remaining: str | None) -> None:
    headers = {"x-ratelimit-reset-requests": "1s"}
    if limit is not None:
        headers["x-ratelimit-limit-requests"] = limit
    if remaining is not None:
        headers["x-ratelimit-remaining-requests"] = remaining
    assert budget(headers) is None


def test_no_value_is_ever_inf_or_nan() -> None:
    for text in ("1e308h", "9" * 60 + "h", "0.0000001ns", "inf", "nan", "1e400"):
        value = duration_seconds(text)
        assert value is None or (math.isfinite(value) and value >= 0)
