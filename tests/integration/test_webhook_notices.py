"""Webhook notices on the CancelQueue (`{"webhook": {...}}`, sent by the webhook receiver after
it verified OpenAI's signature), through the real handler, moto and the OpenAI emulator: one
more trigger of the store-then-announce path a status check takes, never a second effect."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batch_canceller.app import Application
from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.integration.test_exactly_once_races import VISIBILITY_TIMEOUT, at_once
from tests.support import Stack, context, failed_ids, later, sqs_event

WEBHOOKS = {"WEBHOOKS_ENABLED": "true", "WEBHOOK_FIRST_CHECK_DELAY_SECONDS": "1"}


def notice(batch_id: str, kind: str = "batch.cancelled", event_id: str = "evt_1") -> str:
    return json.dumps(
        {
            "webhook": {
                "delivery_id": "msg_" + event_id,
                "event_id": event_id,
                "type": kind,
                "batch_id": batch_id,
                "created_at": 1733000000,
            }
        }
    )


def gets(emulator: OpenAIEmulator, batch_id: str) -> int:
    """How many `GET /batches/{id}` the function sent for the batch so far."""
    path = f"/v1/batches/{batch_id}"
    return sum(1 for r in emulator.requests if r.method == "GET" and r.path == path)


def cancelling(stack: Stack, emulator: OpenAIEmulator, app: Application) -> str:
    """A batch the function cancelled and now follows: stored `cancelling`, its first check
    on the queue; then OpenAI finishes the cancel (what its webhook then says)."""
    batch_id = str(emulator.seed(status="in_progress")["id"])
    assert failed_ids(app.handle(sqs_event(batch_id), context())) == set()
    assert (stack.item(batch_id) or {})["status"] == "cancelling"
    emulator.seed(batch_id, status="cancelled")
    return batch_id


def test_a_notice_for_a_batch_with_no_record_stores_announces_and_asks_nothing(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    batch_id = str(slow_emulator.seed(status="cancelled")["id"])
    app = stack.app(slow_emulator.base_url, **WEBHOOKS)

    answer = app.handle(sqs_event(notice(batch_id)), context())

    assert failed_ids(answer) == set()
    assert stack.item(batch_id) is None
    assert slow_emulator.requests == []
    assert stack.events() == []
    assert app.tally.counts["WebhooksForUnknownBatches"] == 1


def test_a_notice_stores_the_cancelled_batch_and_announces_it_once(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    # GIVEN a batch stored `cancelling`, which OpenAI has since cancelled
    app = stack.app(slow_emulator.base_url, **WEBHOOKS)
    batch_id = cancelling(stack, slow_emulator, app)
    slow_emulator.clear_requests()

    # WHEN its webhook's notice arrives
    answer = app.handle(sqs_event(notice(batch_id)), context())

    # THEN one GET, the record is cancelled (by the webhook), and one Batch Cancelled is out
    assert failed_ids(answer) == set()
    assert gets(slow_emulator, batch_id) == 1
    item = stack.item(batch_id) or {}
    assert item["status"] == "cancelled"
    assert item["ended_by"] == "webhook"
    assert item["webhook_events"] == {"evt_1"}
    assert "pending_events" not in item
    [event] = stack.events_of("Batch Cancelled", batch_id)
    assert event["detail"]["status"] == "cancelled"

    # AND a replay (the same delivery again, or the same event in a new delivery) has no
    # second effect: no GET, no write, no event
    before = stack.item(batch_id)
    replays = sqs_event(notice(batch_id), notice(batch_id).replace("msg_evt_1", "msg_other"))
    assert failed_ids(app.handle(replays, context())) == set()
    assert gets(slow_emulator, batch_id) == 1
    assert stack.item(batch_id) == before
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1
    assert app.tally.counts["WebhooksAlreadyKnown"] == 2


def test_two_copies_of_a_notice_at_once_announce_once(
    stack: Stack, slow_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    # GIVEN a cancelled batch stored `cancelling`, and a slow PutEvents so that both copies
    # hold the owed record before either marks it announced
    batch_id = cancelling(stack, slow_emulator, stack.app(slow_emulator.base_url, **WEBHOOKS))
    proxy.add_rule(
        Rule(operation="Events.PutEvents", action="delay", delay_seconds=0.5, times=None)
    )
    apps = [stack.app(slow_emulator.base_url, aws_endpoint=proxy.url, **WEBHOOKS) for _ in "ab"]
    event = sqs_event(notice(batch_id))

    # WHEN one SQS message is handled by two containers at once
    answers = at_once(*(lambda app=app: app.handle(event, context()) for app in apps))

    # THEN one Batch Cancelled; a copy that found the other's live claim comes back later,
    # after the lease, to find nothing owed
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1
    waited = [answer for answer in answers if failed_ids(answer)]
    back = stack.app(slow_emulator.base_url, clock=later(VISIBILITY_TIMEOUT), **WEBHOOKS)
    for _ in waited:
        assert failed_ids(back.handle(event, context())) == set()
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1
    assert "pending_events" not in (stack.item(batch_id) or {})


def test_a_batch_ended_by_a_webhook_gets_no_status_check_get_afterwards(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    # GIVEN a batch ended by its webhook while its first status check waits on the queue
    app = stack.app(slow_emulator.base_url, **WEBHOOKS)
    batch_id = cancelling(stack, slow_emulator, app)
    assert failed_ids(app.handle(sqs_event(notice(batch_id)), context())) == set()
    slow_emulator.clear_requests()

    # WHEN the queue (the pending check, the receipts) is handled until it is empty
    later_on = stack.app(slow_emulator.base_url, **WEBHOOKS)
    stack.run_until(later_on, lambda: stack.queue_depth() == 0)

    # THEN the check ended without asking the API, and sent no next check
    assert slow_emulator.requests == []
    assert later_on.tally.counts["StatusChecksSuperseded"] == 1
    assert later_on.tally.counts.get("StatusChecksScheduled", 0) == 0
    assert len(stack.events_of("Batch Cancelled", batch_id)) == 1


def test_a_notice_ahead_of_the_api_stores_what_the_get_says_and_keeps_the_chain(
    stack: Stack, slow_emulator: OpenAIEmulator
) -> None:
    # GIVEN a batch `cancelling` at OpenAI too, its chain's first check on the queue (sent
    # without delay, to be read back)
    app = stack.app(
        slow_emulator.base_url, **{**WEBHOOKS, "WEBHOOK_FIRST_CHECK_DELAY_SECONDS": "0"}
    )
    batch_id = str(slow_emulator.seed(status="in_progress")["id"])
    app.handle(sqs_event(batch_id), context())
    watch = (stack.item(batch_id) or {})["watch_id"]

    # WHEN a notice says cancelled, but the GET still says cancelling
    assert failed_ids(app.handle(sqs_event(notice(batch_id)), context())) == set()

    # THEN the record stores `cancelling`, owes nothing, and the same chain follows it
    item = stack.item(batch_id) or {}
    assert (item["status"], item["watch_id"], item["webhook_events"]) == (
        "cancelling",
        watch,
        {"evt_1"},
    )
    assert "ended_by" not in item
    assert "pending_events" not in item
    assert stack.events() == []
    [check] = stack.queued_bodies()
    assert check["check"]["watch_id"] == watch
    # AND a replay of that notice makes no second GET and no write
    before, looks = stack.item(batch_id), gets(slow_emulator, batch_id)
    assert failed_ids(app.handle(sqs_event(notice(batch_id)), context())) == set()
    assert (stack.item(batch_id), gets(slow_emulator, batch_id)) == (before, looks)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "batch.created"}, "'webhook.type'"),
        ({"batch_id": "../files"}, "'webhook.batch_id'"),
        ({"event_id": ""}, "'webhook.event_id'"),
        ({"created_at": "yesterday"}, "'webhook.created_at'"),
        ({"extra": 1}, "'webhook.extra'"),
    ],
)
def test_an_invalid_notice_goes_to_the_dlq_with_its_reason(
    stack: Stack, slow_emulator: OpenAIEmulator, change: dict[str, Any], field: str
) -> None:
    body = json.loads(notice("batch_abc"))
    body["webhook"].update(change)

    answer = stack.app(slow_emulator.base_url).handle(sqs_event(json.dumps(body)), context())

    assert failed_ids(answer) == set()
    [dead] = stack.dead_letters()
    assert field in dead["MessageAttributes"]["error_reason"]["StringValue"]
    assert slow_emulator.requests == []


class _RecordingSession:
    """A boto3 session whose SQS client is real, and remembers each SendMessageBatch entry's
    DelaySeconds (the one thing SQS does not show on a received message)."""

    def __init__(self) -> None:
        import boto3

        self._session = boto3.session.Session(region_name="us-east-1")
        self.region_name = "us-east-1"
        self.delays: list[int] = []

    def client(self, service: str, **kwargs: Any) -> Any:
        made = self._session.client(service, **kwargs)
        if service == "sqs":
            send = made.send_message_batch

            def recording(**request: Any) -> Any:
                self.delays.extend(entry["DelaySeconds"] for entry in request["Entries"])
                return send(**request)

            made.send_message_batch = recording
        return made


@pytest.mark.parametrize(
    ("overrides", "delays"),
    [
        ({}, [1, 2, 4]),  # the doubling from POLL_INITIAL_DELAY_SECONDS, as before webhooks
        ({"WEBHOOKS_ENABLED": "false", "WEBHOOK_FIRST_CHECK_DELAY_SECONDS": "8"}, [1, 2, 4]),
        ({"WEBHOOKS_ENABLED": "true", "WEBHOOK_FIRST_CHECK_DELAY_SECONDS": "8"}, [8, 2, 4]),
    ],
    ids=["default", "disabled", "enabled"],
)
def test_with_webhooks_only_the_first_check_after_a_cancel_waits_longer(
    stack: Stack, slow_emulator: OpenAIEmulator, overrides: dict[str, str], delays: list[int]
) -> None:
    # GIVEN the function with checks doubling from 1 s up to 8 s
    session = _RecordingSession()
    app = stack.app(
        slow_emulator.base_url,
        session=session,
        POLL_INITIAL_DELAY_SECONDS="1",
        POLL_MAX_DELAY_SECONDS="8",
        **overrides,
    )
    batch_id = str(slow_emulator.seed(status="in_progress")["id"])

    # WHEN a cancel leaves the batch cancelling, and the chain's first two checks arrive
    app.handle(sqs_event(batch_id), context())
    item = stack.item(batch_id) or {}
    for attempt in (1, 2):
        check = {
            "check": {
                "batch_id": batch_id,
                "watch_id": item["watch_id"],
                "attempt": attempt,
                "since": item["watch_since"],
                "step": f"step-{attempt}",
            }
        }
        assert failed_ids(app.handle(sqs_event(json.dumps(check)), context())) == set()

    # THEN each sent the next check with the delay of its step
    assert session.delays == delays
