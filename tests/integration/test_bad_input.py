"""Bad input: a clear reason, the DLQ, and never a good message lost or blocked beside it."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_canceller.app import Application
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, context, failed_ids, sqs_event

BAD_BODIES = {
    "path traversal": ("../files", "invalid batch ID"),
    "slash": ('{"batch_id": "a/b"}', "invalid batch ID"),
    "spaces": ('{"batch_ids": ["batch one"]}', "invalid batch ID"),
    "empty id": ('{"batch_id": ""}', "invalid batch ID"),
    "number id": ('{"batch_id": 42}', "must be a string"),
    "empty list": ('{"batch_ids": []}', "is empty"),
    "too many": (json.dumps({"batch_ids": [f"batch_{i}" for i in range(1001)]}), "at most 1000"),
    "not json": ("{not json", "not valid JSON"),
    "json array": ('["batch_abc"]', "the message: expected a JSON object"),
    "unknown field": ('{"batch_idz": ["batch_abc"]}', "unknown field"),
    "both id fields": ('{"batch_id": "a", "batch_ids": ["b"]}', "exactly one"),
    "id too long": ("x" * 257, "invalid batch ID"),
    "oversized": ("{" + " " * (600 * 1024) + "}", "larger than"),
    "reason not text": ('{"batch_id": "batch_a", "reason": 5}', "'reason' must be a string"),
    # Unhashable values where a name is looked up: a TypeError once, for the whole batch.
    "list as detail-type": ('{"detail-type": [], "source": "x", "detail": {}}', "'detail-type'"),
    "list in sweep statuses": ('{"sweep": {"statuses": [[]]}}', "'sweep.statuses[0]'"),
    "list as sweep metadata": ('{"sweep": {"metadata": []}}', "'sweep.metadata'"),
    "huge check attempt": (
        json.dumps(
            {
                "check": {
                    "batch_id": "batch_a",
                    "watch_id": "w",
                    "attempt": 2**70,
                    "since": "2026-01-01T00:00:00+00:00",
                }
            }
        ),
        "'check.attempt'",
    ),
    "infinite minutes": ('{"sweep": {"older_than_minutes": 1e400}}', "'sweep.older_than_minutes'"),
    "NaN minutes": ('{"sweep": {"older_than_minutes": NaN}}', "not valid JSON"),
    "sweep without a filter": ('{"sweep": {}}', "'sweep' has no filter"),
    "null cancel_at": ('{"batch_id": "batch_a", "cancel_at": null}', "'cancel_at'"),
    "receipt time past the calendar": (
        json.dumps(
            {
                "detail-type": "Batch Cancelled",
                "source": "elsewhere",
                "time": "9999-12-31T23:59:59-14:00",
                "detail": {"batch_id": "batch_a"},
            }
        ),
        "source",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_message_goes_to_the_dlq_with_its_reason_and_the_good_one_is_cancelled(
    name: str, stack: Stack, emulator: OpenAIEmulator
) -> None:
    body, expected_reason = BAD_BODIES[name]
    good = emulator.seed(status="in_progress")
    app = stack.app(emulator.base_url)

    answer = app.handle(sqs_event(body, good["id"]), context())

    # The bad message is not retried (it is on the DLQ), the good one is handled.
    assert failed_ids(answer) == set()
    assert (stack.item(good["id"]) or {}).get("status") == "cancelling"
    letters = stack.dead_letters()
    assert len(letters) == 1
    reason = letters[0]["MessageAttributes"]["error_reason"]["StringValue"]
    assert expected_reason in reason
    assert letters[0]["MessageAttributes"]["error_source"]["StringValue"] == "sqs"
    if len(body) < 10_000:
        assert letters[0]["Body"] == body
    # No request was made for the bad input.
    assert all(good["id"] in r.path for r in emulator.requests)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # json.loads keeps the last value: a body that reads as a dry run queued real cancels.
        (
            '{"sweep": {"dry_run": true, "all": true, "dry_run": false}}',
            "'sweep.dry_run' is given more than once",
        ),
        # ... and this one cancelled B alone, A silently ignored.
        ('{"batch_id": "%(a)s", "batch_id": "%(b)s"}', "'batch_id' is given more than once"),
    ],
    ids=["sweep dry_run twice", "batch_id twice"],
)
def test_a_key_given_twice_dead_letters_the_message_naming_the_key(
    stack: Stack, emulator: OpenAIEmulator, body: str, reason: str
) -> None:
    a, b, c = (emulator.seed(status="in_progress")["id"] for _ in range(3))
    app = stack.app(emulator.base_url)

    answer = app.handle(sqs_event(body % {"a": a, "b": b}), context())

    assert failed_ids(answer) == set()
    letters = stack.dead_letters()
    assert len(letters) == 1
    assert reason in letters[0]["MessageAttributes"]["error_reason"]["StringValue"]
    assert stack.drain_queue() == []
    assert emulator.requests == []
    assert [stack.item(i) for i in (a, b, c)] == [None, None, None]


def test_without_a_dlq_url_the_bad_message_is_left_to_sqs_redrive(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    good = emulator.seed(status="in_progress")
    app = stack.app(emulator.base_url, DEAD_LETTER_QUEUE_URL="")
    event = sqs_event("../etc/passwd", good["id"])

    answer = app.handle(event, context())

    assert failed_ids(answer) == {event["Records"][0]["messageId"]}
    assert (stack.item(good["id"]) or {}).get("status") == "cancelling"


def test_redrive_policy_moves_a_repeatedly_failing_message_to_the_dlq(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    app = stack.app(emulator.base_url, DEAD_LETTER_QUEUE_URL="")
    from tests.support import client

    client("sqs", stack.endpoint).send_message(QueueUrl=stack.queue_url, MessageBody="a/b")
    source = stack.event_source(app)
    for _ in range(8):
        source.poll_once(wait_seconds=3)
    letters = stack.dead_letters()
    assert [m["Body"] for m in letters] == ["a/b"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
arbitrary_bodies = (
    st.text(max_size=300)
    | json_values.map(json.dumps)
    | st.dictionaries(
        st.sampled_from(
            ["batch_id", "batch_ids", "reason", "requested_by", "cancel_at", "sweep", "check"]
        ),
        json_values,
        max_size=3,
    ).map(json.dumps)
)


@pytest.fixture(scope="module")
def fuzz_setup(local_aws: object) -> tuple[Stack, OpenAIEmulator, Application]:
    from tests.support import API_KEY, LocalAws

    assert isinstance(local_aws, LocalAws)
    stack = local_aws.create_stack()
    emulator = OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=0).start()
    return stack, emulator, stack.app(emulator.base_url)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies=st.lists(arbitrary_bodies, min_size=1, max_size=4))
def test_arbitrary_bodies_never_crash_a_batch_or_lose_the_valid_message_beside_them(
    fuzz_setup: tuple[Stack, OpenAIEmulator, Application], bodies: list[str]
) -> None:
    stack, emulator, app = fuzz_setup
    good = emulator.seed(status="in_progress")
    event = sqs_event(*bodies, good["id"])

    answer = app.handle(event, context())

    # The valid message is handled (never reported failed), and each other message is either
    # accepted, reported for a retry, or on the DLQ: nothing vanishes.
    good_message = event["Records"][-1]["messageId"]
    assert good_message not in failed_ids(answer)
    assert (stack.item(good["id"]) or {}).get("status") == "cancelled"
    assert failed_ids(answer) <= {r["messageId"] for r in event["Records"]}


def test_a_parser_bug_dead_letters_its_message_with_a_reason_and_the_batch_goes_on(
    stack: Stack, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batch_canceller import inbound

    real = inbound.parse_message_body

    def buggy(body: str) -> object:
        if "trigger" in body:
            raise KeyError("a bug in the parser")
        return real(body)

    monkeypatch.setattr(inbound, "parse_message_body", buggy)
    good = emulator.seed(status="in_progress")
    app = stack.app(emulator.base_url)

    answer = app.handle(sqs_event('{"batch_id": "trigger"}', good["id"]), context())

    assert failed_ids(answer) == set()
    assert (stack.item(good["id"]) or {}).get("status") == "cancelling"
    [letter] = stack.dead_letters()
    reason = letter["MessageAttributes"]["error_reason"]["StringValue"]
    assert reason == "could not parse the message body: KeyError"
