"""Each transition is announced once: through duplicates, stale answers, PutEvents faults and a
deadline (the protocol: docs/exactly-once.md; races and crashes: test_exactly_once_races.py)."""

from __future__ import annotations

import json

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, context, failed_ids, later, sqs_event

# A context of 60 s plus the 60 s receipt grace: a claim written now lapses within this.
PAST_THE_LEASE = 121


def test_duplicate_delivery_announces_nothing_new(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    batch = instant_emulator.seed(status="in_progress")
    app = stack.app(instant_emulator.base_url)
    event = sqs_event(batch["id"])

    app.handle(event, context())
    app.handle(event, context())  # SQS delivers the same message again
    app.handle(sqs_event(batch["id"]), context())  # and someone asks again

    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert (stack.item(batch["id"]) or {}).get("status") == "cancelled"


def test_duplicates_inside_one_sqs_batch_announce_once(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    batch = instant_emulator.seed(status="in_progress")
    app = stack.app(instant_emulator.base_url)

    body = json.dumps({"batch_ids": [batch["id"], batch["id"]]})
    answer = app.handle(sqs_event(batch["id"], body, batch["id"]), context())

    # One run announces the event once for all three messages that owe it.
    assert failed_ids(answer) == set()
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def test_put_events_http_500_keeps_the_claim_and_the_redelivery_after_the_lease_announces(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN EventBridge answering 500 to every PutEvents: the outcome of each is not known
    batch = instant_emulator.seed(status="in_progress")
    proxy.add_rule(Rule(operation="Events.PutEvents", action="http_error", status=500, times=None))
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    event = sqs_event(batch["id"])

    # WHEN the cancel succeeds but the event's PutEvents fails
    first = app.handle(event, context())

    # THEN the message comes back, the record keeps the event owed under this delivery's claim,
    # and it was tried once: no SDK retry, no resend of an outcome that is not known
    assert failed_ids(first) == {event["Records"][0]["messageId"]}
    assert proxy.calls["Events.PutEvents"] == 1
    item = stack.item(batch["id"]) or {}
    assert item["status"] == "cancelled"
    assert item["pending_events"] == {"Batch Cancelled"}
    assert item["claim Batch Cancelled"]["token"].startswith(event["Records"][0]["messageId"])

    # AND a redelivery before the lease ends waits (a receipt could still come)
    proxy.clear_rules()
    early = stack.app(instant_emulator.base_url, clock=later(30)).handle(event, context())
    assert failed_ids(early) == {event["Records"][0]["messageId"]}
    assert stack.events() == []

    # AND the one after it takes the lapsed claim over and announces exactly once
    after = stack.app(instant_emulator.base_url, clock=later(PAST_THE_LEASE))
    assert failed_ids(after.handle(event, context())) == set()
    after.handle(event, context())
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert "pending_events" not in (stack.item(batch["id"]) or {})


def test_a_throttled_put_events_is_resent_within_the_invocation(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN EventBridge throttling the first two PutEvents (a 400: nothing was published)
    batch = instant_emulator.seed(status="in_progress")
    proxy.add_rule(Rule(operation="Events.PutEvents", action="throttle", times=2))
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)

    answer = app.handle(sqs_event(batch["id"]), context())

    # THEN the third attempt goes through: announced once, the message done
    assert failed_ids(answer) == set()
    assert proxy.calls["Events.PutEvents"] == 3
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert "pending_events" not in (stack.item(batch["id"]) or {})


def test_a_put_events_refused_three_times_releases_its_claim_so_the_redelivery_need_not_wait(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    batch = instant_emulator.seed(status="in_progress")
    proxy.add_rule(Rule(operation="Events.PutEvents", action="throttle", times=3))
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    event = sqs_event(batch["id"])

    first = app.handle(event, context())

    assert failed_ids(first) == {event["Records"][0]["messageId"]}
    item = stack.item(batch["id"]) or {}
    assert item["pending_events"] == {"Batch Cancelled"}
    assert "claim Batch Cancelled" not in item  # released: nothing was published

    # The redelivery, at once, claims the free event and announces it.
    assert failed_ids(app.handle(event, context())) == set()
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def test_entries_put_events_refused_are_resent_and_each_batch_announced_once(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN the first PutEvents refusing about half of its entries (FailedEntryCount > 0)
    batches = [instant_emulator.seed(status="in_progress") for _ in range(6)]
    proxy.add_rule(
        Rule(
            operation="Events.PutEvents",
            action="put_events_partial",
            fail_fraction=0.5,
            seed=7,
            times=1,
        )
    )
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)

    answer = app.handle(sqs_event(*[b["id"] for b in batches]), context())

    # THEN the refused entries went again in a second PutEvents: every batch announced once
    assert failed_ids(answer) == set()
    assert proxy.calls["Events.PutEvents"] == 2
    assert proxy.faults_injected["Events.PutEvents:put_events_partial"] == 1
    for batch in batches:
        assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def test_deadline_returns_early_and_what_was_not_started_goes_on_as_a_message(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a slow API and a command too large for the time left
    batches = instant_emulator.seed_many(12, status="in_progress")
    instant_emulator.latency_seconds = 0.4
    app = stack.app(instant_emulator.base_url, MAX_IN_FLIGHT="2")
    event = sqs_event(json.dumps({"batch_ids": [b["id"] for b in batches], "reason": "cut"}))
    short = context(seconds=7.5)  # 5 s are reserved, ~2.5 s usable: not enough for all 12

    answer = app.handle(event, short)

    # THEN it answers in time; the message is done, and the IDs it did not start are queued
    # as a command of their own (back whole, a message bigger than one invocation would
    # start from its first ID every time and never finish)
    assert short.get_remaining_time_in_millis() > 0, "returned before the deadline"
    assert failed_ids(answer) == set()
    done_first = {e["detail"]["batch_id"] for e in stack.events_of("Batch Cancelled")}
    assert 0 < len(done_first) < 12
    [rest] = stack.drain_queue()
    assert set(rest["batch_ids"]) == {b["id"] for b in batches} - done_first
    assert rest["reason"] == "cut"

    # WHEN that command is handled with enough time
    instant_emulator.latency_seconds = 0.0
    again = app.handle(sqs_event(json.dumps(rest)), context())

    # THEN every batch is cancelled and announced exactly once
    assert failed_ids(again) == set()
    for batch in batches:
        assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
