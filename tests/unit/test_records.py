"""BatchStore against DynamoDB (moto in server mode): writes never regress, events owed once,
the status-check chain advances one step per token."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from batch_canceller.event_ledger import EventLedger
from batch_canceller.json_values import plain
from batch_canceller.records import Watch
from batch_canceller.store import BatchStore
from tests.support import create_batches_table

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
NOW_TEXT = "2026-01-02T03:04:05.678Z"
CANCELLED = "Batch Cancelled"
FINISHED = "Batch Finished Before Cancel"
FAILED = "Batch Cancel Failed"
STALLED = "Batch Cancel Stalled"


@pytest.fixture(scope="module")
def dynamodb(moto_url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1")


@pytest.fixture
def store(dynamodb: Any) -> BatchStore:
    """A fresh table shaped like BatchesTable (only the table: a whole stack is slower)."""
    table = f"batches-{uuid.uuid4().hex[:10]}"
    create_batches_table(dynamodb, table)
    return BatchStore(dynamodb, table, clock=lambda: NOW)


@pytest.fixture
def ledger(store: BatchStore, dynamodb: Any) -> EventLedger:
    """The event ledger's writes, on the same table as `store`."""
    return EventLedger(dynamodb, store._table, clock=lambda: NOW)


def batch(status: str, batch_id: str = "batch_r1", **extra: Any) -> dict[str, Any]:
    """A Batch object as the API client hands it over (floats as Decimal)."""
    return {"id": batch_id, "object": "batch", "status": status, "created_at": 1700000000, **extra}


def error(status: int = 404) -> dict[str, Any]:
    return {
        "http_status": status,
        "type": "invalid_request_error",
        "code": None,
        "message": "No batch found with id 'batch_r1'.",
        "at": NOW_TEXT,
    }


# -- the first write -----------------------------------------------------------------------


def test_first_save_stores_status_batch_time_reason_and_requester(store: BatchStore) -> None:
    result = store.save_batch(
        "batch_r1", batch("cancelling"), reason="nightly cutoff", requested_by="ops@example.com"
    )

    assert result.changed
    stored = store.get("batch_r1")
    assert stored is not None
    assert stored == result.record
    assert stored.status == "cancelling"
    assert plain(stored.batch) == batch("cancelling")
    assert stored.updated_at == NOW_TEXT
    assert stored.reason == "nightly cutoff"
    assert stored.requested_by == "ops@example.com"
    assert stored.last_error is None
    assert stored.pending_events == frozenset()


def test_missing_item_reads_as_none(store: BatchStore) -> None:
    assert store.get("batch_nothing") is None


def test_later_write_without_reason_keeps_the_stored_reason(store: BatchStore) -> None:
    store.save_batch("batch_r1", batch("in_progress"), reason="cutoff", requested_by="ops")

    result = store.save_batch("batch_r1", batch("cancelling"))

    assert result.changed
    assert result.record.reason == "cutoff"
    assert result.record.requested_by == "ops"


# -- writes never regress ------------------------------------------------------------------


def test_cancelling_after_cancelled_is_ignored(store: BatchStore) -> None:
    # GIVEN a batch stored as cancelled
    store.save_batch("batch_r1", batch("cancelled", cancelled_at=1700000100))

    # WHEN a stale `cancelling` answer arrives
    result = store.save_batch("batch_r1", batch("cancelling"))

    # THEN nothing changes and the stored cancelled record is what comes back
    assert not result.changed
    assert result.record.status == "cancelled"
    assert plain(result.record.batch) == batch("cancelled", cancelled_at=1700000100)
    stored = store.get("batch_r1")
    assert stored is not None
    assert stored.status == "cancelled"


def test_in_progress_after_cancelling_is_ignored(store: BatchStore) -> None:
    store.save_batch("batch_r1", batch("cancelling"))

    result = store.save_batch("batch_r1", batch("in_progress"))

    assert not result.changed
    assert result.record.status == "cancelling"
    stored = store.get("batch_r1")
    assert stored is not None
    assert stored.status == "cancelling"


