"""The event ledger's writes against DynamoDB (moto server): each arrow of the state diagram in
docs/exactly-once.md is one conditional write, and only its own condition lets it through."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from batch_canceller.announce_protocol import Claim
from batch_canceller.event_ledger import EventLedger
from batch_canceller.store import BatchStore
from tests.support import create_batches_table

CANCELLED = "Batch Cancelled"
FAILED = "Batch Cancel Failed"
STALLED = "Batch Cancel Stalled"
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> float:
        """Epoch seconds `seconds` after START (a lease's end)."""
        return (START + timedelta(seconds=seconds)).timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tables(moto_url: str, clock: Clock) -> tuple[BatchStore, EventLedger]:
    dynamodb: Any = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1")
    table = f"ledger-{uuid.uuid4().hex[:10]}"
    create_batches_table(dynamodb, table)
    return BatchStore(dynamodb, table, clock), EventLedger(dynamodb, table, clock)


def cancelled(batch_id: str = "batch_l1") -> dict[str, Any]:
    return {"id": batch_id, "object": "batch", "status": "cancelled"}


def test_the_transition_write_owes_the_event_and_claims_it_for_the_writer(
    tables: tuple[BatchStore, EventLedger], clock: Clock
) -> None:
    store, _ = tables

    first = store.save_batch("batch_l1", cancelled(), claim=Claim("m1/a", clock.at(100)))
    again = store.save_batch("batch_l1", cancelled(), claim=Claim("m2/b", clock.at(100)))

    assert first.claimed == {CANCELLED}
    assert first.record.claims[CANCELLED] == Claim("m1/a", clock.at(100))
    # The duplicate changes nothing: it neither owes the event again nor takes the claim.
    assert not again.changed
    assert again.claimed == frozenset()
    assert again.record.claims[CANCELLED].token == "m1/a"


@pytest.mark.parametrize("kind", ["error", "stall"])
def test_error_and_stall_transitions_claim_like_a_terminal_status(
    tables: tuple[BatchStore, EventLedger], clock: Clock, kind: str
) -> None:
    store, _ = tables
    claim = Claim("m1/a", clock.at(100))
    if kind == "error":
        result = store.save_error("batch_l1", {"http_status": 404}, announce=True, claim=claim)
        detail_type = FAILED
    else:
        from batch_canceller.records import Watch

        store.save_batch(
            "batch_l1",
            {"id": "batch_l1", "status": "cancelling"},
            watch=Watch("w1", START),
        )
        result = store.mark_stalled("batch_l1", "w1", claim)
        detail_type = STALLED

    assert result.claimed == {detail_type}
    assert result.record.claims[detail_type] == claim


def test_a_live_claim_cannot_be_taken(tables: tuple[BatchStore, EventLedger], clock: Clock) -> None:
    store, ledger = tables
    store.save_batch("batch_l1", cancelled(), claim=Claim("m1/a", clock.at(100)))
    clock.now = START + timedelta(seconds=99)

    lost_to = ledger.claim("batch_l1", CANCELLED, Claim("m1/b", clock.at(300)))

    assert lost_to is not None
    assert lost_to.claims[CANCELLED].token == "m1/a"  # what the failed write saw


def test_a_lapsed_claim_is_taken_by_exactly_one_of_two_racers(
    tables: tuple[BatchStore, EventLedger], clock: Clock
) -> None:
    store, ledger = tables
    store.save_batch("batch_l1", cancelled(), claim=Claim("m1/a", clock.at(100)))
    clock.now = START + timedelta(seconds=101)

    first = ledger.claim("batch_l1", CANCELLED, Claim("m1/b", clock.at(400)))
    second = ledger.claim("batch_l1", CANCELLED, Claim("m2/c", clock.at(400)))

    assert first is None  # won
    assert second is not None
    assert second.claims[CANCELLED].token == "m1/b"
    record = store.get("batch_l1")
    assert record is not None
    assert record.claims[CANCELLED].token == "m1/b"


def test_an_event_not_owed_cannot_be_claimed(
    tables: tuple[BatchStore, EventLedger], clock: Clock
) -> None:
    store, ledger = tables
    store.save_batch("batch_l1", cancelled(), claim=Claim("m1/a", clock.at(100)))
    assert ledger.mark_announced("batch_l1", CANCELLED)
    clock.now = START + timedelta(seconds=500)

    lost_to = ledger.claim("batch_l1", CANCELLED, Claim("m2/b", clock.at(900)))

    assert lost_to is not None
    assert lost_to.announced_events == {CANCELLED}
    assert CANCELLED not in lost_to.claims


def test_release_frees_the_claim_only_for_its_holder(
    tables: tuple[BatchStore, EventLedger], clock: Clock
) -> None:
    store, ledger = tables
    store.save_batch("batch_l1", cancelled(), claim=Claim("m1/a", clock.at(100)))

    assert not ledger.release_claim("batch_l1", CANCELLED, "m1/other-invocation")
    assert ledger.release_claim("batch_l1", CANCELLED, "m1/a")

    record = store.get("batch_l1")
    assert record is not None
    assert CANCELLED not in record.claims
    assert record.pending_events == {CANCELLED}
    # Free now: anyone may claim it at once, no lease to wait for.
    assert ledger.claim("batch_l1", CANCELLED, Claim("m2/b", clock.at(100))) is None


def test_mark_announced_ends_the_claim_and_is_final(
    tables: tuple[BatchStore, EventLedger], clock: Clock
) -> None:
    store, ledger = tables
    store.save_batch("batch_l1", cancelled(), claim=Claim("m1/a", clock.at(100)))

    assert ledger.mark_announced("batch_l1", CANCELLED)
    assert not ledger.mark_announced("batch_l1", CANCELLED)  # a late receipt: nothing to do

    record = store.get("batch_l1")
    assert record is not None
    assert record.pending_events == frozenset()
    assert record.announced_events == {CANCELLED}
    assert record.claims == {}


def test_a_claim_whose_lease_ends_exactly_now_is_lapsed_for_the_write_as_for_the_table(
    tables: tuple[BatchStore, EventLedger], clock: Clock
) -> None:
    # The model-based test found a message spinning when the two disagreed at this instant:
    # the table said "claim it", the write's condition said "still live".
    from batch_canceller.announce_protocol import Step, decide

    store, ledger = tables
    saved = store.save_batch("batch_l1", cancelled(), claim=Claim("m1/a", clock.at(100)))
    clock.now = START + timedelta(seconds=100)

    assert decide(saved.record.ledger(CANCELLED), False, clock.now.timestamp()).step is Step.CLAIM
    assert ledger.claim("batch_l1", CANCELLED, Claim("m2/b", clock.at(400))) is None


def test_claims_and_settling_marks_ask_for_no_item_when_they_pass(
    tables: tuple[BatchStore, EventLedger], clock: Clock
) -> None:
    # Their callers use the item only when the condition fails (ALL_OLD answers it then): a
    # passing write answered with the whole item would be parsed for nothing.
    store, ledger = tables
    store.save_batch("batch_l1", cancelled(), claim=Claim("m1/a", clock.at(100)))
    asked: list[tuple[str, str | None]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        asked.append((params["UpdateExpression"].split()[0], params.get("ReturnValues")))

    ledger._client.meta.events.register("provide-client-params.dynamodb.UpdateItem", record)
    clock.now = START + timedelta(seconds=101)

    assert ledger.claim("batch_l1", CANCELLED, Claim("m2/b", clock.at(400))) is None
    assert ledger.mark_announced("batch_l1", CANCELLED)

    assert asked == [("SET", "NONE"), ("DELETE", "NONE")]
    record_after = store.get("batch_l1")
    assert record_after is not None
    assert record_after.announced_events == {CANCELLED}
    assert not record_after.follow_through
