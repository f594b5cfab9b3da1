"""The chaos run, short: 150 batches through every fault kind and one SIGKILL, inside `make test`.
The same runner as `make chaos` (`python -m tests.reliability.chaos`), smaller: fewer API and
DynamoDB faults and likelier PutEvents faults, so that every kind still fires and it takes about
two minutes, and smaller batches per invocation, so there are enough of them. Its one SIGKILL
lands mid-invocation, aimed (as in the full run) at the moment between a successful PutEvents
and the write that marks the event announced: the events' receipts must keep the redelivery
from announcing them again. The settle phase outlasts the 60 s a redelivery waits for a receipt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.openai_emulator import CHAOS_CHOICES
from tests.reliability.chaos import ChaosConfig, run
from tests.reliability.tally import render
from tests.reliability.workload import INVALID_INPUTS

SHORT = ChaosConfig(
    batches=150,
    finished=5,
    missing=5,
    seed=7,
    api_fault_rate=0.1,
    update_item_throttle_probability=0.05,
    put_events_error_probability=0.2,
    put_events_partial_probability=0.2,
    kills=1,
    batch_size=30,
    time_limit_seconds=45,
    settle_limit_seconds=90,
)
AWS_FAULTS = {
    "Events.PutEvents http_error",
    "Events.PutEvents put_events_partial",
    "DynamoDB.UpdateItem throttle",
}


@pytest.mark.timeout(300)
def test_short_chaos_run_loses_nothing_announces_once_and_dead_letters_only_invalid_input(
    tmp_path: Path,
) -> None:
    progress: list[str] = []

    outcome = run(SHORT, tmp_path, say=progress.append)

    report = "\n".join([*progress, render(outcome, SHORT.describe(outcome.commands_invalid))])
    # Every fault kind was really exercised, and the kill hit a running invocation.
    assert set(outcome.api_faults) == set(CHAOS_CHOICES), report
    assert set(outcome.aws_faults) == AWS_FAULTS, report
    assert outcome.redeliveries_injected > 0, report
    assert (outcome.kills, outcome.kills_mid_invocation) == (1, 1), report
    # Nothing lost, nothing announced twice, the DLQ holds the invalid inputs and only them.
    assert outcome.lost_cancellations == [], report
    assert outcome.lost_other == [], report
    assert outcome.duplicates == [], report
    assert outcome.unexpected_events == [], report
    assert outcome.dlq_missing == [], report
    assert outcome.dlq_unexpected == [], report
    assert outcome.commands_invalid == len(INVALID_INPUTS), report
    assert outcome.passed, report
