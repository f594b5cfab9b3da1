"""The chaos run, short: 150 batches through every fault kind and one SIGKILL, inside `make test`.
The same runner as `make chaos` (`python -m tests.reliability.chaos`), smaller: fewer API and
DynamoDB faults and likelier PutEvents faults and concurrent copies, so that every kind still
fires and it takes about a minute and a half, and smaller batches per invocation, so there are
enough of them. Two workers consume the queue, so a message made visible again as its
invocation starts is handled by both at once. Its one SIGKILL lands mid-invocation, aimed (as
in the full run) at the moment between a successful PutEvents and the write that marks the
event announced: the events' receipts must keep the redelivery from announcing them again.
Leases are short (15 s timeout + 20 s grace), so the claims of the killed invocation and of
PutEvents calls whose outcome was not known are taken over within the run; the settle phase
outlasts a lease and a visibility timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.openai_emulator import CHAOS_CHOICES
from tests.reliability.chaos import ChaosConfig, run
from tests.reliability.report import render
from tests.reliability.workload import INVALID_INPUTS

SHORT = ChaosConfig(
    batches=150,
    finished=5,
    missing=5,
    seed=7,
    api_fault_rate=0.1,
    update_item_throttle_probability=0.05,
    put_events_error_probability=0.15,
    put_events_drop_probability=0.15,
    put_events_partial_probability=0.15,
    concurrent_copy_probability=0.08,
    kills=1,
    batch_size=30,
    time_limit_seconds=45,
    settle_limit_seconds=150,
)
AWS_FAULTS = {
    "Events.PutEvents http_error",
    "Events.PutEvents forward_then_drop",
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
    # Two invocations handled one message at the same time.
    assert outcome.copies_concurrent > 0, report
    # PutEvents accepted then dropped: the receipts marked those events announced.
    assert outcome.unmarked.unknown.by_receipt > 0, report
    # Redeliveries past the lease took claims over, and never before the lease ended.
    assert outcome.metrics["ClaimsTakenOver"] > 0, report
    assert outcome.takeovers.total > 0, report
    assert all(late >= 0 for late in outcome.takeovers.past_lease), report
    # Nothing lost, nothing announced twice, the DLQ holds the invalid inputs and only them.
    assert outcome.lost_cancellations == [], report
    assert outcome.lost_other == [], report
    assert outcome.duplicates == [], report
    assert outcome.unexpected_events == [], report
    assert outcome.dlq_missing == [], report
    assert outcome.dlq_unexpected == [], report
    assert outcome.commands_invalid == len(INVALID_INPUTS), report
    assert outcome.passed, report
