"""The exactly-once announce protocol as a table (docs/exactly-once.md), with no I/O.

One delivery, one owed event: what the record says and what this invocation itself did go in;
what to do next comes out. The writes and PutEvents around it are in `announcing`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

# A claim's lease ends this long after the claiming invocation's deadline: the time the event's
# receipt gets to mark it announced before another delivery may publish it again.
RECEIPT_GRACE_SECONDS = 60
# PutEvents attempts for an entry the bus refused (an ErrorCode): it was not published.
PUT_ATTEMPTS = 3
# SQS message IDs and EventBridge event IDs are 36 characters; a token names a longer one by
# its hash, so that every token fits a receipt's `publication_id`
# (commands.MAX_PUBLICATION_ID).
MAX_MESSAGE_ID_IN_TOKEN = 100


@dataclass(frozen=True)
class Delivery:
    """One handling of one message by one invocation."""

    message_id: str
    nonce: str  # drawn once per invocation

    @property
    def token(self) -> str:
        """`<message id>/<nonce>`; a message ID that is long or not printable ASCII (only a
        direct invoke can send one) by a stable hash of it. Batch item failures and dead
        letters name the message by `message_id` as given."""
        name = self.message_id
        if len(name) > MAX_MESSAGE_ID_IN_TOKEN or not (name.isascii() and name.isprintable()):
            digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:40]
            name = "id-sha256-" + digest
        return f"{name}/{self.nonce}"


@dataclass(frozen=True)
class Claim:
    """Who may publish an owed event, and until when (epoch seconds)."""

    token: str
    expires: float

    def live(self, now: float) -> bool:
        return self.expires > now


@dataclass(frozen=True)
class Ledger:
    """What the record says about one event."""

    owed: bool
    claim: Claim | None = None


class Step(Enum):
    DONE = "done"  # nothing owed: announced already, or never owed
    CLAIM = "claim"  # owed and free or lapsed: take it with the conditional write
    PUBLISH = "publish"  # this invocation's own write claimed it
    WAIT = "wait"  # another delivery holds a live claim: come back when it lapses


@dataclass(frozen=True)
class Decision:
    step: Step
    wait_seconds: float = 0.0


def decide(ledger: Ledger, claimed_here: bool, now: float) -> Decision:
    """`claimed_here`: a transition or claim write of this invocation set the claim (a fact
    carried from that write's success, never read back from the record)."""
    if not ledger.owed:
        return Decision(Step.DONE)
    if claimed_here:
        return Decision(Step.PUBLISH)
    if ledger.claim is None or not ledger.claim.live(now):
        return Decision(Step.CLAIM)
    return Decision(Step.WAIT, ledger.claim.expires - now)


class PutOutcome(Enum):
    ACCEPTED = "accepted"  # an EventId: published
    REFUSED = "refused"  # an ErrorCode, a 4xx, no connection: not published
    UNKNOWN = "unknown"  # a timeout, a dropped connection, a 5xx: maybe published


class Settle(Enum):
    MARK = "mark"  # mark announced; the message is done
    RESEND = "resend"  # put the entry again, in this invocation
    RELEASE = "release"  # let the claim go; the message fails and comes back to publish
    KEEP = "keep"  # keep the claim; the message fails and comes back when the lease ends


def after_put(outcome: PutOutcome, attempts: int, time_left: bool) -> Settle:
    """What to do about one entry after its `attempts`-th PutEvents."""
    if outcome is PutOutcome.ACCEPTED:
        return Settle.MARK
    if outcome is PutOutcome.UNKNOWN:
        return Settle.KEEP
    if attempts < PUT_ATTEMPTS and time_left:
        return Settle.RESEND
    return Settle.RELEASE
