"""The reconciler (issue 11, "nothing waits forever"): follow-through that lives in no queue
message any more is requeued by a scheduled `{"reconcile": {}}`, and every batch still ends
terminal with exactly one event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.openai_emulator import OpenAIEmulator
from tests.support import (
    Crash,
    DyingSession,
    Stack,
    client,
    context,
    later,
    sqs_event,
)

RECONCILE = json.dumps({"reconcile": {}})


def outcomes_of(stack: Stack, batch_id: str) -> list[str]:
    return [e["detail-type"] for e in stack.events() if e["detail"].get("batch_id") == batch_id]


def test_batches_whose_checks_were_purged_still_end_cancelled_once_each(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    # GIVEN five batches cancelled (`cancelling` for a second) whose status checks are lost:
    # the queue is purged after the cancels are stored, before any check runs
    ids = [batch["id"] for batch in emulator.seed_many(5)]
    app = stack.app(emulator.base_url)
    app.handle(sqs_event(json.dumps({"batch_ids": ids, "reason": "cutoff"})), context())
    stored = {batch_id: stack.item(batch_id)["status"] for batch_id in ids}
    client("sqs", stack.endpoint).purge_queue(QueueUrl=stack.queue_url)
    purged_depth = stack.queue_depth()

    # WHEN the reconcile schedule's message is handled, once the chains are overdue (twice
    # POLL_MAX_DELAY_SECONDS without a step), and the queue is then drained
    reconciling = stack.app(emulator.base_url, clock=later(60))
    answer = reconciling.handle(sqs_event(RECONCILE, ids=["reconcile-1"]), context())
    requeued = stack.queued_bodies()
    stack.run_until(
        app,
        lambda: all(outcomes_of(stack, b) for b in ids) and stack.queue_depth() == 0,
        timeout=30,
    )
    again = reconciling.handle({"reconcile": {}}, context())

    # THEN every batch is cancelled and announced once, and nothing is left to follow
    assert set(stored.values()) == {"cancelling"}
    assert purged_depth == 0
    assert answer == {"batchItemFailures": []}
    assert sorted(body["check"]["batch_id"] for body in requeued if "check" in body) == sorted(ids)
    for batch_id in ids:
        item = stack.item(batch_id)
        assert item["status"] == "cancelled"
        assert outcomes_of(stack, batch_id) == ["Batch Cancelled"]
        assert "follow_through" not in item
    assert again["reconcile"]["examined"] == 0
    assert stack.dead_letters() == []


def test_an_event_whose_publisher_died_is_announced_after_a_reconcile_once(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a direct invoke that stored `cancelled`, owed and claimed its event, and died
    # before PutEvents: no message will ever come back for it
    batch_id = instant_emulator.seed(status="in_progress")["id"]
    doomed = stack.app(instant_emulator.base_url, session=DyingSession(published=False))
    with pytest.raises(Crash):
        doomed.handle({"batch_id": batch_id}, context())
    owed = stack.item(batch_id)

    # WHEN the reconciler runs after the claim's lease, and its work is handled (twice: the
    # message delivered again), and the reconciler runs again
    after_lease = stack.app(instant_emulator.base_url, clock=later(600))
    first = after_lease.handle({"reconcile": {}}, context())
    bodies = stack.drain_queue()
    for body in bodies * 2:
        after_lease.handle(sqs_event(json.dumps(body), ids=["requeued"]), context())
    second = after_lease.handle({"reconcile": {}}, context())

    # THEN the event is published once and the record leaves the index
    assert owed["pending_events"] == {"Batch Cancelled"}
    assert owed["follow_through"] == "open"
    assert first["reconcile"]["requeued"] == 1
    assert [body["check"]["batch_id"] for body in bodies] == [batch_id]
    assert outcomes_of(stack, batch_id) == ["Batch Cancelled"]
    assert "follow_through" not in stack.item(batch_id)
    assert second["reconcile"] == {
        "examined": 0,
        "requeued": 0,
        "requeue_failed": 0,
        "settled": 0,
        "restarted": 0,
        "waiting": 0,
        "stopped": "complete",
    }


def test_a_live_chain_and_a_live_claim_are_left_alone(
    stack: Stack, instant_emulator: OpenAIEmulator, emulator: OpenAIEmulator
) -> None:
    # GIVEN a batch whose chain just took its step, and one whose event is claimed by a
    # publisher that may still be at work
    followed = emulator.seed(status="in_progress")["id"]
    stack.app(emulator.base_url).handle(sqs_event(followed), context())
    claimed = instant_emulator.seed(status="in_progress")["id"]
    doomed = stack.app(instant_emulator.base_url, session=DyingSession(published=False))
    with pytest.raises(Crash):
        doomed.handle({"batch_id": claimed}, context())

    # WHEN the reconciler runs while both are recent (in this run's own time)
    answer = stack.app(emulator.base_url).handle({"reconcile": {}}, context())

    # THEN it does not even look at them, and requeues nothing
    assert {stack.item(b)["follow_through"] for b in (followed, claimed)} == {"open"}
    assert (answer["reconcile"]["examined"], answer["reconcile"]["requeued"]) == (0, 0)


def test_a_reconcile_is_not_taken_from_the_event_bus(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    app = stack.app(emulator.base_url)
    bus_event = {
        "version": "0",
        "id": "evt-1",
        "detail-type": "Batch Cancel Requested",
        "source": "com.example.ops",
        "time": "2026-12-01T00:00:00Z",
        "detail": {"reconcile": {}},
    }
    direct = app.handle(bus_event, context())
    through_queue = app.handle(sqs_event(json.dumps(bus_event)), context())
    bad = app.handle(sqs_event(json.dumps({"reconcile": {"max_records": 0}})), context())

    reasons = sorted(
        m["MessageAttributes"]["error_reason"]["StringValue"] for m in stack.dead_letters()
    )
    assert direct["status"] == "rejected"
    assert through_queue == bad == {"batchItemFailures": []}
    assert len(reasons) == 3
    assert any("max_records" in reason for reason in reasons)
    assert any("event bus" in reason for reason in reasons)


def test_the_sample_event_runs_a_reconcile(stack: Stack, emulator: OpenAIEmulator) -> None:
    sample = Path(__file__).resolve().parents[2] / "events" / "direct-reconcile.json"
    answer = stack.app(emulator.base_url).handle(json.loads(sample.read_text()), context())
    assert answer["status"] == "done"
    assert answer["reconcile"]["stopped"] == "complete"
