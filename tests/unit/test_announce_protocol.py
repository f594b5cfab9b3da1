"""The protocol's tables (docs/exactly-once.md), every combination of their inputs, each row
written out by hand: what one delivery does about one owed event, and after its PutEvents."""

from __future__ import annotations

import itertools

import pytest

from batch_canceller.announce_protocol import (
    PUT_ATTEMPTS,
    Claim,
    Decision,
    Delivery,
    Ledger,
    PutOutcome,
    Settle,
    Step,
    after_put,
    decide,
)

NOW = 1_000_000.0
CLAIMS = {
    "none": None,
    "live": Claim("msg-2/b", NOW + 30),
    "lapsed": Claim("msg-2/b", NOW - 1),
    "ends now": Claim("msg-2/b", NOW),  # a lease that ends now has ended
}

# (owed, claim, claimed_here) -> decision. A claim this run wrote shows in the record too; a
# row with claimed_here and no live claim cannot happen, but the table still answers it.
DECIDE_TABLE = {
    (False, "none", False): Decision(Step.DONE),
    (False, "none", True): Decision(Step.DONE),
    (False, "live", False): Decision(Step.DONE),
    (False, "live", True): Decision(Step.DONE),
    (False, "lapsed", False): Decision(Step.DONE),
    (False, "lapsed", True): Decision(Step.DONE),
    (False, "ends now", False): Decision(Step.DONE),
    (False, "ends now", True): Decision(Step.DONE),
    (True, "none", False): Decision(Step.CLAIM),
    (True, "none", True): Decision(Step.PUBLISH),
    (True, "live", False): Decision(Step.WAIT, 30.0),
    (True, "live", True): Decision(Step.PUBLISH),
    (True, "lapsed", False): Decision(Step.CLAIM),
    (True, "lapsed", True): Decision(Step.PUBLISH),
    (True, "ends now", False): Decision(Step.CLAIM),
    (True, "ends now", True): Decision(Step.PUBLISH),
}


def test_the_decide_table_covers_every_combination() -> None:
    combinations = set(itertools.product([False, True], CLAIMS, [False, True]))
    assert set(DECIDE_TABLE) == combinations


@pytest.mark.parametrize(("row", "expected"), DECIDE_TABLE.items(), ids=str)
def test_decide(row: tuple[bool, str, bool], expected: Decision) -> None:
    owed, claim, claimed_here = row
    assert decide(Ledger(owed, CLAIMS[claim]), claimed_here, NOW) == expected


def test_a_live_claim_of_another_copy_of_the_same_message_is_waited_for() -> None:
    # Two copies of one SQS message handled at once share the message ID, not the delivery:
    # nothing in the table treats the message ID as "mine".
    twin = Claim(Delivery("msg-1", "other-invocation").token, NOW + 5)
    assert decide(Ledger(True, twin), claimed_here=False, now=NOW) == Decision(Step.WAIT, 5.0)


def test_a_delivery_token_names_the_message_and_the_invocation() -> None:
    assert Delivery("msg-1", "3f9a").token == "msg-1/3f9a"
    assert Delivery("msg-1", "3f9a").token != Delivery("msg-1", "77c0").token


# (outcome, attempts so far, time left) -> what to do about the entry.
AFTER_PUT_TABLE = {
    (PutOutcome.ACCEPTED, 1, True): Settle.MARK,
    (PutOutcome.ACCEPTED, 1, False): Settle.MARK,
    (PutOutcome.ACCEPTED, PUT_ATTEMPTS, True): Settle.MARK,
    (PutOutcome.ACCEPTED, PUT_ATTEMPTS, False): Settle.MARK,
    (PutOutcome.REFUSED, 1, True): Settle.RESEND,
    (PutOutcome.REFUSED, 1, False): Settle.RELEASE,
    (PutOutcome.REFUSED, PUT_ATTEMPTS, True): Settle.RELEASE,
    (PutOutcome.REFUSED, PUT_ATTEMPTS, False): Settle.RELEASE,
    (PutOutcome.UNKNOWN, 1, True): Settle.KEEP,
    (PutOutcome.UNKNOWN, 1, False): Settle.KEEP,
    (PutOutcome.UNKNOWN, PUT_ATTEMPTS, True): Settle.KEEP,
    (PutOutcome.UNKNOWN, PUT_ATTEMPTS, False): Settle.KEEP,
}


def test_the_after_put_table_covers_every_combination() -> None:
    combinations = set(itertools.product(PutOutcome, [1, PUT_ATTEMPTS], [True, False]))
    assert set(AFTER_PUT_TABLE) == combinations


@pytest.mark.parametrize(("row", "expected"), AFTER_PUT_TABLE.items(), ids=str)
def test_after_put(row: tuple[PutOutcome, int, bool], expected: Settle) -> None:
    assert after_put(*row) is expected


def test_a_refused_entry_is_sent_at_most_put_attempts_times() -> None:
    attempts = 1
    while after_put(PutOutcome.REFUSED, attempts, time_left=True) is Settle.RESEND:
        attempts += 1
    assert attempts == PUT_ATTEMPTS == 3
