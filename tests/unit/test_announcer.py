"""Follow-up events: the contract's detail shapes, PutEvents chunking, and per-entry results."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from batch_canceller.announce_protocol import PutOutcome
from batch_canceller.announcer import (
    PUT_EVENTS_MAX_BYTES,
    PUT_EVENTS_MAX_ENTRIES,
    Announcement,
    EventPublisher,
    _chunks,
    announcement_from,
)
from batch_canceller.records import BatchRecord
from tests.support import Stack, client

BATCH_KEYS = {"batch_id", "status", "batch", "reason", "requested_by", "publication_id"}
# The token of the claim an event is published under (a message ID, "/", a nonce).
PUBLICATION = "msg-1/0123456789ab"


def record(batch_id: str = "batch_e1", status: str = "cancelled", **fields: Any) -> BatchRecord:
    values: dict[str, Any] = {
        "batch_id": batch_id,
        "status": status,
        "batch": {"id": batch_id, "status": status, "score": Decimal("0.1"), "n": Decimal(3)},
        "updated_at": "2026-01-02T03:04:05.000Z",
        "reason": "nightly cutoff",
        "requested_by": "ops@example.com",
    }
    values.update(fields)
    return BatchRecord(**values)


def entry(detail: str, detail_type: str = "Batch Cancelled") -> dict[str, Any]:
    return {
        "Source": "batch-canceller",
        "DetailType": detail_type,
        "Detail": detail,
        "EventBusName": "bus",
    }


# -- detail shapes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "detail_type", ["Batch Cancelled", "Batch Finished Before Cancel", "Batch Cancel Stalled"]
)
def test_batch_outcome_details_have_exactly_the_contract_keys(detail_type: str) -> None:
    announcement = announcement_from(record(), detail_type, PUBLICATION)

    assert announcement.detail_type == detail_type
    assert announcement.batch_id == "batch_e1"
    assert set(announcement.detail) == BATCH_KEYS
    assert announcement.detail["batch_id"] == "batch_e1"
    assert announcement.detail["status"] == "cancelled"
    assert announcement.detail["batch"]["id"] == "batch_e1"
    assert announcement.detail["reason"] == "nightly cutoff"
    assert announcement.detail["requested_by"] == "ops@example.com"


def test_outcome_detail_keeps_absent_reason_and_requester_as_null() -> None:
    announcement = announcement_from(
        record(reason=None, requested_by=None), "Batch Finished Before Cancel", PUBLICATION
    )
    assert set(announcement.detail) == BATCH_KEYS
    assert announcement.detail["reason"] is None
    assert announcement.detail["requested_by"] is None


def test_cancel_failed_detail_has_exactly_batch_id_and_error() -> None:
    error = {
        "http_status": 404,
        "type": "invalid_request_error",
        "code": None,
        "message": "No batch found with id 'batch_e1'.",
        "at": "2026-01-02T03:04:05.000Z",
    }

    announcement = announcement_from(record(last_error=error), "Batch Cancel Failed", PUBLICATION)

    assert announcement.detail == {
        "batch_id": "batch_e1",
        "error": error,
        "publication_id": PUBLICATION,
    }


# -- chunking ------------------------------------------------------------------------------


def chunk_bytes(chunk: list[dict[str, Any]]) -> int:
    return sum(
        len(e["Detail"].encode())
        + len(e["DetailType"].encode())
        + len(e["Source"].encode())
        + len(e["EventBusName"].encode())
        for e in chunk
    )


def test_chunks_hold_at_most_ten_entries_in_order() -> None:
    entries = [entry(json.dumps({"n": n})) for n in range(25)]

    chunks = _chunks(entries)

    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [e for c in chunks for e in c] == entries
    assert PUT_EVENTS_MAX_ENTRIES == 10


def test_chunks_never_exceed_the_byte_cap() -> None:
    # GIVEN entries so large that ten of them would far exceed the request size cap
    big = json.dumps({"blob": "x" * 60_000})
    entries = [entry(big) for _ in range(10)] + [entry("{}") for _ in range(5)]

    chunks = _chunks(entries)

    assert [e for c in chunks for e in c] == entries
    for chunk in chunks:
        assert len(chunk) <= PUT_EVENTS_MAX_ENTRIES
        assert chunk_bytes(chunk) <= PUT_EVENTS_MAX_BYTES
    assert PUT_EVENTS_MAX_BYTES < 256 * 1024


def test_chunks_of_mixed_sizes_respect_both_limits() -> None:
    sizes = [1, 90_000, 5, 70_000, 70_000, 3, 120_000, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 50_000]
    entries = [entry(json.dumps({"pad": "y" * size})) for size in sizes]

    chunks = _chunks(entries)

    assert [e for c in chunks for e in c] == entries
    for chunk in chunks:
        assert 1 <= len(chunk) <= PUT_EVENTS_MAX_ENTRIES
        assert chunk_bytes(chunk) <= PUT_EVENTS_MAX_BYTES


def test_no_entries_make_no_chunks() -> None:
    assert _chunks([]) == []


# -- publishing ----------------------------------------------------------------------------


def test_publish_to_the_bus_accepts_every_event_and_delivers_it(stack: Stack) -> None:
    # GIVEN twelve announcements (more than one PutEvents call)
    publisher = EventPublisher(client("events", stack.endpoint), stack.bus_name, "batch-canceller")
    announcements = [
        announcement_from(record(batch_id=f"batch_p{n:02d}"), "Batch Cancelled", PUBLICATION)
        for n in range(12)
    ]

    # WHEN they are published, one PutEvents per chunk
    chunks = publisher.chunked(announcements)
    outcomes = [outcome for chunk in chunks for outcome in publisher.put(chunk)]

    # THEN every one was accepted and reaches the bus with its detail as plain JSON
    assert [len(chunk) for chunk in chunks] == [10, 2]
    assert [a for chunk in chunks for a in chunk] == announcements
    assert outcomes == [PutOutcome.ACCEPTED] * 12
    events = stack.events_of("Batch Cancelled")
    assert sorted(e["detail"]["batch_id"] for e in events) == [f"batch_p{n:02d}" for n in range(12)]
    detail = events[0]["detail"]
    assert set(detail) == BATCH_KEYS
    assert detail["batch"]["score"] == 0.1
    assert detail["batch"]["n"] == 3
    assert events[0]["source"] == "batch-canceller"


class FakeEvents:
    """An EventBridge client answering PutEvents with a prepared answer (or error)."""

    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self._answer = answer
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        if isinstance(self._answer, Exception):
            raise self._answer
        return self._answer


def three() -> list[Announcement]:
    return [
        announcement_from(record(batch_id=f"batch_f{n}"), "Batch Cancelled", PUBLICATION)
        for n in range(3)
    ]


def test_failed_entry_is_reported_false_at_its_position() -> None:
    events = FakeEvents(
        {
            "FailedEntryCount": 1,
            "Entries": [
                {"EventId": "id-0"},
                {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"},
                {"EventId": "id-2"},
            ],
        }
    )
    publisher = EventPublisher(events, "bus", "batch-canceller")  # type: ignore[arg-type]

    assert publisher.put(three()) == [PutOutcome.ACCEPTED, PutOutcome.REFUSED, PutOutcome.ACCEPTED]
    [sent] = events.calls
    assert [json.loads(e["Detail"])["batch_id"] for e in sent] == [
        "batch_f0",
        "batch_f1",
        "batch_f2",
    ]
    assert {e["EventBusName"] for e in sent} == {"bus"}
    assert {e["Source"] for e in sent} == {"batch-canceller"}


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutEvents"
    )


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        # The bus said no, or the request never left: nothing was published.
        (_client_error("ThrottlingException", 400), PutOutcome.REFUSED),
        (_client_error("AccessDeniedException", 403), PutOutcome.REFUSED),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), PutOutcome.REFUSED),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), PutOutcome.REFUSED),
        # The request may have been accepted: not known.
        (_client_error("InternalException", 500), PutOutcome.UNKNOWN),
        (_client_error("ServiceUnavailable", 503), PutOutcome.UNKNOWN),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), PutOutcome.UNKNOWN),
        (ConnectionClosedError(endpoint_url="http://127.0.0.1:1"), PutOutcome.UNKNOWN),
    ],
)
def test_a_put_events_error_is_refused_only_when_nothing_can_have_been_published(
    failure: Exception, outcome: PutOutcome
) -> None:
    publisher = EventPublisher(FakeEvents(failure), "bus", "batch-canceller")  # type: ignore[arg-type]

    assert publisher.put(three()) == [outcome] * 3


def test_answer_with_the_wrong_number_of_entries_is_not_known() -> None:
    events = FakeEvents({"FailedEntryCount": 0, "Entries": [{"EventId": "id-0"}]})
    publisher = EventPublisher(events, "bus", "batch-canceller")  # type: ignore[arg-type]

    assert publisher.put(three()) == [PutOutcome.UNKNOWN] * 3


def test_the_events_client_makes_exactly_one_attempt_per_call() -> None:
    from batch_canceller.announcer import EVENTS_CALL_SECONDS
    from batch_canceller.service import aws_config, events_config

    config = events_config(32)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    # A stuck PutEvents ends within what the invocation keeps for one.
    assert config.connect_timeout + config.read_timeout <= EVENTS_CALL_SECONDS
    # Everything else is the shared client configuration.
    assert config.max_pool_connections == aws_config(32).max_pool_connections
    assert config.parameter_validation == aws_config(32).parameter_validation
