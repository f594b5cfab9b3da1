"""Adversarial sequences against the rate-limit adaptation (issue 13), through the real handler,
the emulator (its rate limit and faults) and moto. Each test names the behaviour it expects;
docs/rate-limits.md is the contract it holds the code to."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from batch_canceller.shared_pause import PAUSE_ITEM_KEY, SharedPause
from infra.openai_emulator import Fault, OpenAIEmulator
from tests.integration.conftest import aged, batch_id_in, fake_api, listed_as_given
from tests.support import Stack, client, context, failed_ids, sqs_event

# What RetryPolicy.max_retry_after_seconds already calls too long to wait for in an invocation;
# any cap on a pause worth the name is at most this (SQS delays by at most 900 s anyway).
SANE_PAUSE_SECONDS = 900.0


def seeded(emu: OpenAIEmulator, count: int, prefix: str) -> list[str]:
    return [emu.seed(f"{prefix}_{i}", status="in_progress")["id"] for i in range(count)]


def sent_for(emu: OpenAIEmulator, ids: list[str]) -> list[Any]:
    return [r for r in emu.requests if any(b in r.path for b in ids)]


# -- a garbage Retry-After --------------------------------------------------------------------


@pytest.mark.parametrize("header", ["retry_after", "retry_after_ms"])
def test_an_infinite_retry_after_defers_the_work_and_fails_no_message(
    stack: Stack, instant_emulator: OpenAIEmulator, header: str
) -> None:
    # GIVEN a gateway that answers one cancel 429 with `retry-after: inf` (float() takes it)
    emu = instant_emulator
    ids = seeded(emu, 1, "batch_inf")
    emu.inject(Fault("status", status=429, times=1, **{header: "inf"}))  # type: ignore[arg-type]
    app = stack.app(emu.base_url)

    # WHEN one SQS invocation handles the message
    answer = app.handle(sqs_event(json.dumps({"batch_ids": ids})), context(30))

    # THEN, as for any paced 429, the work is deferred: the message is not failed (a failed one
    # counts towards maxReceiveCount: a gateway doing this five times dead-letters it)
    assert emu.fault_counts.get("429") == 1
    assert failed_ids(answer) == set()
    # AND the rest went on as a new message, delayed by the (capped) pause: `inf` is the longest
    # wait, so the message is delayed, not visible at once
    attributes = client("sqs", stack.endpoint).get_queue_attributes(
        QueueUrl=stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    assert attributes == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesDelayed": "1",
    }
    assert emu.get(ids[0])["status"] == "in_progress"  # type: ignore[index]


def test_an_infinite_retry_after_on_a_direct_invoke_requeues_the_rest(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN one 429 with `retry-after: inf`
    emu = instant_emulator
    ids = seeded(emu, 1, "batch_inf_direct")
    emu.inject(Fault("status", status=429, times=1, retry_after="inf"))
    app = stack.app(emu.base_url)

    # WHEN a direct invoke cancels the batch, THEN it answers (requeued), it does not raise
    answer = app.handle({"batch_ids": ids}, context(30))
    assert answer["status"] == "partially_requeued"
    assert answer["requeued"] == ids


# -- one bad 429 freezes every invocation -----------------------------------------------------


@pytest.mark.parametrize(
    "retry_after",
    ["86400", "1e12", "Fri, 31 Dec 9999 23:59:59 GMT"],
    ids=["a-day", "huge-number", "http-date-9999"],
)
def test_one_huge_retry_after_does_not_freeze_every_invocation(
    stack: Stack, instant_emulator: OpenAIEmulator, retry_after: str
) -> None:
    # GIVEN one 429 (one request, one gateway hiccup) asking for an absurd wait
    emu = instant_emulator
    first_ids, later_ids = seeded(emu, 1, "batch_bad429"), seeded(emu, 2, "batch_innocent")
    emu.inject(Fault("status", status=429, times=1, retry_after=retry_after))
    first_app = stack.app(emu.base_url)
    first_app.handle(sqs_event(json.dumps({"batch_ids": first_ids})), context(20))
    shared = SharedPause(client("dynamodb", stack.endpoint), stack.table_name).read()

    # WHEN another container later cancels other batches against a healthy API (no limit, no
    # fault armed any more)
    later_app = stack.app(emu.base_url)
    answer = later_app.handle(sqs_event(json.dumps({"batch_ids": later_ids})), context(20))

    # THEN it cancels them: the pause it read was capped, not held for (up to) ~8,000 years
    assert shared is None or shared <= time.time() + SANE_PAUSE_SECONDS, (
        f"shared pause written {shared - time.time():.0f} s ahead"
    )
    assert sent_for(emu, later_ids), "the later invocation sent nothing: frozen by one 429"
    assert failed_ids(answer) == set()
    assert all(emu.get(b)["status"] == "cancelled" for b in later_ids)  # type: ignore[index]


def test_a_shared_pause_far_in_the_future_is_capped_on_read(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN the shared item as a container with a clock 5 h fast writes it for a 1 s 429 (the
    # conditional write only ever moves it later, so nothing corrects it)
    emu = instant_emulator
    ids = seeded(emu, 2, "batch_skew")
    dynamodb = client("dynamodb", stack.endpoint)
    SharedPause(dynamodb, stack.table_name).publish(time.time() + 5 * 3600 + 1)
    app = stack.app(emu.base_url)

    # WHEN an invocation with a correct clock cancels against a healthy API
    answer = app.handle(sqs_event(json.dumps({"batch_ids": ids})), context(20))

    # THEN it does not wait 5 h (every message deferred by 900 s, again and again, until then)
    assert sent_for(emu, ids), "nothing sent: every invocation frozen by one skewed writer"
    assert failed_ids(answer) == set()
    assert all(emu.get(b)["status"] == "cancelled" for b in ids)  # type: ignore[index]


# -- a sweep's listing under a 429 ------------------------------------------------------------


def test_a_sweep_whose_next_page_is_rate_limited_queues_what_it_selected(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN 150 running batches (two pages), and a limit of one request per 120 s: the first
    # page passes, answered "none remaining, reset in 120 s", so the second is held back (or,
    # sent, would be answered 429 "retry after 120 s")
    emu = instant_emulator
    ids = seeded(emu, 150, "batch_swept")
    emu.rate_limit.configure(1 / 120, burst=1)
    app = stack.app(emu.base_url)

    # WHEN the sweep runs from the queue, with 20 s left
    body = json.dumps({"sweep": {"all": True}})
    answer = app.handle(sqs_event(body, ids=["sweep-msg"]), context(20))

    # THEN, as for any work a paced 429 stops: the message is not failed (it would cycle to the
    # DLQ listing everything again), and the first page's 100 selected batches are queued
    counts = emu.rate_limit.snapshot()["counts"]
    assert counts["requests"] - counts["limited"] == 1  # the second page was not answered
    assert failed_ids(answer) == set()
    queued = [b for body in stack.drain_queue() for b in body.get("batch_ids", [])]
    assert len(queued) >= 100
    assert set(queued) <= set(ids)


# -- the shared pause, read by one thread while the others send -------------------------------


def test_an_invocation_sends_nothing_during_a_pause_another_one_shared(
    stack: Stack, instant_emulator: OpenAIEmulator
) -> None:
    # GIVEN a pause of 60 s that another invocation's 429 shared a moment ago
    emu = instant_emulator
    ids = seeded(emu, 8, "batch_during")
    SharedPause(client("dynamodb", stack.endpoint), stack.table_name).publish(time.time() + 60)
    app = stack.app(emu.base_url, MAX_IN_FLIGHT="8")

    # WHEN a new invocation (a cold one: its first read is due at once) cancels 8 batches
    answer = app.handle(sqs_event(json.dumps({"batch_ids": ids})), context(20))

    # THEN it sent none of them into the pause (each would meet the limit: the storm the shared
    # pause is there to prevent, at the start of every invocation); all of them went on
    sent = sent_for(emu, ids)
    assert sent == [], f"{len(sent)} of {len(ids)} requests sent while the shared pause held"
    assert failed_ids(answer) == set()


# -- a 429 that asks for no wait at all -------------------------------------------------------

# Without any wait, the adaptive client's unlimited 429 retries would be a loop at network speed;
# with the policy's own backoff (0.5 s base, full jitter, 8 s cap), a few seconds hold a few
# dozen attempts at most. This is a count of requests, not a time.
FLOOD = 100


@pytest.mark.parametrize(
    "retry_after",
    ["0", "nan", "-1", "Mon, 01 Jan 2001 00:00:00 GMT"],
    ids=["zero", "nan", "negative", "http-date-past"],
)
def test_a_429_asking_no_wait_is_not_retried_at_network_speed(
    stack: Stack, instant_emulator: OpenAIEmulator, retry_after: str
) -> None:
    # GIVEN a gateway that answers every cancel 429 with a Retry-After that means "no wait"
    emu = instant_emulator
    ids = seeded(emu, 1, "batch_nowait")
    emu.inject(Fault("status", status=429, times=None, retry_after=retry_after))
    app = stack.app(emu.base_url)

    # WHEN one invocation with ~3.5 s of work time handles the cancel
    answer = app.handle(sqs_event(json.dumps({"batch_ids": ids})), context(10))

    # THEN it backed off between attempts (today's client: 5 attempts, then the message waits)
    sent = len(sent_for(emu, ids))
    assert sent < FLOOD, f"{sent} requests for one cancel in one invocation"
    assert failed_ids(answer) == set()


# -- the pause item's key as a batch ID from the API ------------------------------------------


def test_a_listed_id_that_is_the_pause_key_does_not_dead_letter_the_sweep_s_cancels(
    stack: Stack,
) -> None:
    # GIVEN a gateway whose listing holds 99 running batches and one whose ID is the pause
    # item's key (`#` is refused in commands, but the sweep takes IDs from the API as given)
    batches = [aged(i, "in_progress", 1) for i in range(99)]
    batches.insert(50, {**aged(99, "in_progress", 1), "id": PAUSE_ITEM_KEY})
    listing = listed_as_given(batches, page_size=100)

    def answer(method: str, path: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        if method == "POST":
            return 200, {}, {"id": batch_id_in(path), "object": "batch", "status": "cancelled"}
        return listing(method, path, headers)

    with fake_api(answer) as base_url:
        app = stack.app(base_url)
        # WHEN a sweep runs, and the function handles the cancels it queued
        summary = app.handle({"sweep": {"all": True}}, context())
        for body in stack.drain_queue():
            app.handle(sqs_event(json.dumps(body)), context())

    # THEN the 99 real batches are cancelled and nothing is dead-lettered; the key is no batch
    assert stack.dead_letters() == []
    cancelled = [b["id"] for b in batches if (stack.item(b["id"]) or {}).get("status")]
    assert len(cancelled) == 99
    assert set(stack.item(PAUSE_ITEM_KEY) or {}) <= {"batch_id", "paused_until", "set_at"}
    # AND the sweep's summary says it skipped one listed ID
    assert (summary["invalid_ids"], summary["queued"]) == (1, 99)


def test_a_shared_end_too_far_ahead_is_ignored_and_replaced_by_the_next_write(
    stack: Stack,
) -> None:
    # GIVEN the shared item written 5 h ahead by a writer whose clock runs fast
    dynamodb = client("dynamodb", stack.endpoint)
    SharedPause(dynamodb, stack.table_name).publish(time.time() + 5 * 3600)
    capped = SharedPause(dynamodb, stack.table_name, max_ahead=60.0)

    # THEN a reader with the function's cap takes it for no pause
    assert capped.read() is None
    # AND the next write (a 10 s pause) replaces it, though it is earlier
    capped.publish(time.time() + 10)
    until = capped.read()
    assert until is not None
    assert until <= time.time() + 10
    # AND no write puts an end further ahead than the cap
    capped.publish(time.time() + 3600)
    raw = float((stack.item(PAUSE_ITEM_KEY) or {})["paused_until"])
    assert raw <= time.time() + 60
