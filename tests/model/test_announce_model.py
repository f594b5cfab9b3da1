"""The bounded profile of the model-based test (the long one: `make model`)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.model.machine import AnnounceModel

BOUNDED = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=False,
)


# About a minute alone; on a loaded 2-core machine it has taken over the suite's 300 s.
@pytest.mark.timeout(900)
def test_no_interleaving_loses_an_event_publishes_one_twice_or_regresses_a_record(
    moto_url: str,
) -> None:
    AnnounceModel.moto_url = moto_url
    run_state_machine_as_test(AnnounceModel, settings=BOUNDED)
