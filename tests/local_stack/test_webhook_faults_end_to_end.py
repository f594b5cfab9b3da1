"""Adversarial review of issue 12, second pass: the whole local stack (emulator -> emulated
function URL -> receiver -> queue -> canceller -> bus) under the emulator's webhook faults.
Every batch must be announced exactly once, and one whose webhook never arrives (or arrives
with a wrong signature) must be ended by the safety-net polling."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local_stack.bus_observer import BusObserver
from infra.local_stack.stack import LocalStack, wait_until
from infra.openai_emulator.webhook_faults import WebhookFault

FAULTS = ("duplicate", "delay", "out_of_order", "wrong_signature", "never_sent")


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    saved = dict(os.environ)
    running = LocalStack(cancel_delay_seconds=2.0).start()
    try:
        yield running
    finally:
        running.stop()
        os.environ.clear()
        os.environ.update(saved)


def _record(stack: LocalStack, batch_id: str) -> dict[str, Any]:
    table = stack.outputs["BatchesTableName"]
    item = stack.client("dynamodb").get_item(
        TableName=table, Key={"batch_id": {"S": batch_id}}, ConsistentRead=True
    )
    return dict(item.get("Item") or {})


def test_every_fault_kind_ends_in_exactly_one_batch_cancelled(stack: LocalStack) -> None:
    # GIVEN batches each hit by one webhook fault kind (two per kind) and some clean ones
    webhooks = stack.openai.webhooks
    webhooks.configure({"hold_seconds": 3, "max_attempts": 3, "max_backoff_seconds": 1})
    faulted: dict[str, str] = {}
    for kind in FAULTS:
        for _ in range(2):
            batch = stack.openai.seed(status="in_progress")
            faulted[batch["id"]] = kind
            webhooks.faults.add(WebhookFault(kind=kind, delay_ms=1500, batch_id=batch["id"]))
    clean = [stack.openai.seed(status="in_progress")["id"] for _ in range(4)]
    wanted = [*faulted, *clean]
    with BusObserver(stack.client("sqs"), stack.observer_queue_url) as observer:
        # WHEN one command cancels them all
        stack.client("sqs").send_message(
            QueueUrl=stack.outputs["CancelQueueUrl"],
            MessageBody=json.dumps({"batch_ids": wanted, "reason": "review"}),
        )

        def announced() -> set[str]:
            return {seen.batch_id for seen in observer.observed() if seen.batch_id}

        wait_until(lambda: set(wanted) <= announced(), 60, interval=0.5)
        # Time for a duplicate to show: two more check periods (8 s) and a lease's receipt.
        time.sleep(20)
        seen = observer.observed()
    # THEN each batch got one Batch Cancelled, and nothing else was published for it
    per_batch = Counter((s.batch_id, s.detail_type) for s in seen if s.batch_id in wanted)
    missing = [b for b in wanted if per_batch[(b, "Batch Cancelled")] == 0]
    twice = {k: n for k, n in per_batch.items() if n > 1}
    other = [k for k in per_batch if k[1] != "Batch Cancelled"]
    assert missing == [], {b: faulted.get(b, "clean") for b in missing}
    assert twice == {}
    assert other == []
    # AND a batch whose webhook failed verification or never came was ended by polling
    for batch_id, kind in faulted.items():
        record = _record(stack, batch_id)
        assert record["status"]["S"] == "cancelled", (kind, record)
        if kind in ("wrong_signature", "never_sent"):
            assert "ended_by" not in record, (kind, record)
    assert stack.handler_errors == 0
