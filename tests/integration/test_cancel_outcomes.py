"""Every row of the contract's behaviour table, against moto and the OpenAI emulator."""

from __future__ import annotations

import json

from infra.openai_emulator import Fault, OpenAIEmulator
from tests.support import (
    OUTCOME_DETAIL_KEYS,
    ROTATED_API_KEY,
    Stack,
    context,
    failed_ids,
    sqs_event,
)


def test_cancelling_answer_is_stored_and_followed_until_cancelled_with_one_event(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    # GIVEN a batch in progress that takes a moment to cancel
    batch = emulator.seed(status="in_progress")
    app = stack.app(emulator.base_url)

    # WHEN a bare-ID message asks for its cancellation
    answer = app.handle(sqs_event(batch["id"]), context())

    # THEN the record holds the cancelling batch and a delayed status check is queued
    assert failed_ids(answer) == set()
    item = stack.item(batch["id"])
    assert item is not None
    assert item["status"] == "cancelling"
    assert item["batch"]["status"] == "cancelling"
    assert stack.events_of("Batch Cancelled") == []

    # AND following the queue ends in `cancelled` and exactly one Batch Cancelled event
    stack.run_until(app, lambda: (stack.item(batch["id"]) or {}).get("status") == "cancelled")
    cancelled = stack.events_of("Batch Cancelled", batch["id"])
    assert len(cancelled) == 1
    detail = cancelled[0]["detail"]
    assert detail["status"] == "cancelled"
    assert detail["batch"]["id"] == batch["id"]
    assert detail["batch"]["status"] == "cancelled"
    assert set(detail) == OUTCOME_DETAIL_KEYS


def test_status_check_is_a_delayed_message_on_the_queue(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    batch = emulator.seed(status="in_progress")
    app = stack.app(emulator.base_url, POLL_INITIAL_DELAY_SECONDS="0", POLL_MAX_DELAY_SECONDS="0")

    app.handle(sqs_event(batch["id"]), context())

    bodies = stack.queued_bodies()
    assert len(bodies) == 1
    check = bodies[0]["check"]
    assert check["batch_id"] == batch["id"]
    assert check["attempt"] == 1
    item = stack.item(batch["id"])
    assert item is not None
    assert item["watch_id"] == check["watch_id"]


def test_immediate_cancelled_answer_is_stored_and_announced(stack: Stack) -> None:
    with OpenAIEmulator(api_keys={_key()}, cancel_delay_seconds=0) as emulator:
        batch = emulator.seed(status="validating")
        app = stack.app(emulator.base_url)

        body = json.dumps({"batch_id": batch["id"], "reason": "budget", "requested_by": "ops@x.io"})
        answer = app.handle(sqs_event(body), context())

        assert failed_ids(answer) == set()
        item = stack.item(batch["id"])
        assert item is not None
        assert item["status"] == "cancelled"
        assert item["reason"] == "budget"
        assert item["requested_by"] == "ops@x.io"
        events = stack.events_of("Batch Cancelled", batch["id"])
        assert len(events) == 1
        assert events[0]["detail"]["reason"] == "budget"
        assert events[0]["detail"]["requested_by"] == "ops@x.io"
        assert stack.queued_bodies() == []  # nothing left to follow


def test_conflict_on_a_finished_batch_stores_its_real_state_and_announces_it(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    finished = {
        status: emulator.seed(status=status) for status in ("completed", "failed", "expired")
    }
    app = stack.app(emulator.base_url)

    answer = app.handle(
        sqs_event(json.dumps({"batch_ids": [b["id"] for b in finished.values()]})), context()
    )

    assert failed_ids(answer) == set()
    for status, batch in finished.items():
        item = stack.item(batch["id"])
        assert item is not None
        assert item["status"] == status
        assert item["batch"]["status"] == status
        events = stack.events_of("Batch Finished Before Cancel", batch["id"])
        assert len(events) == 1
        assert events[0]["detail"]["status"] == status
    # The 409 was followed by a GET of each batch.
    gets = [r for r in emulator.requests if r.method == "GET"]
    assert len(gets) == 3


def test_conflict_on_an_already_cancelled_batch_announces_cancelled(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    batch = emulator.seed(status="cancelled")
    app = stack.app(emulator.base_url)

    app.handle(sqs_event(batch["id"]), context())

    item = stack.item(batch["id"])
    assert item is not None
    assert item["status"] == "cancelled"
    assert len(stack.events_of("Batch Cancelled", batch["id"])) == 1


def test_unknown_batch_records_last_error_and_announces_failure_without_retry(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    app = stack.app(emulator.base_url)

    answer = app.handle(sqs_event("batch_doesnotexist"), context())

    assert failed_ids(answer) == set()  # not retried
    item = stack.item("batch_doesnotexist")
    assert item is not None
    error = item["last_error"]
    assert error["http_status"] == 404
    assert error["type"] == "invalid_request_error"
    assert "No batch found" in error["message"]
    assert set(error) == {"http_status", "type", "code", "message", "at"}
    events = stack.events_of("Batch Cancel Failed", "batch_doesnotexist")
    assert len(events) == 1
    assert events[0]["detail"]["error"]["http_status"] == 404
    assert set(events[0]["detail"]) == {"batch_id", "error", "publication_id"}
    assert len([r for r in emulator.requests if r.method == "POST"]) == 1


def test_rejected_key_keeps_the_message_for_later_and_records_the_error(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    batch = emulator.seed(status="in_progress")
    emulator.set_api_keys({"sk-some-other-key"})
    app = stack.app(emulator.base_url)

    event = sqs_event(batch["id"])
    answer = app.handle(event, context())

    assert failed_ids(answer) == {event["Records"][0]["messageId"]}
    item = stack.item(batch["id"])
    assert item is not None
    assert item["last_error"]["http_status"] == 401
    assert "status" not in item
    assert stack.events() == []
    assert emulator.get(batch["id"])["status"] == "in_progress"  # type: ignore[index]


def test_rotated_key_is_refetched_once_and_the_cancel_goes_through(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    from tests.support import client

    batch = emulator.seed(status="in_progress")
    app = stack.app(emulator.base_url)
    app.handle(sqs_event("batch_warmup"), context())  # caches the current key

    # WHEN the key is rotated in Secrets Manager and at OpenAI
    client("secretsmanager", stack.endpoint).put_secret_value(
        SecretId=stack.secret_id, SecretString=ROTATED_API_KEY
    )
    emulator.set_api_keys({ROTATED_API_KEY})
    answer = app.handle(sqs_event(batch["id"]), context())

    # THEN one 401, one refetch, and the cancel succeeds
    assert failed_ids(answer) == set()
    assert (stack.item(batch["id"]) or {}).get("status") == "cancelling"
    statuses = [r.status for r in emulator.requests if r.path.endswith(batch["id"] + "/cancel")]
    assert statuses == [401, 200]


def test_rate_limit_is_retried_after_the_servers_retry_after(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    batch = emulator.seed(status="in_progress")
    emulator.inject(Fault("status", status=429, retry_after_ms=200, times=2))
    app = stack.app(emulator.base_url)

    answer = app.handle(sqs_event(batch["id"]), context())

    assert failed_ids(answer) == set()
    cancels = [r for r in emulator.requests if r.path.endswith("/cancel")]
    assert [r.status for r in cancels] == [429, 429, 200]
    # the waits honoured retry-after-ms (200 ms each)
    assert cancels[2].at - cancels[0].at >= 0.4


def test_server_errors_timeouts_and_dropped_connections_are_retried(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    batch = emulator.seed(status="in_progress")
    emulator.inject(Fault("status", status=503, times=1))
    emulator.inject(Fault("reset", times=1))
    emulator.inject(Fault("malformed", times=1))
    app = stack.app(emulator.base_url)

    answer = app.handle(sqs_event(batch["id"]), context())

    assert failed_ids(answer) == set()
    assert (stack.item(batch["id"]) or {}).get("status") == "cancelling"


def test_persistent_outage_fails_only_the_affected_message(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    # GIVEN one batch whose cancel keeps failing, and one that works
    broken = emulator.seed(status="in_progress")
    fine = emulator.seed(status="in_progress")
    emulator.inject(Fault("status", status=500, path_regex=broken["id"], times=None))
    app = stack.app(emulator.base_url)

    event = sqs_event(broken["id"], fine["id"])
    answer = app.handle(event, context())

    # THEN only the broken one's message comes back, and the other was handled
    assert failed_ids(answer) == {event["Records"][0]["messageId"]}
    assert (stack.item(fine["id"]) or {}).get("status") == "cancelling"
    assert stack.item(broken["id"]) is None


def _key() -> str:
    from tests.support import API_KEY

    return API_KEY
