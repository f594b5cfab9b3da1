"""Following a `cancelling` batch: growing delays, one chain of checks, and the stall timeout."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from infra.openai_emulator import OpenAIEmulator
from tests.support import API_KEY, OUTCOME_DETAIL_KEYS, Stack, context, sqs_event


@pytest.fixture
def slow_emulator() -> Iterator[OpenAIEmulator]:
    """Batches stay `cancelling` for a minute: longer than these tests watch."""
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=60) as emu:
        yield emu


def test_batch_still_cancelling_after_the_timeout_is_announced_stalled_once(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    batch = slow_emulator.seed(status="in_progress")
    app = stack.app(
        slow_emulator.base_url,
        POLL_INITIAL_DELAY_SECONDS="1",
        POLL_MAX_DELAY_SECONDS="1",
        POLL_TIMEOUT_SECONDS="3",
    )
    app.handle(
        sqs_event(batch["id"]),
        context(),
    )

    stack.run_until(app, lambda: bool(stack.events_of("Batch Cancel Stalled")), timeout=20)
    # let any remaining check run: the chain must have ended, and nothing is announced again
    stack.run_until(app, lambda: stack.queue_depth() == 0, timeout=10)
    app.handle(sqs_event(batch["id"]), context())

    stalled = stack.events_of("Batch Cancel Stalled", batch["id"])
    assert len(stalled) == 1
    assert stalled[0]["detail"]["status"] == "cancelling"
    assert set(stalled[0]["detail"]) == OUTCOME_DETAIL_KEYS
    assert stack.events_of("Batch Cancelled") == []


def test_status_checks_are_delayed_with_a_growing_interval(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    batch = slow_emulator.seed(status="in_progress")
    app = stack.app(
        slow_emulator.base_url, POLL_INITIAL_DELAY_SECONDS="1", POLL_MAX_DELAY_SECONDS="4"
    )
    app.handle(sqs_event(batch["id"]), context())

    stack.run_until(
        app,
        lambda: len([r for r in slow_emulator.requests if r.method == "GET"]) >= 3,
        timeout=20,
    )

    gets = [r.at for r in slow_emulator.requests if r.method == "GET"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(gets)]
    # 1 s, then 2 s, then 4 s: each wait at least the scheduled delay, and growing
    assert gaps[0] >= 1.9
    assert gaps[1] >= 3.9


def test_repeated_commands_keep_a_single_chain_of_checks(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    batch = slow_emulator.seed(status="in_progress")
    app = stack.app(
        slow_emulator.base_url, POLL_INITIAL_DELAY_SECONDS="1", POLL_MAX_DELAY_SECONDS="1"
    )
    for _ in range(3):
        app.handle(sqs_event(batch["id"]), context())  # three chains started, two superseded

    stack.run_until(
        app,
        lambda: len([r for r in slow_emulator.requests if r.method == "GET"]) >= 6,
        timeout=20,
    )

    # After the superseded checks ran once, one check at a time is on the queue.
    assert stack.queue_depth() == 1
