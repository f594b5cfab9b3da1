"""How long to wait before retrying: the server's hint first, else bounded jittered backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from batch_canceller.retry_policy import (
    LONGEST_HINT_SECONDS,
    MIN_RETRY_WAIT_SECONDS,
    RetryPolicy,
    is_retryable_status,
    retry_after_seconds,
)

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "30"}) == 0.25


def test_retry_after_ms_is_milliseconds() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5


def test_retry_after_in_seconds() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0


def test_retry_after_accepts_fractional_seconds() -> None:
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5


def test_header_names_are_case_insensitive() -> None:
    assert retry_after_seconds({"Retry-After-Ms": "100", "Retry-After": "9"}) == 0.1
    assert retry_after_seconds({"RETRY-AFTER": "9"}) == 9.0


def test_retry_after_as_http_date_is_the_time_until_then() -> None:
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}
    assert retry_after_seconds(headers, now=NOW) == 30.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    headers = {"retry-after": "Wed, 21 Oct 2015 07:20:00 GMT"}
    assert retry_after_seconds(headers, now=NOW) == 0.0


def test_no_hint_is_none() -> None:
    assert retry_after_seconds({"content-type": "application/json"}) is None


@pytest.mark.parametrize("garbage", ["soon", "", "Wed, 99 Foo 2015", "1,5", "--3"])
def test_unparseable_retry_after_is_ignored(garbage: str) -> None:
    assert retry_after_seconds({"retry-after": garbage}, now=NOW) is None


def test_unparseable_retry_after_ms_falls_back_to_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "4"}) == 4.0


def test_unparseable_retry_after_ms_alone_is_ignored() -> None:
    assert retry_after_seconds({"retry-after-ms": "soon"}) is None


@pytest.mark.parametrize(
    "headers", [{"retry-after": "-5"}, {"retry-after-ms": "-300"}, {"retry-after-ms": "-1e9"}]
)
def test_negative_hint_clamps_to_zero(headers: dict[str, str]) -> None:
    assert retry_after_seconds(headers) == 0.0


def test_backoff_never_exceeds_its_growing_ceiling_or_the_maximum() -> None:
    policy = RetryPolicy(base_seconds=0.5, max_backoff_seconds=8.0)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        for _ in range(200):
            wait = policy.backoff(attempt, rng)
            assert 0.0 <= wait <= ceiling


def test_backoff_grows_with_the_attempt_number() -> None:
    policy = RetryPolicy(base_seconds=0.5, max_backoff_seconds=8.0)
    rng = random.Random(11)
    first = [policy.backoff(1, rng) for _ in range(200)]
    fifth = [policy.backoff(5, rng) for _ in range(200)]
    assert max(first) <= 0.5
    # the fifth retry may wait up to 8 s: a seeded sample of 200 certainly reaches past 0.5
    assert max(fifth) > 2.0
    assert sum(fifth) / len(fifth) > 2 * (sum(first) / len(first))


def test_backoff_far_past_the_cap_stays_at_the_maximum() -> None:
    policy = RetryPolicy(base_seconds=0.5, max_backoff_seconds=8.0)
    rng = random.Random(3)
    assert all(0.0 <= policy.backoff(64, rng) <= 8.0 for _ in range(50))


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_timeouts_rate_limits_and_server_errors_are_retryable(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 409, 422])
def test_client_errors_are_not_retryable(status: int) -> None:
    assert not is_retryable_status(status)


@pytest.mark.parametrize("headers", [{"retry-after": "nan"}, {"retry-after-ms": "NaN"}])
def test_nan_is_no_hint(headers: dict[str, str]) -> None:
    assert retry_after_seconds(headers) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "inf"},
        {"retry-after-ms": "inf"},
        {"retry-after": "1e12"},
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
)
def test_an_endless_hint_is_the_longest_finite_one(headers: dict[str, str]) -> None:
    assert retry_after_seconds(headers, now=NOW) == LONGEST_HINT_SECONDS


@pytest.mark.parametrize("hint", [None, 0.0, 0.001])
def test_a_retry_never_follows_at_once(hint: float | None) -> None:
    policy, rng = RetryPolicy(), random.Random(3)
    waits = [policy.retry_wait(hint, 1, rng) for _ in range(200)]
    assert min(waits) >= MIN_RETRY_WAIT_SECONDS
    if hint == 0.0:  # no wait asked: the backoff, jittered (not the floor every time)
        assert max(waits) > MIN_RETRY_WAIT_SECONDS


def test_a_hint_is_the_wait() -> None:
    assert RetryPolicy().retry_wait(7.0, 3, random.Random(1)) == 7.0
