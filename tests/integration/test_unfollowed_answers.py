"""Answers that used to leave a batch unfollowed (issue 11).

- A compatible gateway answers a cancel before the state changes (200, `in_progress`): the
  batch is followed by status checks like a `cancelling` one, through a check that still sees
  `in_progress` (the gateway lagging), to `cancelled`, announced once.
- A watch restarted after a stall can stall, and be announced, again: one stall per watch,
  none twice for the same watch, whatever is redelivered.
"""

from __future__ import annotations

import json
import time

from infra.openai_emulator import OpenAIEmulator
from tests.support import API_KEY, Stack, context, later, sqs_event

POLL = {
    "POLL_INITIAL_DELAY_SECONDS": "0",
    "POLL_MAX_DELAY_SECONDS": "0",
    "POLL_TIMEOUT_SECONDS": "60",
}


class ManualClock:
    """The emulator's clock, moved by the test: when a lagging cancel takes effect is exact."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def checks(stack: Stack) -> list[dict]:
    return [body for body in stack.drain_queue() if "check" in body]


def test_a_cancel_answered_in_progress_is_followed_to_cancelled_and_announced_once(
    stack: Stack,
) -> None:
    clock = ManualClock()
    # Cancels are answered `in_progress`, take effect 1 s later, and complete 1 s after that.
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=1.0, clock=clock) as emu:
        emu.cancel_lag_seconds = 1.0
        batch_id = emu.seed(status="in_progress")["id"]
        app = stack.app(emu.base_url, **POLL)

        app.handle(sqs_event(batch_id), context())
        seen = [stack.item(batch_id)["status"]]
        sent = []
        for step in range(3):
            bodies = checks(stack)
            sent.append(len(bodies))
            for body in bodies:
                app.handle(sqs_event(json.dumps(body), ids=[f"check-{step}"]), context())
            seen.append(stack.item(batch_id)["status"])
            clock.advance(1.0)
        left = checks(stack)

    # What the API said, each time: the cancel's answer, a check while the gateway lags, then
    # the cancel in effect.
    assert seen == ["in_progress", "in_progress", "cancelling", "cancelled"]
    assert sent == [1, 1, 1], "each answer short of terminal is followed by one status check"
    assert left == []
    outcomes = [e["detail-type"] for e in stack.events() if e["detail"].get("batch_id") == batch_id]
    assert outcomes == ["Batch Cancelled"]


def test_a_restarted_watch_stalls_and_is_announced_again_once_per_watch(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    # The batch stays `cancelling` for an hour; each watch times out after 10 s (run later).
    batch_id = slow_emulator.seed(status="in_progress")["id"]
    poll = {**POLL, "POLL_TIMEOUT_SECONDS": "10"}
    now, after_first, after_second = (
        stack.app(slow_emulator.base_url, clock=later(seconds), **poll) for seconds in (0, 20, 40)
    )

    now.handle(sqs_event(batch_id), context())
    [check_w1] = checks(stack)
    after_first.handle(sqs_event(json.dumps(check_w1), ids=["check-w1"]), context())
    first_stall = stack.item(batch_id)
    assert checks(stack) == []  # the chain ended with its stall

    after_first.handle(sqs_event(json.dumps({"batch_id": batch_id, "reason": "again"})), context())
    [check_w2] = checks(stack)
    after_second.handle(sqs_event(json.dumps(check_w2), ids=["check-w2"]), context())
    second_stall = stack.item(batch_id)

    # Both stalling checks delivered again, in both orders, as redeliveries and as copies:
    # nothing more is announced, and nothing follows the stalled watch.
    for name, body in [("w1", check_w1), ("w2", check_w2), ("w2", check_w2), ("w1", check_w1)]:
        for message_id in (f"check-{name}", f"check-{name}-copy"):
            after_second.handle(sqs_event(json.dumps(body), ids=[message_id]), context())
    leftover = checks(stack)

    stalls = stack.events_of("Batch Cancel Stalled", batch_id)
    assert first_stall["watch_id"] == check_w1["check"]["watch_id"]
    assert second_stall["watch_id"] == check_w2["check"]["watch_id"] != first_stall["watch_id"]
    assert len(stalls) == 2, "the restarted watch stalled and is announced again"
    assert [s["detail"]["status"] for s in stalls] == ["cancelling", "cancelling"]
    assert [s["detail"]["reason"] for s in stalls] == [None, "again"]
    assert leftover == []
    assert "follow_through" not in stack.item(batch_id)  # stalled and announced: settled
