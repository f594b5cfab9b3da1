"""The function against the emulator's rate limit, through the real handler: a 429's
`Retry-After` pauses every thread of the invocation; concurrent invocations read the pause one
of them wrote; an invocation that cannot wait before its deadline sends the rest on, and
nothing is lost or dead-lettered. Only what was sent when is asserted, never how fast."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from batch_canceller.shared_pause import PAUSE_ITEM_KEY, SharedPause
from infra.cli.status import RecordReader
from infra.openai_emulator import OpenAIEmulator, RecordedRequest
from tests.support import API_KEY, Stack, client, context, failed_ids, sqs_event

# A request acquired its slot before the 429 was read may still arrive this much after it.
IN_FLIGHT_GRACE = 0.1


@pytest.fixture
def limited_api() -> Iterator[OpenAIEmulator]:
    """Cancels take effect at once; answers take 0.5 s, 429s none (refused at the edge)."""
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=0, latency_seconds=0.5) as emu:
        yield emu


def inside_pauses(log: list[RecordedRequest]) -> list[RecordedRequest]:
    """Requests that arrived while a 429 answered before them asked everyone to wait."""
    pauses = [
        (r.at + IN_FLIGHT_GRACE, r.at + r.retry_after_ms / 1000.0 - 0.05)
        for r in log
        if r.status == 429 and r.retry_after_ms is not None
    ]
    return [r for r in log if any(start < r.at < end for start, end in pauses)]


def cancel_ids(emu: OpenAIEmulator, count: int, prefix: str = "batch_rl") -> list[str]:
    return [emu.seed(f"{prefix}_{i}", status="in_progress")["id"] for i in range(count)]


@pytest.mark.parametrize("adaptive", ["true", "false"])
def test_a_retry_after_pauses_every_thread_of_the_invocation(
    stack: Stack, limited_api: OpenAIEmulator, adaptive: str
) -> None:
    # GIVEN a limit of 1 request a second (2 at once) and four threads
    ids = cancel_ids(limited_api, 6)
    limited_api.rate_limit.configure(1.0, burst=2)
    app = stack.app(limited_api.base_url, MAX_IN_FLIGHT="4", ADAPTIVE_CONCURRENCY=adaptive)
    # Spend the burst first, so the invocation's first requests meet a 429 (else a client that
    # reads the budget headers may wait for the refill and never be refused).
    for _ in range(2):
        urllib.request.urlopen(
            urllib.request.Request(
                f"{limited_api.base_url}/batches",
                headers={"Authorization": f"Bearer {API_KEY}"},
            ),
            timeout=10,
        ).close()
    limited_api.clear_requests()

    # WHEN one invocation cancels six batches
    answer = app.handle(sqs_event(json.dumps({"batch_ids": ids})), context(60))

    log = limited_api.requests
    assert any(r.status == 429 for r in log), "the limit was not reached: the test shows nothing"
    during = inside_pauses(log)
    if adaptive == "true":
        # THEN no request was sent while a 429 asked the invocation to wait
        assert during == [], [(r.path, r.at) for r in during]
        assert failed_ids(answer) == set()
        assert all(limited_api.get(b)["status"] == "cancelled" for b in ids)  # type: ignore[index]
    else:
        # (today's fixed behaviour: the other threads kept sending, which is what this catches)
        assert during != []


def test_concurrent_invocations_read_the_pause_one_of_them_wrote(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a limit of one request per two seconds, and one application (container)
    emu = instant_emulator
    first_ids, later_ids = cancel_ids(emu, 2, "batch_first"), cancel_ids(emu, 2, "batch_later")
    emu.rate_limit.configure(0.5, burst=1)
    # whose one request another caller has just spent: the first request meets a 429 (with the
    # budget left, a cancel would be answered "none remaining" and the next one would wait for
    # the reset without a 429, so without sharing a pause)
    emu.rate_limit.take(time.time(), time.monotonic(), 0.0)
    app = stack.app(emu.base_url, MAX_IN_FLIGHT="2")
    answers: dict[str, dict[str, Any]] = {}

    def invoke(name: str, ids: list[str]) -> None:
        answers[name] = app.handle(sqs_event(json.dumps({"batch_ids": ids})), context(60))

    # WHEN the first invocation meets the limit (a 429 of ~2 s)
    first = threading.Thread(target=invoke, args=("first", first_ids))
    first.start()
    shared = SharedPause(client("dynamodb", stack.endpoint), stack.table_name)
    deadline = time.monotonic() + 30
    while (until := shared.read()) is None:
        assert time.monotonic() < deadline, "the 429 wrote no shared pause"
        time.sleep(0.05)
    # AND a second invocation starts, with its own context, during that pause
    later = threading.Thread(target=invoke, args=("later", later_ids))
    later.start()
    first.join(60)
    later.join(60)

    # THEN the second sent nothing before the pause ended (it would have met a 429)
    sent_later = [r for r in emu.requests if any(b in r.path for b in later_ids)]
    assert sent_later
    assert min(r.at for r in sent_later) >= until - 0.05
    assert {name: failed_ids(answer) for name, answer in answers.items()} == {
        "first": set(),
        "later": set(),
    }
    assert all(emu.get(b)["status"] == "cancelled" for b in first_ids + later_ids)  # type: ignore[index]


def test_the_pause_item_is_never_taken_for_a_batch(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a pause shared in the table, and a record being followed
    dynamodb = client("dynamodb", stack.endpoint)
    SharedPause(dynamodb, stack.table_name).publish(time.time() + 600)
    SharedPause(dynamodb, stack.table_name).publish(time.time() + 1)  # earlier: ignored
    app = stack.app(instant_emulator.base_url)

    # WHEN the reconciler runs and an operator lists what is pending
    summary = app.handle({"reconcile": {}}, context())
    pending = RecordReader(dynamodb, stack.table_name).pending()

    # THEN neither sees it, and it holds only the pause (no batch attributes)
    assert summary["reconcile"]["examined"] == 0
    assert pending == []
    item = stack.item(PAUSE_ITEM_KEY)
    assert item is not None
    assert set(item) == {"batch_id", "paused_until", "set_at"}
    assert float(item["paused_until"]) > time.time() + 500


def test_an_invocation_that_cannot_wait_out_the_pause_sends_the_rest_on(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a limit of one request per two seconds, and an invocation with ~1.4 s of work time
    emu = instant_emulator
    ids = cancel_ids(emu, 4)
    emu.rate_limit.configure(0.5, burst=1)
    app = stack.app(emu.base_url)
    client("sqs", stack.endpoint).send_message(
        QueueUrl=stack.queue_url, MessageBody=json.dumps({"batch_ids": ids})
    )
    source = stack.event_source(app, function_timeout_seconds=7.0)

    # WHEN it handles the message: one cancel passes, three get a 429 asking for ~2 s
    first = source.poll_once(wait_seconds=2)

    # THEN the message is done (not failed, so not counted towards the DLQ), the rest sent on
    assert (first.received, first.failed) == (1, 0)
    assert [b["status"] for b in map(emu.get, ids)].count("cancelled") == 1  # type: ignore[index]
    # AND once the limit is lifted, every batch is cancelled, announced once, none dead-lettered
    emu.rate_limit.configure(None)

    def cancelled() -> bool:
        return all((stack.item(b) or {}).get("status") == "cancelled" for b in ids)

    stack.run_until(app, cancelled, timeout=60)
    assert stack.dead_letters() == []
    announced = Counter(e["detail"]["batch_id"] for e in stack.events_of("Batch Cancelled"))
    assert announced == dict.fromkeys(ids, 1)