def test_completed_after_cancelled_is_ignored_because_terminal_is_final(store: BatchStore) -> None:
    store.save_batch("batch_r1", batch("cancelled"))

    result = store.save_batch("batch_r1", batch("completed"))

    assert not result.changed
    assert result.record.status == "cancelled"
    assert result.record.pending_events == frozenset({CANCELLED})


def test_same_rank_non_terminal_write_overwrites(store: BatchStore) -> None:
    store.save_batch("batch_r1", batch("in_progress", request_counts={"completed": 1}))

    result = store.save_batch("batch_r1", batch("in_progress", request_counts={"completed": 7}))

    assert result.changed
    stored = store.get("batch_r1")
    assert stored is not None
    assert plain(stored.batch)["request_counts"] == {"completed": 7}


def test_forward_write_is_applied(store: BatchStore) -> None:
    store.save_batch("batch_r1", batch("validating"))

    result = store.save_batch("batch_r1", batch("cancelling"))

    assert result.changed
    assert result.record.status == "cancelling"


# -- terminal writes owe one event ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail_type"),
    [
        ("cancelled", CANCELLED),
        ("completed", FINISHED),
        ("failed", FINISHED),
        ("expired", FINISHED),
    ],
)
def test_terminal_write_adds_exactly_one_pending_event(
    store: BatchStore, status: str, detail_type: str
) -> None:
    store.save_batch("batch_r1", batch("cancelling"))

    result = store.save_batch("batch_r1", batch(status))
    store.save_batch("batch_r1", batch(status))  # a duplicate delivery

    assert result.record.pending_events == frozenset({detail_type})
    stored = store.get("batch_r1")
    assert stored is not None
    assert stored.pending_events == frozenset({detail_type})


@pytest.mark.parametrize("status", ["validating", "in_progress", "finalizing", "cancelling"])
def test_non_terminal_write_owes_no_event(store: BatchStore, status: str) -> None:
    result = store.save_batch("batch_r1", batch(status))
    assert result.record.pending_events == frozenset()


def test_mark_announced_moves_the_event_from_pending_to_announced(
    store: BatchStore, ledger: EventLedger
) -> None:
    store.save_batch("batch_r1", batch("cancelled"))

    ledger.mark_announced("batch_r1", CANCELLED)
    ledger.mark_announced("batch_r1", CANCELLED)  # harmless the second time

    stored = store.get("batch_r1")
    assert stored is not None
    assert stored.pending_events == frozenset()
    assert stored.announced_events == frozenset({CANCELLED})


def test_mark_announced_of_an_event_not_pending_changes_nothing(
    store: BatchStore, ledger: EventLedger
) -> None:
    store.save_batch("batch_r1", batch("cancelling"))

    ledger.mark_announced("batch_r1", CANCELLED)

    stored = store.get("batch_r1")
    assert stored is not None
    assert stored.announced_events == frozenset()


def test_terminal_event_is_not_owed_again_after_it_was_announced(
    store: BatchStore, ledger: EventLedger
) -> None:
    store.save_batch("batch_r1", batch("cancelled"))
    ledger.mark_announced("batch_r1", CANCELLED)

    result = store.save_batch("batch_r1", batch("cancelled"))

    assert not result.changed
    assert result.record.pending_events == frozenset()


# -- permanent errors ----------------------------------------------------------------------


def test_save_error_with_announce_owes_one_cancel_failed_event_across_repeats(
    store: BatchStore, ledger: EventLedger
) -> None:
    first = store.save_error("batch_r1", error(), announce=True, reason="cutoff")
    second = store.save_error("batch_r1", error(410), announce=True)

    assert first.record.pending_events == frozenset({FAILED})
    assert second.record.pending_events == frozenset({FAILED})
    assert second.record.last_error is not None
    assert plain(second.record.last_error)["http_status"] == 410
    assert second.record.reason == "cutoff"

    # AND once announced, a further error updates last_error but owes nothing new
    ledger.mark_announced("batch_r1", FAILED)
    third = store.save_error("batch_r1", error(400), announce=True)
    assert third.record.pending_events == frozenset()
    assert third.record.announced_events == frozenset({FAILED})
    assert third.record.last_error is not None
    assert plain(third.record.last_error)["http_status"] == 400


