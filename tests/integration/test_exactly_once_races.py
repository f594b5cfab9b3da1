"""Races and crashes against the announce protocol (docs/exactly-once.md), over real sockets.

The first four tests are the sequences an independent review used to publish an event twice
(or fork a status-check chain) on the code before the protocol; each failed there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from batch_canceller.app import Application
from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import (
    API_KEY,
    Crash,
    DyingSession,
    LocalAws,
    Stack,
    context,
    failed_ids,
    later,
    sqs_event,
)

VISIBILITY_TIMEOUT = 1020  # template.yaml's CancelQueue: a redelivery after a crash comes then


def at_once(*calls: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the handlers concurrently, as two Lambda containers would."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def crashed(stack: Stack, emulator: OpenAIEmulator, event: dict[str, Any], published: bool) -> None:
    """A container handles `event` and dies in PutEvents (before or after the bus took it)."""
    doomed = stack.app(emulator.base_url, session=DyingSession(published))
    with pytest.raises(Crash):
        doomed.handle(event, context())


# -- the review's four sequences -------------------------------------------------------------


def test_a_put_events_the_bus_accepted_but_answered_late_is_not_sent_again(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN a PutEvents that reaches the bus, whose answer is lost (the connection drops)
    batch = instant_emulator.seed(status="in_progress")
    proxy.add_rule(Rule(operation="Events.PutEvents", action="forward_then_drop", times=1))
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    event = sqs_event(batch["id"])

    # WHEN the function handles the message
    first = app.handle(event, context())

    # THEN the SDK did not send it again: published once, the message waits for its receipt
    assert proxy.calls["Events.PutEvents"] == 1
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert failed_ids(first) == {event["Records"][0]["messageId"]}

    # AND the receipt marks it announced, so the redelivery after the lease publishes nothing
    stack.run_until(app, lambda: "pending_events" not in (stack.item(batch["id"]) or {}))
    redelivered = stack.app(instant_emulator.base_url, clock=later(VISIBILITY_TIMEOUT))
    assert failed_ids(redelivered.handle(event, context())) == set()
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def test_one_message_delivered_twice_at_the_same_time_is_announced_once(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN one SQS message handed to two containers at once (standard queues may), with a
    # slow PutEvents so that both hold the owed record before either marks it
    batch = instant_emulator.seed(status="in_progress")
    proxy.add_rule(
        Rule(operation="Events.PutEvents", action="delay", delay_seconds=0.5, times=None)
    )
    event = sqs_event(batch["id"])
    apps = [stack.app(instant_emulator.base_url, aws_endpoint=proxy.url) for _ in range(2)]

    answers = at_once(*(lambda app=app: app.handle(event, context()) for app in apps))

    # THEN one copy publishes; the other finds the first copy's live claim and waits
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert sorted(len(failed_ids(answer)) for answer in answers) == [0, 1]


def test_a_redelivery_past_the_lease_racing_a_second_command_announces_once(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN a container that died after its write and before PutEvents: the event is owed and
    # claimed by that delivery, and nothing was published
    batch = instant_emulator.seed(status="in_progress")
    event = sqs_event(batch["id"])
    crashed(stack, instant_emulator, event, published=False)
    assert stack.events() == []

    # WHEN, after the visibility timeout, its redelivery and a second command for the same
    # batch race (PutEvents is slow, so both hold the owed record before either marks it)
    proxy.add_rule(
        Rule(operation="Events.PutEvents", action="delay", delay_seconds=0.5, times=None)
    )
    apps = [
        stack.app(
            instant_emulator.base_url, aws_endpoint=proxy.url, clock=later(VISIBILITY_TIMEOUT)
        )
        for _ in range(2)
    ]
    second_command = sqs_event(json.dumps({"batch_ids": [batch["id"]]}))
    answers = at_once(
        lambda: apps[0].handle(event, context()),
        lambda: apps[1].handle(second_command, context()),
    )

    # THEN exactly one of them won the lapsed claim with its conditional write and published
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert sorted(len(failed_ids(answer)) for answer in answers) == [0, 1]


def test_two_copies_of_a_status_check_at_once_do_not_fork_the_chain(
    local_aws: LocalAws, proxy: FaultProxy
) -> None:
    # GIVEN a batch that stays `cancelling`, and its first status check on the queue
    stack = local_aws.create_stack()
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=3600) as emulator:
        batch = emulator.seed(status="in_progress")
        immediate = {"POLL_INITIAL_DELAY_SECONDS": "0", "POLL_MAX_DELAY_SECONDS": "0"}
        stack.app(emulator.base_url, **immediate).handle(sqs_event(batch["id"]), context())
        [check_1] = stack.drain_queue()
        assert check_1["check"]["attempt"] == 1

        # WHEN two copies of check 1 are handled at once (an SQS duplicate; SendMessageBatch
        # is slow, so both copies are past their reads before either sends), and then every
        # check that follows is handled once, all of them at the same time
        proxy.add_rule(
            Rule(operation="SQS.SendMessageBatch", action="delay", delay_seconds=0.5, times=None)
        )
        apps = [stack.app(emulator.base_url, aws_endpoint=proxy.url, **immediate) for _ in range(4)]
        twins = json.dumps(check_1)
        at_once(lambda: handle(apps[0], twins), lambda: handle(apps[1], twins))
        after_twins = stack.drain_queue()
        rounds = []
        checks = after_twins
        for _ in range(2):
            bodies = [json.dumps(check) for check in checks]
            at_once(
                *(
                    lambda app=app, body=body: handle(app, body)
                    for app, body in zip(apps[: len(bodies)], bodies, strict=True)
                )
            )
            checks = stack.drain_queue()
            rounds.append([check["check"]["attempt"] for check in checks])

    # THEN the twins cost at most one extra check 2, and from there the chain goes on as one:
    # exactly one check 3, then exactly one check 4
    assert [check["check"]["attempt"] for check in after_twins] in ([2], [2, 2])
    assert rounds == [[3], [4]]


def handle(app: Application, body: str) -> dict[str, Any]:
    return app.handle(sqs_event(body), context())


# -- crashes at each point ---------------------------------------------------------------


def test_crash_before_put_events_is_announced_once_by_the_redelivery_after_the_lease(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    batch = instant_emulator.seed(status="in_progress")
    event = sqs_event(batch["id"])
    crashed(stack, instant_emulator, event, published=False)
    item = stack.item(batch["id"]) or {}
    assert item["status"] == "cancelled"
    assert item["pending_events"] == {"Batch Cancelled"}

    # Redelivered early (a short visibility timeout, or a duplicate), it waits for the lease.
    early = stack.app(instant_emulator.base_url).handle(event, context())
    assert failed_ids(early) == {event["Records"][0]["messageId"]}
    assert stack.events() == []

    # After the queue's visibility timeout the claim has lapsed: taken over, announced once.
    fresh = stack.app(instant_emulator.base_url, clock=later(VISIBILITY_TIMEOUT))
    assert failed_ids(fresh.handle(event, context())) == set()
    fresh.handle(event, context())
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def test_crash_after_put_events_is_not_announced_again_thanks_to_its_receipt(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a container that died between a successful PutEvents and the announced mark
    batch = instant_emulator.seed(status="in_progress")
    event = sqs_event(batch["id"])
    crashed(stack, instant_emulator, event, published=True)
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert (stack.item(batch["id"]) or {}).get("pending_events") == {"Batch Cancelled"}

    # WHEN SQS hands a new container the redelivered message and the event's receipt in one
    # batch, the receipt last, after the lease
    [receipt] = stack.drain_receipts()
    both = sqs_event(event["Records"][0]["body"], json.dumps(receipt), ids=["m1", "r1"])
    both["Records"][0]["messageId"] = event["Records"][0]["messageId"]
    answer = stack.app(instant_emulator.base_url, clock=later(VISIBILITY_TIMEOUT)).handle(
        both, context()
    )

    # THEN the receipt marks the event announced before the redelivery looks at it
    assert failed_ids(answer) == set()
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1
    assert "pending_events" not in (stack.item(batch["id"]) or {})


def test_without_receipts_the_same_crash_announces_twice(
    local_aws: LocalAws, instant_emulator: OpenAIEmulator
) -> None:
    # The one duplicate the protocol leaves: a crash after PutEvents and no receipt in time.
    stack = local_aws.create_stack(receipts=False)
    batch = instant_emulator.seed(status="in_progress")
    event = sqs_event(batch["id"])
    crashed(stack, instant_emulator, event, published=True)

    stack.app(instant_emulator.base_url, clock=later(VISIBILITY_TIMEOUT)).handle(event, context())

    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 2


def test_a_receipt_from_another_source_goes_to_the_dlq_and_marks_nothing(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    batch = instant_emulator.seed(status="in_progress")
    crashed(stack, instant_emulator, sqs_event(batch["id"]), published=True)
    forged = {**stack.drain_receipts()[0], "source": "someone-else"}

    answer = stack.app(instant_emulator.base_url).handle(sqs_event(json.dumps(forged)), context())

    assert failed_ids(answer) == set()
    assert (stack.item(batch["id"]) or {}).get("pending_events") == {"Batch Cancelled"}
    [dead] = stack.dead_letters()
    assert "someone-else" in dead["MessageAttributes"]["error_reason"]["StringValue"]


def test_two_invocations_racing_on_the_same_batches_announce_each_once(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN two containers handling different messages for the same batches at once, with a
    # slow PutEvents so that both reach the announce step while the events are still owed
    batches = [instant_emulator.seed(status="in_progress")["id"] for _ in range(20)]
    proxy.add_rule(
        Rule(operation="Events.PutEvents", action="delay", delay_seconds=0.3, times=None)
    )
    apps = [stack.app(instant_emulator.base_url, aws_endpoint=proxy.url) for _ in range(2)]
    body = json.dumps({"batch_ids": batches})
    events = [sqs_event(body), sqs_event(body)]

    answers = at_once(
        *(lambda a=a, e=e: a.handle(e, context()) for a, e in zip(apps, events, strict=True))
    )

    # THEN every batch is announced exactly once, and nothing is left owed
    for batch_id in batches:
        assert len(stack.events_of("Batch Cancelled", batch_id)) == 1
        assert "pending_events" not in (stack.item(batch_id) or {})
    # AND a message that found another's live claim came back later to find nothing owed
    waited = [e for e, answer in zip(events, answers, strict=True) if failed_ids(answer)]
    back = stack.app(instant_emulator.base_url, clock=later(VISIBILITY_TIMEOUT))
    assert all(failed_ids(back.handle(e, context())) == set() for e in waited)
    assert len(stack.events_of("Batch Cancelled")) == 20
