"""The reconciler's index and its runs, against sequences an adversarial review of issue 11
found (each test failed before its fix): a cancel asked for again after a stall whose process
died before it started the new watch; a run with many records to settle and a slow DynamoDB;
two marks of one record's two owed events at the same time."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest

from batch_canceller.event_ledger import EventLedger
from batch_canceller.item_table import ItemTable
from batch_canceller.records import iso, utc_now
from batch_canceller.store import BatchStore
from infra.fault_proxy import FaultProxy
from infra.fault_proxy.faults import Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Crash, Stack, client, context, failed_ids, later, sqs_event


def _put(stack: Stack, attributes: dict[str, Any]) -> None:
    client("dynamodb", stack.endpoint).put_item(TableName=stack.table_name, Item=attributes)


def test_a_cancel_asked_for_again_after_a_stall_that_died_before_its_watch_is_followed(
    stack: Stack, slow_emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watch W1 of a `cancelling` batch times out: its stall is announced and the settling
    mark takes the record out of the index. Later a direct invoke cancels the batch again:
    the POST is made, save_batch writes `cancelling` and sets `follow_through` (keeping
    watch_id W1), and the function dies before start_watch (no message comes back for a
    direct invoke: the case the reconciler exists for). The reconciler sees
    `stalled_watch == watch_id` and nothing owed -> SETTLE, and settle()'s condition holds:
    the record leaves the index. The batch then becomes `cancelled` at the API and no check
    ever looks again: no `Batch Cancelled`, the record says `cancelling` for good."""
    batch_id = slow_emulator.seed(status="in_progress")["id"]
    url = slow_emulator.base_url
    stack.app(url).handle(sqs_event(batch_id), context())
    # the chain, run a day later: the watch (POLL_TIMEOUT_SECONDS 86400) stalls
    day_later = stack.app(url, clock=later(86400 + 10))
    stack.run_until(
        day_later,
        lambda: (
            bool(stack.events_of("Batch Cancel Stalled", batch_id)) and stack.queue_depth() == 0
        ),
        timeout=30,
    )
    stalled = stack.item(batch_id)
    print(
        "after stall:",
        {
            k: stalled.get(k)
            for k in ("status", "watch_id", "stalled_watch", "follow_through", "announced_events")
        },
    )
    assert "follow_through" not in stalled

    def die(*_a: Any, **_k: Any) -> Any:
        raise Crash("the function dies before start_watch")

    monkeypatch.setattr(BatchStore, "start_watch", die)
    with pytest.raises(Crash):
        stack.app(url, clock=later(86400 + 20)).handle({"batch_id": batch_id}, context())
    monkeypatch.undo()
    mid = stack.item(batch_id)
    print(
        "after dying cancel:",
        {k: mid.get(k) for k in ("status", "watch_id", "stalled_watch", "follow_through")},
    )
    assert mid["follow_through"] == "open"

    slow_emulator.seed(batch_id=batch_id, status="cancelled")  # the cancel took effect
    reconciling = stack.app(url, clock=later(86400 + 20 + 3600))
    summary = reconciling.handle({"reconcile": {}}, context())["reconcile"]
    print("reconcile:", summary)
    for _ in range(3):
        for body in stack.drain_queue():
            reconciling.handle(sqs_event(json.dumps(body)), context())
    item = stack.item(batch_id)
    print("final:", {k: item.get(k) for k in ("status", "follow_through", "announced_events")})
    assert stack.events_of("Batch Cancelled", batch_id), (
        f"the re-requested cancel is never followed: reconcile {summary}, record status "
        f"{item['status']!r}, follow_through {item.get('follow_through')!r}, "
        f"API says {slow_emulator.get(batch_id)['status']!r}"
    )


def test_a_reconcile_run_stays_within_its_deadline_and_stops_there(
    stack: Stack, slow_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """100 records in the index that need only settling (terminal, nothing owed), DynamoDB
    writes at 100 ms, the scheduled reconcile arriving from the queue in an 8 s invocation.
    Before: one settle after the other with no deadline check (the run took 15 s of 8);
    then, with the AWS deadline hooks, a settle refused for time failed the whole run (its
    message came back to fail the same way until the DLQ). Now it stops, and says so."""
    old = iso(utc_now() - timedelta(hours=2))
    for n in range(100):
        _put(
            stack,
            {
                "batch_id": {"S": f"batch_settle{n:04d}"},
                "status": {"S": "cancelled"},
                "status_rank": {"N": "5"},
                "updated_at": {"S": old},
                "follow_through": {"S": "open"},
                "announced_events": {"SS": ["Batch Cancelled"]},
            },
        )
    app = stack.app(slow_emulator.base_url, aws_endpoint=proxy.url)
    proxy.add_rule(
        Rule(operation="DynamoDB.UpdateItem", action="delay", delay_seconds=0.1, times=None)
    )
    ctx = context(8.0)
    answer = app.handle(sqs_event(json.dumps({"reconcile": {}})), ctx)
    assert ctx.get_remaining_time_in_millis() > 0, "the reconcile ran past its deadline"
    assert failed_ids(answer) == set(), "the reconcile failed instead of stopping"
    settled = sum(
        "follow_through" not in (stack.item(f"batch_settle{n:04d}") or {}) for n in range(100)
    )
    assert 0 < settled < 100


def test_marking_the_last_owed_event_always_takes_the_record_out_of_the_index(
    stack: Stack, monkeypatch: Any
) -> None:
    """A `cancelled` record owes two events (its watch's stall, then `Batch Cancelled` once a
    later check saw the terminal status). Two invocations mark them at the same time. Each
    mark_announced first tries the settling write (`size(pending_events) = 1`): both see two
    owed, both fail; then each does the plain write. The record ends terminal with nothing
    owed but keeps `follow_through`: no write path removes it (only a later reconcile's
    settle does), so the index holds a settled record; the docs say the settling mark
    removes it in the same write."""
    batch_id = "batch_marksrace0001"
    client("dynamodb", stack.endpoint).put_item(
        TableName=stack.table_name,
        Item={
            "batch_id": {"S": batch_id},
            "status": {"S": "cancelled"},
            "status_rank": {"N": "5"},
            "updated_at": {"S": "2026-01-01T00:00:00.000Z"},
            "watch_id": {"S": "w1"},
            "stalled_watch": {"S": "w1"},
            "follow_through": {"S": "open"},
            "pending_events": {"SS": ["Batch Cancel Stalled", "Batch Cancelled"]},
        },
    )
    both_tried = threading.Barrier(2, timeout=10)
    original = ItemTable._update

    def update(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if "follow_through" in args[1]:  # the settling attempt
            both_tried.wait()  # the two invocations interleave here
        return result

    monkeypatch.setattr(ItemTable, "_update", update)
    ledger = EventLedger(client("dynamodb", stack.endpoint), stack.table_name)
    marks = [
        threading.Thread(target=ledger.mark_announced, args=(batch_id, event))
        for event in ("Batch Cancel Stalled", "Batch Cancelled")
    ]
    for t in marks:
        t.start()
    for t in marks:
        t.join()
    item = stack.item(batch_id)
    print("after both marks:", item)
    assert "pending_events" not in item
    assert "follow_through" not in item, (
        f"settled (terminal, nothing owed) yet still in the index: {item}"
    )