def test_save_error_without_announce_records_the_error_only(store: BatchStore) -> None:
    result = store.save_error("batch_r1", error(401), announce=False)

    assert result.record.pending_events == frozenset()
    assert result.record.last_error is not None
    assert plain(result.record.last_error) == error(401)
    assert result.record.updated_at == NOW_TEXT


def test_save_batch_removes_last_error(store: BatchStore) -> None:
    store.save_error("batch_r1", error(401), announce=False)

    result = store.save_batch("batch_r1", batch("cancelling"))

    assert result.changed
    assert result.record.last_error is None
    stored = store.get("batch_r1")
    assert stored is not None
    assert stored.last_error is None


# -- the batch attribute holds the API JSON exactly ----------------------------------------


def test_batch_attribute_round_trips_to_the_api_json(store: BatchStore) -> None:
    # GIVEN an API answer with unknown fields, nulls, nested lists, floats and large ints
    text = json.dumps(
        {
            "id": "batch_r1",
            "object": "batch",
            "status": "in_progress",
            "created_at": 1700000000,
            "errors": None,
            "metadata": {"team": "ml", "note": ""},
            "request_counts": {"total": 100, "completed": 3, "failed": 0},
            "future_field": {"nested": [[1, 2.5, None], [], {}], "flag": True},
            "score": 0.1,
            "tiny": 1e-7,
            "big": 12345678901234567890123,
            "negative": -42,
            "list_of_maps": [{"a": None}, {"b": [0.25]}],
        }
    )
    api_batch = json.loads(text, parse_float=Decimal)

    # WHEN it is stored and read back
    store.save_batch("batch_r1", api_batch)
    stored = store.get("batch_r1")

    # THEN the batch attribute is the same JSON value
    assert stored is not None
    assert plain(stored.batch) == json.loads(text)


# -- status-check chains -------------------------------------------------------------------


def watched(store: BatchStore, watch_id: str = "watch-1") -> None:
    store.save_batch("batch_r1", batch("cancelling"), watch=Watch(watch_id, NOW))


def test_save_batch_with_a_watch_starts_a_chain_in_the_same_write(store: BatchStore) -> None:
    saved = store.save_batch("batch_r1", batch("cancelling"), watch=Watch("watch-1", NOW))

    assert saved.record.watch_id == "watch-1"
    stored = store.get("batch_r1")
    assert stored is not None
    assert (stored.watch_id, stored.watch_since) == ("watch-1", NOW)
    # No step taken yet: the first check takes step 1 when it arrives.
    assert (stored.poll_attempt, stored.poll_step) == (0, None)


def test_a_second_cancel_keeps_the_chain_that_follows_the_batch(store: BatchStore) -> None:
    # GIVEN a batch watched since NOW, its chain at step 3
    watched(store)
    assert store.take_step("batch_r1", "watch-1", 1, "s1").changed
    assert store.take_step("batch_r1", "watch-1", 2, "s2").changed
    assert store.take_step("batch_r1", "watch-1", 3, "s3").changed

    # WHEN it is asked to cancel again an hour later
    later = NOW + timedelta(hours=1)
    saved = store.save_batch("batch_r1", batch("cancelling"), watch=Watch("watch-2", later))

    # THEN the running chain goes on, its clock from the first sighting
    assert (saved.record.watch_id, saved.record.watch_since) == ("watch-1", NOW)
    assert (saved.record.poll_attempt, saved.record.poll_step) == (3, "s3")


def test_start_watch_replaces_only_the_chain_it_names(store: BatchStore) -> None:
    watched(store)
    later = NOW + timedelta(hours=1)

    won = store.start_watch("batch_r1", Watch("watch-2", later), replacing="watch-1")
    lost = store.start_watch("batch_r1", Watch("watch-3", later), replacing="watch-1")

    assert won.changed
    assert not lost.changed
    assert (lost.record.watch_id, lost.record.watch_since) == ("watch-2", later)
    assert (lost.record.poll_attempt, lost.record.poll_step) == (0, None)


