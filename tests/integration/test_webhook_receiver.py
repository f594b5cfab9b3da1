"""The webhook receiver through its real Lambda handler, on payload-2.0 events, against moto
(SQS, Secrets Manager): one test per answer of DESIGN.md's webhook table, what it queues
(exactly), what it counts, and that the secret appears nowhere."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from batch_canceller import webhook_handler
from batch_canceller.webhook_request import MAX_BODY_BYTES
from infra.sam.template import ROOT
from tests.support import (
    ROTATED_WEBHOOK_KEY,
    ROTATED_WEBHOOK_SECRET,
    WEBHOOK_KEY,
    WEBHOOK_SECRET,
    Stack,
    client,
    context,
)
from tests.webhook_support import EVENT_TYPES, delivery, event_body, signed_headers, url_event


@dataclass
class Receiver:
    stack: Stack
    secret_id: str

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        return webhook_handler.lambda_handler(event, context(10))

    def put_secret(self, value: str) -> None:
        secrets = client("secretsmanager", self.stack.endpoint)
        secrets.put_secret_value(SecretId=self.secret_id, SecretString=value)

    def queued(self) -> list[dict[str, Any]]:
        return self.stack.drain_queue()


@pytest.fixture
def receiver(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    secret_id = f"webhook-secret-{uuid.uuid4().hex[:8]}"
    client("secretsmanager", stack.endpoint).create_secret(
        Name=secret_id, SecretString=WEBHOOK_SECRET
    )
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET_ID", secret_id)
    monkeypatch.setenv("CANCEL_QUEUE_URL", stack.queue_url)
    monkeypatch.setattr(webhook_handler, "_intake", None)
    yield Receiver(stack, secret_id)
    monkeypatch.setattr(webhook_handler, "_intake", None)


def answered(answer: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert answer["headers"]["content-type"] == "application/json"
    return answer["statusCode"], json.loads(answer["body"])


def counted(output: str) -> list[tuple[str, str | None]]:
    """(metric, reason) of every EMF count the receiver printed."""
    found = []
    for line in output.splitlines():
        if '"_aws"' in line:
            document = json.loads(line)
            for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                found.append((definition["Name"], document.get("reason")))
    return found


# -- 200: batch events are queued for the canceller ----------------------------------------------


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_a_signed_batch_event_queues_one_message_for_the_canceller(
    receiver: Receiver, event_type: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a delivery as OpenAI signs it
    body = event_body(event_type, "batch_abc123")
    headers = signed_headers(body, webhook_id="wh_0123456789abcdef")
    # WHEN the function URL hands it to the handler
    status, answer = answered(receiver(url_event(body, headers)))
    # THEN it answers 200 and queues exactly this message
    assert (status, answer) == (200, {"status": "received"})
    sent = json.loads(body)
    assert receiver.queued() == [
        {
            "webhook": {
                "delivery_id": "wh_0123456789abcdef",
                "event_id": sent["id"],
                "type": event_type,
                "batch_id": "batch_abc123",
                "created_at": sent["created_at"],
            }
        }
    ]
    assert counted(capfd.readouterr().out) == [("WebhooksQueued", None)]


def test_a_batch_this_service_never_saw_is_queued_the_same_for_the_canceller_to_decide(
    receiver: Receiver,
) -> None:
    # The receiver reads no record: whether the batch is known is the canceller's question.
    status, _ = answered(receiver(delivery(event_body(batch_id="batch_never_seen_here"))))
    assert status == 200
    assert [m["webhook"]["batch_id"] for m in receiver.queued()] == ["batch_never_seen_here"]


def test_a_base64_body_is_verified_over_its_decoded_bytes(receiver: Receiver) -> None:
    body = event_body()
    event = url_event(body, signed_headers(body), base64_body=True)
    assert answered(receiver(event))[0] == 200
    assert len(receiver.queued()) == 1


def test_the_same_delivery_again_is_answered_200_and_carries_the_same_delivery_id(
    receiver: Receiver,
) -> None:
    # OpenAI retries with the same webhook-id; the canceller dedups by it and by record state.
    event = delivery()
    assert answered(receiver(event))[0] == 200
    assert answered(receiver(event))[0] == 200
    first, second = receiver.queued()
    assert first == second


# -- 200: other types are ignored ----------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["response.completed", "eval.run.failed", "batch.created"])
def test_another_type_is_answered_200_and_ignored(
    receiver: Receiver, event_type: str, capfd: pytest.CaptureFixture[str]
) -> None:
    body = json.dumps({"id": "evt_1", "type": event_type, "data": {"id": "resp_1"}}).encode()
    assert answered(receiver(url_event(body, signed_headers(body)))) == (
        200,
        {"status": "received"},
    )
    assert receiver.queued() == []
    assert counted(capfd.readouterr().out) == [("WebhooksIgnored", "other_type")]


# -- 401 / 400: signature headers ----------------------------------------------------------------


def resigned(**changes: str | None) -> dict[str, Any]:
    body = event_body()
    headers = signed_headers(body)
    for name, value in changes.items():
        if value is None:
            headers.pop(f"webhook-{name}")
        else:
            headers[f"webhook-{name}"] = value
    return url_event(body, headers)


# Header changes, applied when the test runs: a delivery signed at collection time would be
# stale (more than 300 s old) by the time a long run reaches it.
UNAUTHORIZED: dict[str, tuple[dict[str, str | None], str]] = {
    "missing_id": ({"id": None}, "missing_headers"),
    "missing_timestamp": ({"timestamp": None}, "missing_headers"),
    "missing_signature": ({"signature": None}, "missing_headers"),
    "empty_signature": ({"signature": ""}, "missing_headers"),
    "matching_no_value": ({"signature": "v1,AAAA v1,BBBB"}, "bad_signature"),
    "wrong_version": ({"signature": "v2,AAAA"}, "bad_signature"),
    "another_id": ({"id": "wh_other"}, "bad_signature"),
    "stale": ({"timestamp": "1000000000"}, "stale_timestamp"),
    "future": ({"timestamp": "9999999999"}, "stale_timestamp"),
}


@pytest.mark.parametrize("case", sorted(UNAUTHORIZED))
def test_a_missing_or_invalid_signature_is_401_and_queues_nothing(
    receiver: Receiver, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    changes, reason = UNAUTHORIZED[case]
    assert answered(receiver(resigned(**changes))) == (401, {"error": "unauthorized"})
    assert receiver.queued() == []
    assert counted(capfd.readouterr().out) == [("WebhooksRejected", reason)]


def test_a_signature_made_with_another_secret_is_401(receiver: Receiver) -> None:
    body = event_body()
    event = url_event(body, signed_headers(body, ROTATED_WEBHOOK_SECRET))
    assert answered(receiver(event))[0] == 401
    assert receiver.queued() == []


MALFORMED_HEADERS = {
    "timestamp_not_digits": resigned(timestamp="soon"),
    "timestamp_a_float": resigned(timestamp="1700000000.0"),
    "id_with_a_space": resigned(id="wh 1"),
    "signature_too_long": resigned(signature="v1," + "A" * 5000),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_HEADERS))
def test_malformed_signature_headers_are_400(
    receiver: Receiver, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert answered(receiver(MALFORMED_HEADERS[case])) == (400, {"error": "bad_request"})
    assert receiver.queued() == []
    assert counted(capfd.readouterr().out) == [("WebhooksRejected", "malformed_headers")]


def test_a_header_given_twice_in_two_cases_with_different_values_is_400(
    receiver: Receiver,
) -> None:
    event = delivery()
    event["headers"]["Webhook-Id"] = "wh_another"
    assert answered(receiver(event))[0] == 400
    # The same value twice is the same header.
    event["headers"]["Webhook-Id"] = event["headers"]["webhook-id"]
    assert answered(receiver(event))[0] == 200
    assert len(receiver.queued()) == 1


# -- 400: a verified body that is not a batch event -----------------------------------------------


def signed(body: bytes) -> dict[str, Any]:
    return url_event(body, signed_headers(body))


BAD_BODIES = {
    "not_json": (b"event: batch.cancelled", "not_json"),
    "not_utf8": (b'{"type": "batch.cancelled", "x": "\xff"}', "not_json"),
    "a_key_twice": (b'{"type": "batch.cancelled", "type": "batch.failed"}', "not_json"),
    "not_an_object": (b'["batch.cancelled"]', "malformed_event"),
    "no_type": (b'{"id": "evt_1", "data": {"id": "batch_1"}}', "malformed_event"),
    "no_data": (event_body(data=None), "missing_batch_id"),
    "no_data_id": (event_body(data={"object": "batch"}), "missing_batch_id"),
    "invalid_batch_id": (event_body(batch_id="../files"), "invalid_batch_id"),
    "batch_id_a_number": (event_body(data={"id": 12}), "invalid_batch_id"),
    "batch_id_too_long": (event_body(batch_id="b" * 257), "invalid_batch_id"),
    "created_at_text": (event_body(created_at="today"), "malformed_event"),
    "no_event_id": (event_body(id=None), "malformed_event"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_verified_body_that_is_not_a_valid_batch_event_is_400(
    receiver: Receiver, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    body, reason = BAD_BODIES[case]
    assert answered(receiver(signed(body))) == (400, {"error": "bad_request"})
    assert receiver.queued() == []
    assert counted(capfd.readouterr().out) == [("WebhooksRejected", reason)]


def test_a_bad_body_without_a_valid_signature_is_401_not_400(receiver: Receiver) -> None:
    # The body is read only once it is known to come from OpenAI.
    event = url_event(b"not json", signed_headers(b"other"))
    assert answered(receiver(event))[0] == 401


# -- 413 and 405 ---------------------------------------------------------------------------------


def test_a_body_over_256_kib_is_413_even_when_signed(
    receiver: Receiver, capfd: pytest.CaptureFixture[str]
) -> None:
    body = event_body(padding="x" * MAX_BODY_BYTES)
    for base64_body in (False, True):
        event = url_event(body, signed_headers(body), base64_body=base64_body)
        assert answered(receiver(event)) == (413, {"error": "payload_too_large"})
    assert receiver.queued() == []
    assert counted(capfd.readouterr().out) == [("WebhooksRejected", "too_large")] * 2


def test_the_limit_is_on_the_bytes_received_not_their_base64(receiver: Receiver) -> None:
    # 256 KiB exactly, whose base64 is a third longer: accepted.
    base = event_body(padding="")
    filler = b"x" * (MAX_BODY_BYTES - len(base))
    body = base.replace(b'"padding": ""', b'"padding": "' + filler + b'"')
    assert len(body) == MAX_BODY_BYTES
    event = url_event(body, signed_headers(body), base64_body=True)
    assert answered(receiver(event))[0] == 200
    assert len(receiver.queued()) == 1


def test_multibyte_characters_count_as_their_utf8_bytes(receiver: Receiver) -> None:
    body = event_body(padding="é" * (MAX_BODY_BYTES // 2))
    assert answered(receiver(url_event(body, signed_headers(body))))[0] == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_any_method_but_post_is_405(
    receiver: Receiver, method: str, capfd: pytest.CaptureFixture[str]
) -> None:
    body = event_body()
    answer = receiver(url_event(body, signed_headers(body), method=method))
    assert answered(answer) == (405, {"error": "method_not_allowed"})
    assert answer["headers"]["allow"] == "POST"
    assert receiver.queued() == []
    assert counted(capfd.readouterr().out) == [("WebhooksRejected", "method_not_allowed")]


# -- 503: the receiver's own failures, for OpenAI to retry ----------------------------------------


def test_a_queue_that_refuses_the_message_is_503_so_that_openai_retries(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CANCEL_QUEUE_URL", receiver.stack.queue_url + "-deleted")
    assert answered(receiver(delivery())) == (503, {"error": "unavailable"})
    assert counted(capfd.readouterr().out) == [("WebhooksFailed", "queue_unavailable")]
    assert receiver.queued() == []


def test_a_secret_that_cannot_be_read_is_503_and_a_configuration_error(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET_ID", "no-such-secret")
    assert answered(receiver(delivery()))[0] == 503
    assert counted(capfd.readouterr().out) == [
        ("ConfigurationErrors", None),
        ("WebhooksFailed", "secret_invalid"),
    ]


def test_a_secret_in_the_wrong_form_is_503_and_a_configuration_error(receiver: Receiver) -> None:
    receiver.put_secret('{"api_key": "not a webhook secret"}')
    assert answered(receiver(delivery()))[0] == 503
    assert receiver.queued() == []


def test_missing_configuration_is_503(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET_ID")
    assert answered(receiver(delivery()))[0] == 503
    assert ("WebhooksFailed", "configuration") in counted(capfd.readouterr().out)


# -- the secret: JSON forms, rotation -------------------------------------------------------------


def test_the_secret_may_be_json_and_a_list_while_a_rotation_overlaps(receiver: Receiver) -> None:
    receiver.put_secret(json.dumps({"webhook_secret": [ROTATED_WEBHOOK_SECRET, WEBHOOK_SECRET]}))
    for secret in (WEBHOOK_SECRET, ROTATED_WEBHOOK_SECRET):
        body = event_body()
        assert answered(receiver(url_event(body, signed_headers(body, secret))))[0] == 200
    assert len(receiver.queued()) == 2


def test_a_rotated_secret_takes_effect_at_the_first_delivery_it_signed(receiver: Receiver) -> None:
    # GIVEN a receiver that has read and cached the secret
    assert answered(receiver(delivery()))[0] == 200
    # WHEN the secret is rotated in Secrets Manager, and OpenAI signs with the new one
    receiver.put_secret(json.dumps({"webhook_secret": ROTATED_WEBHOOK_SECRET}))
    body = event_body()
    # THEN the first delivery signed with it is accepted: the mismatch re-read the secret
    assert (
        answered(receiver(url_event(body, signed_headers(body, ROTATED_WEBHOOK_SECRET))))[0] == 200
    )
    # and the old secret no longer verifies
    old = event_body()
    assert answered(receiver(url_event(old, signed_headers(old))))[0] == 401
    assert len(receiver.queued()) == 2


# -- the secret appears nowhere -------------------------------------------------------------------


def every_path() -> list[dict[str, Any]]:
    body = event_body()
    return [
        delivery(),
        url_event(body, signed_headers(body), base64_body=True),
        signed(json.dumps({"id": "e", "type": "response.completed"}).encode()),
        *(event for event, _ in UNAUTHORIZED.values()),
        *MALFORMED_HEADERS.values(),
        *(signed(body) for body, _ in BAD_BODIES.values()),
        url_event(body, signed_headers(body), method="GET"),
        url_event(event_body(padding="x" * MAX_BODY_BYTES), {}),
        url_event(body, signed_headers(body, ROTATED_WEBHOOK_SECRET)),
    ]


def test_the_secret_and_its_key_appear_in_no_log_metric_or_answer(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    function_logs: io.StringIO,
) -> None:
    answers = [receiver(event) for event in every_path()]
    receiver.put_secret("whsec_***")  # malformed: the error names the variable, not the value
    answers.append(receiver(delivery()))
    monkeypatch.setenv("CANCEL_QUEUE_URL", receiver.stack.queue_url + "-deleted")
    monkeypatch.setattr(webhook_handler, "_intake", None)
    receiver.put_secret(WEBHOOK_SECRET)
    answers.append(receiver(delivery()))
    output = capfd.readouterr()
    texts = {
        "logs": function_logs.getvalue(),
        "stdout": output.out,
        "stderr": output.err,
        "answers": json.dumps(answers),
        "queued": json.dumps(receiver.queued()),
    }
    assert "webhook rejected" in texts["logs"]
    assert "webhook not taken" in texts["logs"]
    forms = [
        form
        for secret, key in (
            (WEBHOOK_SECRET, WEBHOOK_KEY),
            (ROTATED_WEBHOOK_SECRET, ROTATED_WEBHOOK_KEY),
        )
        for form in (
            secret,
            secret.removeprefix("whsec_"),
            key.decode(),
            key.hex(),
            base64.b64encode(key).decode().rstrip("="),
        )
    ]
    assert [(where, form) for where, text in texts.items() for form in forms if form in text] == []


class CountingSecrets:
    """The real Secrets Manager client, counting its reads."""

    def __init__(self, endpoint: str) -> None:
        self._client = client("secretsmanager", endpoint)
        self.reads = 0

    def get_secret_value(self, **kwargs: Any) -> Any:
        self.reads += 1
        return self._client.get_secret_value(**kwargs)


def test_forged_signatures_cost_at_most_one_secret_read_a_minute(receiver: Receiver) -> None:
    from batch_canceller.webhook_secret import WebhookSecrets

    now = [0.0]
    spy = CountingSecrets(receiver.stack.endpoint)
    secrets = WebhookSecrets(receiver.secret_id, lambda: spy, clock=lambda: now[0])  # type: ignore[arg-type, return-value]
    keys = secrets.keys()
    assert (secrets.keys(), spy.reads) == (keys, 1)  # cached
    # the first mismatch reads again at once; the next ones within a minute do not
    assert secrets.refreshed() == keys
    now[0] = 59.0
    assert secrets.refreshed() is None
    assert spy.reads == 2
    now[0] = 61.0
    assert secrets.refreshed() == keys
    assert spy.reads == 3
    # and the cache itself lasts 5 minutes from the last read
    now[0] = 61.0 + 299
    secrets.keys()
    assert spy.reads == 3
    now[0] = 61.0 + 301
    secrets.keys()
    assert spy.reads == 4


def test_the_sample_event_is_what_the_handler_takes(receiver: Receiver) -> None:
    # events/webhook-batch-cancelled.json as it is: its signature is a placeholder
    sample = json.loads((ROOT / "events" / "webhook-batch-cancelled.json").read_text())
    assert answered(receiver(sample))[0] == 401
    # signed now, with the secret: accepted, and its batch queued
    sample["headers"].update(signed_headers(sample["body"].encode()))
    assert answered(receiver(sample))[0] == 200
    assert [m["webhook"]["batch_id"] for m in receiver.queued()] == ["batch_abc123"]
