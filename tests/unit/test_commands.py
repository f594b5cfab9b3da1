"""Input parsing: every entry point's payload becomes a request, or an InvalidInput with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from batch_canceller.commands import (
    MAX_BATCH_IDS,
    MAX_BODY_BYTES,
    CancelCommand,
    InvalidInput,
    PublicationReceipt,
    StatusCheck,
    SweepRequest,
    WebhookNotice,
    parse_message_body,
    parse_payload,
    validate_batch_id,
)

PREVIEW_LIMIT = 40


def body(payload: object) -> str:
    return json.dumps(payload)


# -- the forms a cancel command takes -----------------------------------------------------


def test_bare_batch_id_body_is_a_command_for_that_id() -> None:
    # GIVEN the body `aws sqs send-message --message-body batch_abc123` produces
    # WHEN it is parsed THEN it is a command cancelling that one batch
    assert parse_message_body("batch_abc123") == CancelCommand(batch_ids=("batch_abc123",))


def test_bare_batch_id_body_with_surrounding_whitespace_is_trimmed() -> None:
    assert parse_message_body("  batch_abc123\n") == CancelCommand(batch_ids=("batch_abc123",))


def test_json_string_body_is_a_command_for_that_id() -> None:
    assert parse_message_body('"batch_abc123"') == CancelCommand(batch_ids=("batch_abc123",))


def test_batch_id_field_is_a_command_for_one_id() -> None:
    command = parse_message_body(body({"batch_id": "batch_one"}))
    assert command == CancelCommand(batch_ids=("batch_one",))


def test_batch_ids_field_keeps_every_id_in_order_with_reason_and_requester() -> None:
    command = parse_payload(
        {
            "batch_ids": ["batch_b", "batch_a", "batch_c"],
            "reason": "nightly cutoff",
            "requested_by": "ops@example.com",
        }
    )
    assert command == CancelCommand(
        batch_ids=("batch_b", "batch_a", "batch_c"),
        reason="nightly cutoff",
        requested_by="ops@example.com",
    )


def test_both_batch_id_and_batch_ids_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="exactly one of 'batch_id' or 'batch_ids'"):
        parse_payload({"batch_id": "batch_a", "batch_ids": ["batch_b"]})


def test_neither_batch_id_nor_batch_ids_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="exactly one of 'batch_id' or 'batch_ids'"):
        parse_payload({"reason": "why not"})


def test_empty_batch_ids_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        parse_payload({"batch_ids": []})


def test_batch_ids_that_is_not_a_list_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="must be a list"):
        parse_payload({"batch_ids": "batch_a"})


def test_a_thousand_batch_ids_are_accepted() -> None:
    ids = [f"batch_{n:04d}" for n in range(MAX_BATCH_IDS)]
    command = parse_payload({"batch_ids": ids})
    assert isinstance(command, CancelCommand)
    assert command.batch_ids == tuple(ids)
    assert MAX_BATCH_IDS == 1000


def test_a_thousand_and_one_batch_ids_are_rejected() -> None:
    ids = [f"batch_{n:04d}" for n in range(MAX_BATCH_IDS + 1)]
    with pytest.raises(InvalidInput, match="1001"):
        parse_payload({"batch_ids": ids})


def test_duplicate_ids_are_cancelled_once_in_first_seen_order() -> None:
    command = parse_payload({"batch_ids": ["batch_b", "batch_a", "batch_b", "batch_c", "batch_a"]})
    assert isinstance(command, CancelCommand)
    assert command.batch_ids == ("batch_b", "batch_a", "batch_c")


# -- batch ID validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch_id",
    [
        "../files",
        "a/b",
        "batch abc",
        "",
        "x" * 257,
        "batch_\u0430bc",  # Cyrillic a, looks like Latin a
        "batch_abc\n",
        "batch%2Fabc",
        "batch?x=1",
        "batch#frag",
        "batch.abc",
        "\u0431atch",
    ],
)
def test_invalid_batch_id_is_rejected(batch_id: str) -> None:
    with pytest.raises(InvalidInput, match="invalid batch ID"):
        validate_batch_id(batch_id)


@pytest.mark.parametrize("batch_id", ["../files", "a/b", "batch abc", "batch_\u0430bc", "x" * 257])
def test_invalid_batch_id_in_a_command_is_rejected(batch_id: str) -> None:
    with pytest.raises(InvalidInput, match="invalid batch ID"):
        parse_payload({"batch_ids": ["batch_ok", batch_id]})


@pytest.mark.parametrize("raw", ["../files", "a/b", "batch abc", "batch_\u0430bc"])
def test_invalid_bare_id_body_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidInput, match="invalid batch ID"):
        parse_message_body(raw)


@pytest.mark.parametrize("value", [123, 1.5, None, True, ["batch_a"], {"id": "batch_a"}])
def test_non_string_batch_id_is_rejected(value: object) -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        parse_payload({"batch_id": value})


@pytest.mark.parametrize("batch_id", ["a", "x" * 256, "batch_ABC-123_def", "0"])
def test_valid_batch_id_boundaries_are_accepted(batch_id: str) -> None:
    assert validate_batch_id(batch_id) == batch_id


def test_empty_body_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="invalid batch ID"):
        parse_message_body("")


# -- other fields --------------------------------------------------------------------------


def test_unknown_fields_are_rejected_and_named() -> None:
    with pytest.raises(InvalidInput, match="unknown field") as caught:
        parse_payload({"batch_id": "batch_a", "reasn": "typo", "priority": 1})
    assert "reasn" in str(caught.value)
    assert "priority" in str(caught.value)


def test_cancel_at_without_offset_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="offset"):
        parse_payload({"batch_id": "batch_a", "cancel_at": "2030-01-01T06:00:00"})


@pytest.mark.parametrize("value", ["tomorrow", "2030-13-01T00:00:00+00:00", 1893456000])
def test_malformed_cancel_at_is_rejected(value: object) -> None:
    with pytest.raises(InvalidInput, match="cancel_at"):
        parse_payload({"batch_id": "batch_a", "cancel_at": value})


def test_cancel_at_with_offset_is_parsed_to_an_aware_time() -> None:
    command = parse_payload({"batch_id": "batch_a", "cancel_at": "2030-01-01T06:00:00+02:00"})
    assert isinstance(command, CancelCommand)
    assert command.cancel_at == datetime(2030, 1, 1, 6, 0, tzinfo=timezone(timedelta(hours=2)))
    assert command.cancel_at == datetime(2030, 1, 1, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["reason", "requested_by"])
def test_non_string_reason_or_requester_is_rejected(name: str) -> None:
    with pytest.raises(InvalidInput, match=name):
        parse_payload({"batch_id": "batch_a", name: 42})


@pytest.mark.parametrize("name", ["reason", "requested_by"])
def test_overlong_reason_or_requester_is_rejected(name: str) -> None:
    with pytest.raises(InvalidInput, match=name):
        parse_payload({"batch_id": "batch_a", name: "r" * 5000})


# -- the body as a whole -------------------------------------------------------------------


def test_oversized_body_is_rejected() -> None:
    huge = body({"batch_id": "batch_a", "reason": "r" * (MAX_BODY_BYTES + 1)})
    with pytest.raises(InvalidInput, match="larger than"):
        parse_message_body(huge)


@pytest.mark.parametrize("raw", ["[" * 100_000, "{" * 100_000, '{"a":' * 50_000])
def test_deeply_nested_json_is_invalid_input_not_a_recursion_error(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_message_body(raw)


def test_malformed_json_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_message_body('{"batch_id": ')


@pytest.mark.parametrize("payload", [[], ["batch_a"], 42, None])
def test_json_that_is_not_an_object_is_rejected(payload: object) -> None:
    with pytest.raises(InvalidInput, match="expected a JSON object"):
        parse_payload(payload)


def test_json_array_body_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="expected a JSON object"):
        parse_message_body('["batch_a"]')


# -- sweeps and status checks --------------------------------------------------------------


def test_sweep_keeps_its_filters() -> None:
    filters = {
        "older_than_minutes": 60,
        "metadata": {"team": "ml"},
        "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini",
        "statuses": ["in_progress", "validating"],
        "dry_run": True,
    }
    sweep = parse_message_body(body({"sweep": filters}))
    assert isinstance(sweep, SweepRequest)
    assert sweep.older_than_minutes == 60
    assert dict(sweep.metadata) == {"team": "ml"}
    assert sweep.endpoint == "/v1/chat/completions"
    assert sweep.model == "gpt-4o-mini"
    assert sweep.statuses == frozenset({"in_progress", "validating"})
    assert sweep.dry_run is True


def test_a_sweep_without_a_filter_is_rejected_unless_it_says_all_or_is_a_dry_run() -> None:
    with pytest.raises(InvalidInput, match="'sweep' has no filter"):
        parse_payload({"sweep": {}})
    everything = parse_payload({"sweep": {"all": True}})
    assert isinstance(everything, SweepRequest)
    assert everything.all_batches is True
    assert everything.describe() == {"all": True}
    looking = parse_payload({"sweep": {"dry_run": True}})
    assert isinstance(looking, SweepRequest)
    assert looking.dry_run is True


@pytest.mark.parametrize(
    ("sweep", "field"),
    [
        ({"metadata": []}, "'sweep.metadata'"),
        ({"metadata": ""}, "'sweep.metadata'"),
        ({"metadata": 0}, "'sweep.metadata'"),
        ({"metadata": False}, "'sweep.metadata'"),
        ({"metadata": None}, "'sweep.metadata'"),
        ({"metadata": {"a": {"b": "c"}}}, "'sweep.metadata.a'"),
        ({"metadata": {"k" * 65: "v"}}, "'sweep.metadata["),
        ({"statuses": [[]]}, "'sweep.statuses[0]'"),
        ({"statuses": [{}]}, "'sweep.statuses[0]'"),
        ({"statuses": "in_progress"}, "'sweep.statuses'"),
        ({"older_than_minutes": float("inf")}, "'sweep.older_than_minutes'"),
        ({"older_than_minutes": float("nan")}, "'sweep.older_than_minutes'"),
        ({"older_than_minutes": None}, "'sweep.older_than_minutes'"),
        ({"endpoint": ""}, "'sweep.endpoint'"),
        ({"model": None}, "'sweep.model'"),
        ({"all": 1}, "'sweep.all'"),
        ({"all": "true"}, "'sweep.all'"),
        ({"max_cancels": 2**70}, "'sweep.max_cancels'"),
    ],
)
def test_a_wrong_sweep_value_is_an_error_naming_it_never_no_filter(
    sweep: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_payload({"sweep": {"all": True, **sweep}})
    assert field in str(caught.value)


def test_sweep_with_unknown_filter_is_rejected_naming_it() -> None:
    with pytest.raises(InvalidInput, match="older_than_hours"):
        parse_payload({"sweep": {"older_than_hours": 1}})


def test_sweep_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="'sweep' must be an object"):
        parse_payload({"sweep": ["dry_run"]})


def test_sweep_beside_other_fields_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="batch_id"):
        parse_payload({"sweep": {}, "batch_id": "batch_a"})


def test_status_check_round_trips_through_its_message() -> None:
    check = StatusCheck("batch_a", "watch-1", 3, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert parse_message_body(body(check.to_message())) == check


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"attempt": 0}, "attempt"),
        ({"attempt": True}, "attempt"),
        ({"attempt": "2"}, "attempt"),
        ({"watch_id": ""}, "watch_id"),
        ({"since": None}, "since"),
        ({"since": "2026-01-02T03:04:05"}, "offset"),
        ({"batch_id": "../files"}, "invalid batch ID"),
    ],
)
def test_malformed_status_check_is_rejected(change: dict[str, object], complaint: str) -> None:
    check = {
        "batch_id": "batch_a",
        "watch_id": "watch-1",
        "attempt": 1,
        "since": "2026-01-02T03:04:05+00:00",
    }
    check.update(change)
    with pytest.raises(InvalidInput, match=complaint):
        parse_payload({"check": check})


def test_webhook_notice_round_trips_through_its_message() -> None:
    notice = WebhookNotice("batch_a", "msg_1", "evt_1", "batch.expired", 1733000000)
    assert parse_message_body(body(notice.to_message())) == notice


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"type": "batch.created"}, "'webhook.type' must be one of"),
        ({"type": None}, "'webhook.type' must not be null"),
        ({"batch_id": "../files"}, "'webhook.batch_id': invalid batch ID"),
        ({"delivery_id": ""}, "'webhook.delivery_id' must not be empty"),
        ({"event_id": "e" * 257}, "'webhook.event_id' is longer than 256"),
        ({"created_at": -1}, "'webhook.created_at' must be an integer"),
        ({"created_at": 1.5}, "'webhook.created_at' must be an integer"),
        ({"signature": "v1,x"}, "unknown field"),
    ],
)
def test_malformed_webhook_notice_is_rejected_naming_the_field(
    change: dict[str, object], complaint: str
) -> None:
    notice: dict[str, object] = {
        "delivery_id": "msg_1",
        "event_id": "evt_1",
        "type": "batch.cancelled",
        "batch_id": "batch_a",
        "created_at": 1733000000,
    }
    notice.update(change)
    with pytest.raises(InvalidInput, match=complaint):
        parse_payload({"webhook": notice})


@pytest.mark.parametrize("missing", ["delivery_id", "event_id", "type", "batch_id", "created_at"])
def test_a_webhook_notice_without_a_field_is_rejected_naming_it(missing: str) -> None:
    notice = WebhookNotice("batch_a", "msg_1", "evt_1", "batch.failed", 1).to_message()
    del notice["webhook"][missing]
    with pytest.raises(InvalidInput, match=f"'webhook.{missing}' is required"):
        parse_payload(notice)


def test_a_webhook_notice_beside_a_command_is_rejected() -> None:
    notice = WebhookNotice("batch_a", "msg_1", "evt_1", "batch.failed", 1).to_message()
    with pytest.raises(InvalidInput, match="batch_id"):
        parse_payload({**notice, "batch_id": "batch_a"})


# -- error messages quote little of the input ----------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"batch_id": "a/" + "z" * 5000},
        {"batch_ids": ["batch_ok", " " + "z" * 5000]},
        {"batch_id": "batch_a", "z" * 5000: 1},
        {"batch_id": "batch_a", "cancel_at": "z" * 5000},
        {"sweep": {"z" * 5000: 1}},
    ],
)
def test_error_messages_never_echo_more_than_a_short_preview(payload: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_payload(payload)
    assert "z" * (PREVIEW_LIMIT + 1) not in str(caught.value)
    assert "z" * 10 in str(caught.value)  # the preview itself is there to help


def test_bare_body_error_never_echoes_more_than_a_short_preview() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_message_body("not a batch id " + "z" * 5000)
    assert "z" * (PREVIEW_LIMIT + 1) not in str(caught.value)


def test_error_preview_escapes_control_characters() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_batch_id("batch\x1b[31mred\r\nforged log line")
    message = str(caught.value)
    assert "\x1b" not in message
    assert "\n" not in message
    assert "\r" not in message


# -- events a rule delivered to the queue --------------------------------------------------


def envelope(detail_type: str, detail: object, source: str = "batch-canceller") -> str:
    return body(
        {
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": "2026-11-26T01:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


@pytest.mark.parametrize(
    "detail_type",
    [
        "Batch Cancelled",
        "Batch Finished Before Cancel",
        "Batch Cancel Failed",
        "Batch Cancel Stalled",
    ],
)
def test_the_functions_own_event_is_a_receipt(detail_type: str) -> None:
    parsed = parse_message_body(envelope(detail_type, {"batch_id": "batch_1", "status": "x"}))

    assert parsed == PublicationReceipt("batch_1", detail_type, "batch-canceller")


def test_a_cancel_requested_event_routed_through_the_queue_is_its_command() -> None:
    parsed = parse_message_body(envelope("Batch Cancel Requested", {"batch_ids": ["b1", "b2"]}))

    assert parsed == CancelCommand(batch_ids=("b1", "b2"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (envelope("Batch Sweep Completed", {}), "unsupported 'detail-type'"),
        (envelope("Something Else", {"batch_id": "b1"}), "unsupported 'detail-type'"),
        (envelope("Batch Cancelled", {"batch_id": "../etc"}), "invalid batch ID"),
        (envelope("Batch Cancelled", ["b1"]), "must be an object"),
        (envelope("Batch Cancelled", {"batch_id": "b1"}, source=""), "'source' must not be empty"),
        (envelope("Batch Cancel Requested", {"check": {}}), "must be a command or sweep"),
    ],
)
def test_an_unusable_event_on_the_queue_is_invalid_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_message_body(text)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (body({"detail-type": [], "source": "x", "detail": {}}), "'detail-type'"),
        (body({"detail-type": {}, "source": "x", "detail": {}}), "'detail-type'"),
        (envelope("Batch Cancelled", {"batch_id": ["b"]}), "'detail.batch_id'"),
        (envelope("Batch Cancelled", {}), "'detail.batch_id' is required"),
        (envelope("Batch Cancelled", {"batch_id": "b"}, source=[]), "'source'"),  # type: ignore[arg-type]
        (envelope("Batch Cancel Requested", {"batch_ids": [[]]}), "'detail.batch_ids[0]'"),
        (envelope("Batch Cancel Requested", {"batch_id": "b", "x": 1}), "'detail.x'"),
        (envelope("Batch Cancel Requested", []), "'detail'"),
    ],
)
def test_a_malformed_event_on_the_queue_names_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_message_body(text)
    assert field in str(caught.value)


@pytest.mark.parametrize("time", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", 5, []])
def test_an_odd_receipt_time_is_no_time_not_an_error(time: object) -> None:
    envelope_ = json.loads(envelope("Batch Cancelled", {"batch_id": "b1"}))
    envelope_["time"] = time
    receipt = parse_message_body(body(envelope_))
    assert isinstance(receipt, PublicationReceipt)
    assert receipt.published_at is None or receipt.published_at.tzinfo is not None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"attempt": 2**70}, "'check.attempt'"),
        ({"watch_id": "w" * 300_000}, "'check.watch_id'"),
        ({"since": "9999-12-31T23:59:59+00:00"}, "'check.since' is out of range"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "'check.since'"),
        ({"step": None}, "'check.step'"),
        ({"extra": 1}, "'check.extra'"),
    ],
)
def test_an_odd_status_check_value_is_an_error_naming_it(
    change: dict[str, object], field: str
) -> None:
    check: dict[str, object] = {
        "batch_id": "batch_a",
        "watch_id": "watch-1",
        "attempt": 1,
        "since": "2026-01-02T03:04:05+00:00",
    }
    check.update(change)
    with pytest.raises(InvalidInput) as caught:
        parse_payload({"check": check})
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"batch_id": "batch_a", "cancel_at": None}, "'cancel_at' must not be null"),
        ({"batch_id": "batch_a", "cancel_at": "9999-12-31T23:59:59-14:00"}, "'cancel_at'"),
        ({"batch_ids": ["batch_a", {}]}, "'batch_ids[1]'"),
        ({"batch_ids": ["batch_a"], "reason": ["r"]}, "'reason'"),
    ],
)
def test_an_odd_command_value_is_an_error_naming_it(payload: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_payload(payload)
    assert field in str(caught.value)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1" * 5000])
def test_numbers_json_does_not_have_are_invalid_json(text: str) -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_message_body('{"sweep": {"older_than_minutes": ' + text + "}}")
