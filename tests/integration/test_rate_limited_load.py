"""A short load run in `make test`: 300 cancels by three concurrent invocations (three
containers, each with 32 threads) against a limit of 50 requests a second. Correctness only:
every batch cancelled and announced once, nothing dead-lettered; never how fast."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

from infra.openai_emulator import OpenAIEmulator
from tests.support import LocalAws, client

IDS, INVOCATIONS, RATE = 300, 3, 50.0


def test_three_invocations_share_a_rate_limit_and_lose_nothing(
    local_aws: LocalAws, instant_emulator: OpenAIEmulator
) -> None:
    # (a visibility timeout longer than an invocation, as the template's: no copy runs twice)
    stack = local_aws.create_stack(visibility_timeout=60)
    # GIVEN 300 batches, sent as 30 commands of 10, and a limit of 50 requests a second
    emu = instant_emulator
    emu.latency_seconds = 0.05
    ids = [emu.seed(f"batch_load_{i:03d}", status="in_progress")["id"] for i in range(IDS)]
    emu.rate_limit.configure(RATE, burst=RATE)
    sqs = client("sqs", stack.endpoint)
    for start in range(0, IDS, 100):
        entries = [
            {"Id": str(n), "MessageBody": json.dumps({"batch_ids": ids[i : i + 10]})}
            for n, i in enumerate(range(start, start + 100, 10))
        ]
        sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)

    # WHEN three containers poll the queue at once until every record is cancelled
    def cancelled() -> bool:
        return all((stack.item(b) or {}).get("status") == "cancelled" for b in ids)

    done = threading.Event()
    errors: list[BaseException] = []

    def container() -> None:
        app = stack.app(emu.base_url, MAX_IN_FLIGHT="32")
        source = stack.event_source(app, function_timeout_seconds=20.0)
        try:
            while not done.is_set():
                source.poll_once(wait_seconds=1)
        except BaseException as exc:  # reported below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=container) for _ in range(INVOCATIONS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 180
    try:
        while not cancelled():
            assert time.monotonic() < deadline, "not every batch was cancelled"
            assert not errors, errors
            time.sleep(1)
    finally:
        done.set()
        for thread in threads:
            thread.join(60)

    # THEN the limit was met, and still nothing is lost, dead-lettered or announced twice
    assert emu.rate_limit.snapshot()["counts"]["limited"] > 0, "the limit was never reached"
    assert all(emu.get(b)["status"] == "cancelled" for b in ids)  # type: ignore[index]
    assert stack.dead_letters() == []
    announced = Counter(e["detail"]["batch_id"] for e in stack.events_of("Batch Cancelled"))
    assert announced == dict.fromkeys(ids, 1)
