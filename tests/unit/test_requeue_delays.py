"""A delay or visibility timeout for SQS from any float a wait can be: never an error."""

from __future__ import annotations

import math

import pytest

from batch_canceller.queue import MAX_VISIBILITY_SECONDS, whole_seconds
from batch_canceller.requeue import MAX_DELAY_SECONDS, delay_seconds


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        (None, 0),
        (math.nan, 0),
        (-3.0, 0),
        (0.2, 1),
        (60.0, 60),
        (1e12, MAX_DELAY_SECONDS),
        (math.inf, MAX_DELAY_SECONDS),
        (-math.inf, 0),
    ],
)
def test_a_requeue_delay_is_whole_seconds_within_what_sqs_takes(
    wait: float | None, expected: int
) -> None:
    assert delay_seconds(wait) == expected


def test_a_visibility_timeout_of_inf_is_the_longest() -> None:
    assert whole_seconds(math.inf, MAX_VISIBILITY_SECONDS) == MAX_VISIBILITY_SECONDS
