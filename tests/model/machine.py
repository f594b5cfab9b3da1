"""The model-based test of the announce protocol (docs/exactly-once.md).

A Hypothesis `RuleBasedStateMachine` drives the real Application, processor, store and event
ledger (DynamoDB on moto server) through interleavings nobody listed: it sends commands,
delivers messages (some twice at once), lets each delivery through one I/O call at a time
with a fault of its choosing, kills deliveries at any call, moves batches on, and jumps the
clock past leases and visibility timeouts. After every step: no record regresses, and no
event was published without its publisher holding a live claim. At the end it settles the
world (no faults, every message delivered until the queue is empty) and checks that every
transition was announced, and that an event published twice had a late or lost receipt.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from batch_canceller.announcer import EventPublisher
from batch_canceller.announcing import Announcer
from batch_canceller.app import Application
from batch_canceller.event_ledger import EventLedger
from batch_canceller.follow_up import PollSettings
from batch_canceller.processor import CancelProcessor
from batch_canceller.queue import DeadLetterSender, QueueSender
from batch_canceller.statuses import rank
from batch_canceller.store import BatchStore
from batch_canceller.work import WorkRunner
from tests.model.stepping import Delivery, Gated
from tests.model.world import (
    DLQ_URL,
    QUEUE_URL,
    SOURCE,
    TERMINAL,
    Faults,
    Message,
    ModelApi,
    ModelBatch,
    ModelBus,
    ModelClock,
    ModelContext,
    ModelQueue,
    plain_item,
)
from tests.support import create_batches_table

FUNCTION_TIMEOUT = 120.0  # template.yaml
GRACE = 60.0  # RECEIPT_GRACE_SECONDS
LEASE = FUNCTION_TIMEOUT + GRACE  # the longest a claim lasts
POLL = PollSettings(initial_delay_seconds=60, max_delay_seconds=900, timeout_seconds=1800)
MAX_RUNNING = 3
# The faults the model may give one call, by whom the call is to ("none" drawn most often).
FAULTS = {
    "events": st.sampled_from(
        [
            *["none", "none", "none", "refuse", "timeout", "accept_then_timeout"],
            *["receipt_never", "receipt_twice", "receipt_delayed"],
        ]
    ),
    "dynamodb": st.sampled_from(["none", "none", "none", "none", "error", "error_after"]),
    "sqs": st.sampled_from(["none", "none", "none", "error"]),
    "api": st.sampled_from(["none", "none", "none", "none", "none", "error"]),
}
EXPECTED = {"cancelled": "Batch Cancelled", "completed": "Batch Finished Before Cancel"}
# Totals over every example of a run, for the long profile's report.
REPORT: Counter[str] = Counter()


class AnnounceModel(RuleBasedStateMachine):
    moto_url = ""  # set by the test before it runs the machine

    def __init__(self) -> None:
        super().__init__()
        self.clock = ModelClock()
        self.faults = Faults()
        self.api = ModelApi()
        self.deliveries: list[Delivery] = []
        self.ranks: dict[str, tuple[int, str | None]] = {}
        self.receipt_handled: dict[int, float] = {}
        self.counts: Counter[str] = Counter()
        self.settled: set[int] = set()  # deliveries whose end the event source has seen
        # (batch, watch, attempt) -> the token that won that step of the status-check chain.
        self.step_winners: dict[tuple[str, str, int], str] = {}
        self.chain_violations: list[str] = []
        self.webhooks = False  # drawn by setup
        self.dynamodb: Any = boto3.client(
            "dynamodb",
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        self.table = f"model-{uuid.uuid4().hex[:12]}"
        create_batches_table(self.dynamodb, self.table)
        self.queue = ModelQueue(self.clock, visibility_timeout=1020)
        self.bus = ModelBus(self.clock, self.queue, self.read_item, LEASE + GRACE)

    # -- the world ------------------------------------------------------------------------

    @initialize(
        visibility=st.sampled_from([1020, 30]),
        # One batch most of the time: everything then collides on it.
        batches=st.sampled_from([1, 1, 2, 3]).flatmap(
            lambda n: st.lists(st.tuples(st.booleans(), st.booleans()), min_size=n, max_size=n)
        ),
        # With webhooks a status check reads the record before its GET (WEBHOOKS_ENABLED).
        webhooks=st.booleans(),
    )
    def setup(self, visibility: int, batches: list[tuple[bool, bool]], webhooks: bool) -> None:
        self.webhooks = webhooks
        # The template's visibility timeout outlasts every lease; a short one (safety must not
        # depend on it) lets messages come back while their first delivery still runs.
        self.queue.visibility_timeout = visibility
        for index, (instant, known) in enumerate(batches):
            batch_id = f"batch_{index}"
            # Every other batch's cancels are answered `in_progress` (a lagging gateway).
            self.api.batches[batch_id] = ModelBatch(
                batch_id, "in_progress", instant, known or index == 0, lagging=index % 2 == 1
            )
            self.queue.add(batch_id, "command")

    def read_item(self, batch_id: str) -> dict[str, Any] | None:
        answer = self.dynamodb.get_item(
            TableName=self.table, Key={"batch_id": {"S": batch_id}}, ConsistentRead=True
        )
        return plain_item(answer.get("Item"))

    def application(self, delivery: Delivery) -> Application:
        turnstile, faults = delivery.turnstile, self.faults
        dynamodb: Any = Gated(self.dynamodb, turnstile, faults, "dynamodb", False, self.observe)
        sqs: Any = Gated(_QueueClient(self, delivery), turnstile, faults, "sqs", fake=True)
        events: Any = Gated(_BusClient(self.bus, delivery), turnstile, faults, "events", fake=True)
        api: Any = Gated(self.api, turnstile, faults, "api", fake=True)
        store = BatchStore(dynamodb, self.table, self.clock)
        tally = delivery.tally
        publisher = EventPublisher(events, "bus", SOURCE)
        announcer = Announcer(
            EventLedger(dynamodb, self.table, self.clock),
            publisher,
            map,
            self.clock,
            tally,
            lambda _: None,
        )
        queue = QueueSender(sqs, QUEUE_URL)
        processor = CancelProcessor(
            WorkRunner(api, store, POLL, tally, _unredacted, self.clock, webhooks=self.webhooks),
            store,
            announcer,
            queue,
            POLL,
            map,
            tally,
            self.clock,
            GRACE,
        )
        return Application(
            processor,
            DeadLetterSender(sqs, DLQ_URL),
            queue,
            tally,
            event_source=SOURCE,
            new_nonce=lambda: delivery.nonce,
        )

    def observe(self, operation: str, request: dict[str, Any]) -> None:
        """After each write: which token holds each step of each chain (one per step, ever)."""
        if operation != "update_item":
            return
        item = self.read_item(request["Key"]["batch_id"]["S"]) or {}
        if "watch_id" not in item:
            return
        step = (str(item["batch_id"]), str(item["watch_id"]), int(item["poll_attempt"]))
        token = str(item.get("poll_step", ""))
        if self.step_winners.setdefault(step, token) != token:
            self.chain_violations.append(
                f"step {step} changed hands: {self.step_winners[step]} -> {token}"
            )

    def check_sent(self, delivery: Delivery, entries: list[dict[str, Any]]) -> None:
        """Only the check that holds a step sends a check for the next one (a cancel request
        may send one too: it nudges the chain): the chain never forks."""
        for entry in entries:
            body = json.loads(entry["MessageBody"]).get("check")
            if body is None or _asks_to_cancel(delivery.messages, body["batch_id"]):
                continue
            batch_id, watch_id, attempt = body["batch_id"], body["watch_id"], body["attempt"]
            senders = [
                check["step"]
                for message in delivery.messages
                if message.kind == "check"
                and (check := json.loads(message.body)["check"])["batch_id"] == batch_id
                and (check["watch_id"], check["attempt"]) == (watch_id, attempt - 1)
            ]
            winner = self.step_winners.get((batch_id, watch_id, attempt - 1))
            if winner is None or winner not in senders:
                self.chain_violations.append(
                    f"check {attempt} of {watch_id} sent by a check that does not hold step"
                    f" {attempt - 1} ({senders}, held by {winner})"
                )

    def deliver_messages(self, messages: list[Message]) -> Delivery:
        number = len(self.deliveries) + 1
        context = ModelContext(self.clock, self.clock.now, FUNCTION_TIMEOUT, f"req-{number}")
        delivery = Delivery(number, messages, context)
        event = {"Records": [self.queue.receive(message) for message in messages]}
        self.deliveries.append(delivery)
        delivery.start(self.application(delivery).handle, event)
        self.after_step(delivery)
        return delivery

    def after_step(self, delivery: Delivery, lose_delete: bool = False) -> None:
        """Once a delivery has finished, the event source deletes what it reported done."""
        if not delivery.finished or delivery.number in self.settled:
            return
        self.settled.add(delivery.number)
        self.counts.update(delivery.tally.counts)
        assert delivery.error is None, f"delivery {delivery.number} raised {delivery.error!r}"
        if delivery.crashed:
            self.counts["deliveries killed"] += 1
            return
        failed = delivery.failed_ids()
        for message in delivery.messages:
            if message.message_id in failed or lose_delete:
                continue
            message.deleted = True
            if message.publication is not None:
                self.receipt_handled.setdefault(message.publication, self.clock.now)

    def running(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.finished]

    # -- rules --------------------------------------------------------------------------

    @rule(batch=st.integers(0, 2), shape=st.sampled_from(["bare", "list", "pair"]))
    def send_command(self, batch: int, shape: str) -> None:
        ids = sorted(self.api.batches)
        first, second = ids[batch % len(ids)], ids[(batch + 1) % len(ids)]
        body = {"bare": first, "list": json.dumps({"batch_ids": [first]})}.get(shape)
        self.queue.add(body or json.dumps({"batch_ids": sorted({first, second})}), "command")

    @rule(batch=st.integers(0, 2), event=st.integers(0, 1))
    def webhook_arrives(self, batch: int, event: int) -> None:
        """The receiver's notice of an OpenAI webhook for a batch, at any time: the same
        event again is a replay; the batch's GET, not the notice, says where it is."""
        ids = sorted(self.api.batches)
        batch_id = ids[batch % len(ids)]
        notice = {
            "delivery_id": f"msg_{batch_id}_{event}",
            "event_id": f"evt_{batch_id}_{event}",
            "type": "batch.cancelled",
            "batch_id": batch_id,
            "created_at": 1733000000,
        }
        self.counts["webhook notices"] += 1
        self.queue.add(json.dumps({"webhook": notice}), "webhook")

    @precondition(lambda self: self.queue.visible() and len(self.running()) < MAX_RUNNING)
    @rule(picks=st.lists(st.integers(0, 30), min_size=1, max_size=3, unique=True))
    def deliver(self, picks: list[int]) -> None:
        visible = self.queue.visible()
        chosen = list({id(m): m for m in (visible[p % len(visible)] for p in picks)}.values())
        self.deliver_messages(chosen)

    @precondition(lambda self: self.queue.in_flight() and len(self.running()) < MAX_RUNNING)
    @rule(pick=st.integers(0, 30))
    def deliver_again_at_once(self, pick: int) -> None:
        """SQS hands a message that is in flight to a second consumer."""
        in_flight = self.queue.in_flight()
        self.counts["twin deliveries"] += 1
        self.deliver_messages([in_flight[pick % len(in_flight)]])

    def let_through(self, delivery: Delivery, data: st.DataObject) -> None:
        """One call of the delivery, with a fault drawn for whom it is to."""
        label = delivery.turnstile.waiting_at or "none."
        self.faults.set(data.draw(FAULTS[label.split(".")[0]], label=label))
        delivery.turnstile.step()
        self.faults.set("none")

    @precondition(lambda self: len(self.running()) < MAX_RUNNING - 1 and self.queue.undeleted())
    @rule(
        first=st.integers(0, 30),
        second=st.integers(0, 30),
        schedule=st.lists(st.booleans(), max_size=24),
        data=st.data(),
    )
    def race(self, first: int, second: int, schedule: list[bool], data: st.DataObject) -> None:
        """Two deliveries at once, of any two messages not yet deleted (the same one twice, as
        SQS may), their calls interleaved as `schedule` says, each with a drawn fault."""
        candidates = self.queue.undeleted()
        a = self.deliver_messages([candidates[first % len(candidates)]])
        b = self.deliver_messages([candidates[second % len(candidates)]])
        self.counts["races"] += 1
        for turn in itertools.chain(schedule, itertools.cycle([False, True])):
            if a.finished and b.finished:
                break
            second_goes = a.finished if a.finished or b.finished else turn
            delivery = b if second_goes else a
            self.let_through(delivery, data)
            self.after_step(delivery)

    @precondition(lambda self: not self.queue.visible() and self.queue.undeleted())
    @rule()
    def advance_to_the_next_message(self) -> None:
        """The clock jumps to when the next message becomes visible (a delay, a postponement,
        a visibility timeout)."""
        self.jump(min(m.visible_at for m in self.queue.undeleted()) - self.clock.now)

    @precondition(lambda self: self.running())
    @rule(which=st.integers(0, 5), data=st.data())
    def step(self, which: int, data: st.DataObject) -> None:
        delivery = self.running()[which % len(self.running())]
        self.let_through(delivery, data)
        self.after_step(delivery)

    @precondition(lambda self: self.running())
    @rule(
        which=st.integers(0, 5),
        die_at=st.none() | st.integers(0, 12),
        lose_delete=st.booleans(),
        data=st.data(),
    )
    def run_to_end(
        self, which: int, die_at: int | None, lose_delete: bool, data: st.DataObject
    ) -> None:
        """Let every call through, each with a drawn fault, or die at call `die_at`;
        `lose_delete`: the event source does not get to delete what the function reported done."""
        delivery = self.running()[which % len(self.running())]
        calls = 0
        while not delivery.finished:
            if calls == die_at:
                delivery.turnstile.kill()
                break
            self.let_through(delivery, data)
            calls += 1
        self.after_step(delivery, lose_delete)

    @precondition(lambda self: self.running())
    @rule(which=st.integers(0, 5))
    def kill(self, which: int) -> None:
        delivery = self.running()[which % len(self.running())]
        delivery.turnstile.kill()
        self.after_step(delivery)

    @rule(batch=st.integers(0, 2), finish_first=st.sampled_from([False, False, True]))
    def batch_moves_on(self, batch: int, finish_first: bool) -> None:
        """A `cancelling` batch becomes `cancelled`; with `finish_first`, one not yet
        cancelled completes on its own."""
        model_batch = self.api.batches[sorted(self.api.batches)[batch % len(self.api.batches)]]
        if model_batch.status == "cancelling" or finish_first:
            self.api.move_on(model_batch.batch_id)

    @rule(seconds=st.sampled_from([1.0, 30.0, 61.0, LEASE + 1, 1021.0]))
    def advance_clock(self, seconds: float) -> None:
        self.jump(seconds)

    def jump(self, seconds: float) -> None:
        # Lambda stops an invocation at its deadline: a delivery past it dies where it stands.
        for delivery in self.running():
            if delivery.context.deadline <= self.clock.now + seconds:
                delivery.turnstile.kill()
                self.after_step(delivery)
        self.clock.now += seconds

    # -- after every step ----------------------------------------------------------------

    @invariant()
    def no_record_regresses(self) -> None:
        for batch_id in self.api.batches:
            item = self.read_item(batch_id)
            if item is None or "status" not in item:
                continue
            status = str(item["status"])
            seen_rank, seen_status = self.ranks.get(batch_id, (0, None))
            assert rank(status) >= seen_rank, f"{batch_id} went back from {seen_status} to {status}"
            if seen_status in TERMINAL:
                assert status == seen_status, f"{batch_id}: terminal {seen_status} became {status}"
            self.ranks[batch_id] = (rank(status), status)

    @invariant()
    def every_publication_held_a_live_claim(self) -> None:
        assert not self.bus.violations, self.bus.violations
        assert not self.queue.dead_letters, (
            f"valid messages dead-lettered: {self.queue.dead_letters}"
        )

    @invariant()
    def the_status_check_chain_never_forks(self) -> None:
        assert not self.chain_violations, self.chain_violations

    @invariant()
    def every_cancelling_batch_is_followed(self) -> None:
        """While nothing runs, a batch the record says is short of terminal (`cancelling`, or
        the `in_progress` a lagging gateway answered a cancel with) has a message that will
        touch its chain: a check for the chain's next step, the current step's own check (its
        delivery died or failed before sending the next), or a cancel request (which sends a
        check). Only a chain that timed out may end (it stalls; a later cancel restarts it)."""
        if self.running():
            return
        for batch_id in self.api.batches:
            item = self.read_item(batch_id) or {}
            if item.get("status") in (None, *TERMINAL):
                continue
            since = item.get("watch_since")
            started = datetime.fromisoformat(since).timestamp() if since else self.clock.now
            if self.clock.now - started >= POLL.timeout_seconds:
                continue
            assert self.followed(batch_id, item), (
                f"nothing follows {batch_id}: {item.get('watch_id')} at {item.get('poll_attempt')}"
            )

    def followed(self, batch_id: str, item: dict[str, Any]) -> bool:
        watch, attempt = item.get("watch_id"), int(item.get("poll_attempt", 0))
        for message in self.queue.undeleted():
            if message.kind == "command" and _asks_to_cancel([message], batch_id):
                return True
            if message.kind != "check":
                continue
            check = json.loads(message.body)["check"]
            if check["batch_id"] != batch_id or check["watch_id"] != watch:
                continue
            if check["attempt"] == attempt + 1:
                return True
            if check["attempt"] == attempt and check["step"] == item.get("poll_step"):
                return True
        return False

    # -- the end ------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self.settle()
            self.check_settled()
        finally:
            for delivery in self.running():
                delivery.turnstile.kill()
            self.dynamodb.delete_table(TableName=self.table)
            REPORT["examples"] += 1
            REPORT.update(self.counts)

    def settle(self) -> None:
        """No more faults: finish what runs, end every batch, deliver until the queue is empty."""
        self.faults.set("none")
        for delivery in self.running():
            while not delivery.finished:
                delivery.turnstile.step()
            self.after_step(delivery)
        for batch_id in self.api.batches:
            while self.api.batches[batch_id].status not in TERMINAL:
                self.api.move_on(batch_id)
        before = {m.message_id: m.receives for m in self.queue.messages.values()}
        for _ in range(400):
            visible = self.queue.visible()
            if visible:
                delivery = self.deliver_messages(visible[:10])
                while not delivery.finished:
                    delivery.turnstile.step()
                self.after_step(delivery)
                continue
            waiting = self.queue.undeleted()
            if not waiting:
                break
            self.clock.now = max(self.clock.now, min(m.visible_at for m in waiting))
        else:
            raise AssertionError(f"the queue never emptied: {self.queue.undeleted()[:5]}")
        receives = [m.receives - before.get(m.message_id, 0) for m in self.queue.messages.values()]
        most = max(receives, default=0)
        REPORT["settle: most receives of one message"] = max(
            REPORT["settle: most receives of one message"], most
        )
        assert most <= 4, "a message needed more than 4 receives to settle"

    def check_settled(self) -> None:
        """Every transition was published, and the ledger says so. Two exceptions, both the
        protocol's own: an event whose publisher's mark failed and whose every receipt was
        lost stays owed in the ledger (it was published; a later touch may publish it again);
        and a batch whose watch stalled (announced) is no longer followed to its end."""
        published = Counter(p.key for p in self.bus.publications)
        for batch_id, batch in self.api.batches.items():
            item = self.read_item(batch_id) or {}
            for detail_type in item.get("pending_events", ()):
                receipts = {
                    p.receipt for p in self.bus.publications if p.key == (batch_id, detail_type)
                }
                assert receipts == {"never"}, f"{batch_id} still owes {detail_type}"
                self.counts["left owed: mark failed and every receipt lost"] += 1
            announced = set(item.get("announced_events", ()))
            expected = EXPECTED.get(batch.status) if batch.known else "Batch Cancel Failed"
            # A watch that stalled follows the batch no further (a later cancel restarts it).
            stalled = "Batch Cancel Stalled" in announced and item.get("status") not in TERMINAL
            seen = {key[1] for key in published if key[0] == batch_id}
            assert expected in seen or stalled, (
                f"{batch_id} ({batch.status}) never announced {expected}"
            )
            for detail_type in announced:
                assert published[(batch_id, detail_type)] >= 1, f"{detail_type} marked, never sent"
        self.counts["publications"] += len(self.bus.publications)
        for key, times in published.items():
            if times > 1:
                self.check_duplicate(key)

    def check_duplicate(self, key: tuple[str, str]) -> None:
        """A second publication is allowed only after the first one's receipt was lost or came
        after its lease: otherwise the record said announced before anyone could claim again."""
        first, *later = [p for p in self.bus.publications if p.key == key]
        for again in later:
            handled = self.receipt_handled.get(first.number)
            late = (
                first.receipt in ("never", "delayed")
                or handled is None
                or handled > first.lease_end
            )
            assert late, f"{key} published twice although its receipt came in time"
            self.counts["duplicates after a late or lost receipt"] += 1
            first = again


def _asks_to_cancel(messages: list[Message], batch_id: str) -> bool:
    for message in messages:
        if message.kind != "command":
            continue
        ids = (
            json.loads(message.body)["batch_ids"]
            if message.body.startswith("{")
            else [message.body]
        )
        if batch_id in ids:
            return True
    return False


class _QueueClient:
    """SQS as one delivery's client sees it; the model checks every status check it sends."""

    def __init__(self, model: AnnounceModel, delivery: Delivery) -> None:
        self._model = model
        self._delivery = delivery

    def send_message_batch(self, fault: str, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        if fault == "none":
            self._model.check_sent(self._delivery, Entries)
        return self._model.queue.send_message_batch(fault, QueueUrl, Entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model.queue, name)


class _BusClient:
    """The bus as one delivery's EventBridge client sees it."""

    def __init__(self, bus: ModelBus, delivery: Delivery) -> None:
        self._bus = bus
        self._delivery = delivery

    def put_events(self, fault: str, Entries: list[dict[str, Any]]) -> Any:
        return self._bus.put_events(fault, self._delivery.number, self._delivery.nonce, Entries)


def _unredacted(value: Any) -> Any:
    """The model's API knows no key: nothing to redact."""
    return value