def test_start_watch_without_a_chain_starts_one_once(store: BatchStore) -> None:
    store.save_batch("batch_r1", batch("cancelling"))  # no watch

    first = store.start_watch("batch_r1", Watch("watch-a", NOW), replacing=None)
    second = store.start_watch("batch_r1", Watch("watch-b", NOW), replacing=None)

    assert first.changed
    assert not second.changed
    assert second.record.watch_id == "watch-a"


def test_take_step_gives_each_step_to_one_token(store: BatchStore) -> None:
    watched(store)

    won = store.take_step("batch_r1", "watch-1", 1, "step-1a")
    lost = store.take_step("batch_r1", "watch-1", 1, "step-1b")  # a second check 1

    assert won.changed
    assert not lost.changed
    assert (lost.record.poll_attempt, lost.record.poll_step) == (1, "step-1a")
    stored = store.get("batch_r1")
    assert stored is not None
    assert (stored.poll_attempt, stored.poll_step) == (1, "step-1a")


def test_take_step_skips_no_step(store: BatchStore) -> None:
    watched(store)

    assert not store.take_step("batch_r1", "watch-1", 2, "step-2").changed
    stored = store.get("batch_r1")
    assert stored is not None
    assert stored.poll_attempt == 0


def test_take_step_rejects_a_stale_chain(store: BatchStore) -> None:
    watched(store, "watch-old")
    store.start_watch("batch_r1", Watch("watch-new", NOW), replacing="watch-old")

    assert not store.take_step("batch_r1", "watch-old", 1, "step-1").changed
    stored = store.get("batch_r1")
    assert stored is not None
    assert (stored.watch_id, stored.poll_attempt) == ("watch-new", 0)


def test_mark_stalled_owes_one_stalled_event_and_never_twice(
    store: BatchStore, ledger: EventLedger
) -> None:
    watched(store)

    first = store.mark_stalled("batch_r1", "watch-1")
    second = store.mark_stalled("batch_r1", "watch-1")
    ledger.mark_announced("batch_r1", STALLED)
    third = store.mark_stalled("batch_r1", "watch-1")

    assert first.changed
    assert first.record.pending_events == frozenset({STALLED})
    assert not second.changed
    assert not third.changed
    assert third.record.pending_events == frozenset()
    assert third.record.announced_events == frozenset({STALLED})


def test_mark_stalled_with_another_watch_changes_nothing(store: BatchStore) -> None:
    watched(store, "watch-current")

    result = store.mark_stalled("batch_r1", "watch-other")

    assert not result.changed
    assert result.record.pending_events == frozenset()


def test_mark_stalled_after_the_batch_left_cancelling_changes_nothing(
    store: BatchStore, ledger: EventLedger
) -> None:
    watched(store)
    store.save_batch("batch_r1", batch("cancelled"))
    ledger.mark_announced("batch_r1", CANCELLED)

    result = store.mark_stalled("batch_r1", "watch-1")

    assert not result.changed
    assert STALLED not in result.record.pending_events
    assert result.record.status == "cancelled"


# -- receipts ------------------------------------------------------------------------------


def test_owed_claims_of_reads_many_batches_and_skips_unknown_ones(
    store: BatchStore, ledger: EventLedger
) -> None:
    # GIVEN 130 batches owing an event (more than one BatchGetItem takes) and one that owes none
    ids = [f"batch_p{index}" for index in range(130)]
    for batch_id in ids:
        store.save_batch(batch_id, batch("cancelled"))
    ledger.mark_announced(ids[0], "Batch Cancelled")

    # WHEN the owed events of all of them, and of an unknown batch, are read
    pending = ledger.owed_claims_of([*ids, "batch_unknown", ids[1]])

    # THEN each known batch has its own answer (unclaimed: no token); the unknown one has none
    assert pending[ids[0]] == {}
    assert all(pending[batch_id] == {"Batch Cancelled": None} for batch_id in ids[1:])
    assert "batch_unknown" not in pending
