"""Each transition is announced once: through duplicates, stale answers, crashes and PutEvents faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from batch_canceller.announcer import Announcement
from batch_canceller.app import Application
from batch_canceller.processor import RECEIPT_GRACE_SECONDS
from batch_canceller.records import utc_now
from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import API_KEY, LocalAws, Stack, context, failed_ids, sqs_event

VISIBILITY_TIMEOUT = 1020  # template.yaml's CancelQueue


@pytest.fixture
def instant_emulator() -> Iterator[OpenAIEmulator]:
    """Cancels take effect at once, so one invocation reaches `cancelled`."""
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=0) as emu:
        yield emu


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=moto_url) as running:
        yield running


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

    assert failed_ids(answer) == set()
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def test_put_events_http_500_loses_nothing_and_redelivery_announces_once(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN EventBridge answering 500 to every PutEvents
    batch = instant_emulator.seed(status="in_progress")
    proxy.add_rule(Rule(operation="Events.PutEvents", action="http_error", status=500, times=None))
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    event = sqs_event(batch["id"])

    # WHEN the cancel succeeds but the event cannot be published
    first = app.handle(event, context())

    # THEN the message comes back, the record keeps the event as owed
    assert failed_ids(first) == {event["Records"][0]["messageId"]}
    assert stack.events() == []
    item = stack.item(batch["id"])
    assert item is not None
    assert item["status"] == "cancelled"
    assert item["pending_events"] == {"Batch Cancelled"}

    # AND once EventBridge recovers, the redelivery announces it exactly once
    proxy.clear_rules()
    second = app.handle(event, context())
    app.handle(event, context())
    assert failed_ids(second) == set()
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert "pending_events" not in (stack.item(batch["id"]) or {})


def test_put_events_failed_entry_count_is_a_failure(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    batches = [instant_emulator.seed(status="in_progress") for _ in range(3)]
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
    event = sqs_event(*[b["id"] for b in batches])

    first = app.handle(event, context())

    # Some entries were refused: exactly those messages come back.
    delivered = {e["detail"]["batch_id"] for e in stack.events_of("Batch Cancelled")}
    refused = {b["id"] for b in batches} - delivered
    assert refused
    by_id = {r["body"]: r["messageId"] for r in event["Records"]}
    assert failed_ids(first) == {by_id[batch_id] for batch_id in refused}

    # SQS redelivers exactly the messages reported failed (same message IDs).
    redelivery = {"Records": [r for r in event["Records"] if r["body"] in refused]}
    app.handle(redelivery, context())
    for batch in batches:
        assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


class _Crash(BaseException):
    """The process dying: nothing after it runs, not even `except Exception` handlers."""


class _CrashingPublisher:
    def publish(self, announcements: list[Announcement], *args: object) -> list[bool]:
        raise _Crash


def test_crash_between_write_and_put_events_is_announced_on_redelivery(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    batch = instant_emulator.seed(status="in_progress")
    doomed = stack.app(instant_emulator.base_url)
    doomed.processor._publisher = _CrashingPublisher()  # type: ignore[assignment]
    event = sqs_event(batch["id"])

    with pytest.raises(_Crash):
        doomed.handle(event, context())
    assert (stack.item(batch["id"]) or {}).get("status") == "cancelled"
    assert stack.events() == []

    # Redelivered at once (a short visibility timeout), it waits for a receipt that may come.
    early = stack.app(instant_emulator.base_url).handle(event, context())
    assert failed_ids(early) == {event["Records"][0]["messageId"]}
    assert stack.events() == []

    # A new container gets the redelivered message, after the queue's visibility timeout (its
    # earlier claim is then long past the wait for a receipt, which cannot come here).
    fresh = stack.app(instant_emulator.base_url)
    fresh.processor._clock = lambda: utc_now() + timedelta(seconds=VISIBILITY_TIMEOUT)
    answer = fresh.handle(event, context())
    fresh.handle(event, context())

    assert failed_ids(answer) == set()
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def _die_after_put_events(app: Application) -> None:
    """PutEvents succeeds, then the process dies before the event is marked announced."""

    def crash(*_: object) -> None:
        raise _Crash

    app.processor._store.mark_announced = crash  # type: ignore[method-assign]


def _redelivered_after_crash(stack: Stack, emulator: OpenAIEmulator) -> tuple[str, dict[str, Any]]:
    batch = emulator.seed(status="in_progress")
    doomed = stack.app(emulator.base_url)
    _die_after_put_events(doomed)
    event = sqs_event(batch["id"])
    with pytest.raises(_Crash):
        doomed.handle(event, context())
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1  # it did go out
    assert (stack.item(batch["id"]) or {}).get("pending_events") == {"Batch Cancelled"}
    return batch["id"], event


def test_crash_after_put_events_is_not_announced_again_thanks_to_its_receipt(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a container that died between a successful PutEvents and the announced mark
    batch_id, event = _redelivered_after_crash(stack, instant_emulator)

    # WHEN SQS hands a new container the redelivered message and the event's receipt in one
    # batch, the receipt last
    receipts = stack.drain_receipts()
    assert [r["detail"]["batch_id"] for r in receipts] == [batch_id]
    both = sqs_event(event["Records"][0]["body"], json.dumps(receipts[0]), ids=["m1", "r1"])
    both["Records"][0]["messageId"] = event["Records"][0]["messageId"]
    answer = stack.app(instant_emulator.base_url).handle(both, context())

    # THEN the receipt marks the event announced before the redelivery looks at it
    assert failed_ids(answer) == set()
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1
    assert "pending_events" not in (stack.item(batch_id) or {})


def test_a_redelivery_ahead_of_the_receipt_waits_for_it(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a container that died between a successful PutEvents and the announced mark
    batch_id, event = _redelivered_after_crash(stack, instant_emulator)
    app = stack.app(instant_emulator.base_url)

    # WHEN the redelivery comes before the receipt (a short visibility timeout)
    early = app.handle(event, context())

    # THEN it announces nothing and comes back later
    assert failed_ids(early) == {event["Records"][0]["messageId"]}
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1

    # AND once the receipt is handled, the next redelivery finds nothing owed
    stack.run_until(app, lambda: "pending_events" not in (stack.item(batch_id) or {}))
    later = app.handle(event, context())
    assert failed_ids(later) == set()
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1


def test_without_receipts_the_same_crash_announces_twice(
    local_aws: LocalAws, instant_emulator: OpenAIEmulator
) -> None:
    # The residual that receipts close: at-least-once, because PutEvents is not idempotent.
    stack = local_aws.create_stack(receipts=False)
    batch_id, event = _redelivered_after_crash(stack, instant_emulator)
    app = stack.app(instant_emulator.base_url)
    # The redelivery waits for a receipt for RECEIPT_GRACE_SECONDS; none comes.
    app.processor._clock = lambda: utc_now() + timedelta(seconds=RECEIPT_GRACE_SECONDS + 1)

    app.handle(event, context())

    assert len(stack.events_of("Batch Cancelled", batch_id)) == 2


def test_a_receipt_from_another_source_goes_to_the_dlq_and_marks_nothing(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    batch_id, _ = _redelivered_after_crash(stack, instant_emulator)
    forged = {**stack.drain_receipts()[0], "source": "someone-else"}

    answer = stack.app(instant_emulator.base_url).handle(sqs_event(json.dumps(forged)), context())

    assert failed_ids(answer) == set()
    assert (stack.item(batch_id) or {}).get("pending_events") == {"Batch Cancelled"}
    [dead] = stack.dead_letters()
    assert "someone-else" in dead["MessageAttributes"]["error_reason"]["StringValue"]


def test_deadline_returns_early_with_the_rest_reported_and_nothing_lost(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a slow API and a command too large for the time left
    batches = instant_emulator.seed_many(12, status="in_progress")
    instant_emulator.latency_seconds = 0.4
    app = stack.app(instant_emulator.base_url, MAX_IN_FLIGHT="2")
    event = sqs_event(json.dumps({"batch_ids": [b["id"] for b in batches]}))
    short = context(seconds=7.5)  # 5 s are reserved, ~2.5 s usable: not enough for all 12

    answer = app.handle(event, short)

    assert short.get_remaining_time_in_millis() > 0, "returned before the deadline"
    assert failed_ids(answer) == {event["Records"][0]["messageId"]}
    done_first = {e["detail"]["batch_id"] for e in stack.events_of("Batch Cancelled")}
    assert 0 < len(done_first) < 12

    # WHEN the message comes back with enough time
    instant_emulator.latency_seconds = 0.0
    again = app.handle(event, context())

    # THEN every batch is cancelled and announced exactly once
    assert failed_ids(again) == set()
    for batch in batches:
        assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def test_two_invocations_racing_on_the_same_batches_announce_each_once(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN two containers handling different messages for the same batches at once, with a
    # slow PutEvents so that both reach the announce step while the event is still owed
    batches = [instant_emulator.seed(status="in_progress")["id"] for _ in range(20)]
    proxy.add_rule(
        Rule(operation="Events.PutEvents", action="delay", delay_seconds=0.3, times=None)
    )
    apps = [stack.app(instant_emulator.base_url, aws_endpoint=proxy.url) for _ in range(2)]
    body = json.dumps({"batch_ids": batches})

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda app: app.handle(sqs_event(body), context()), apps))

    # THEN every batch is announced exactly once, and nothing is left owed
    assert all(failed_ids(answer) == set() for answer in answers)
    for batch_id in batches:
        assert len(stack.events_of("Batch Cancelled", batch_id)) == 1
        assert "pending_events" not in (stack.item(batch_id) or {})
