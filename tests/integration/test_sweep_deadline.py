"""A sweep that runs out of time queues what it selected (found by an adversarial review).

A sweep that cannot list every page within one invocation is meant to stop and queue what it
selected so far (sweep.py: `complete = False  # out of time: what was selected so far is still
cancelled`). It never gets there: `_pages` stops only when `deadline.expired` (usable <= 0),
but `list_batches` -> `_call` refuses to start a request unless usable > MIN_REQUEST_SECONDS
(1 s) and raises TransientApiError. With any page latency under 1 s, the usable time always
passes through (0, 1] at a page boundary before it reaches 0, so the next page raises instead
of ending the loop. The sweep raises, `_run_side` turns it into `_MessageFailed`: nothing is
queued, no summary, the SQS message fails. Its redelivery starts listing from page 1 again and
fails the same way, every time, until maxReceiveCount moves the valid sweep to the DLQ (a
direct invoke raises RuntimeError instead).

Sequence used here: 300 batches (3 pages of 100), each page takes 0.7 s, the invocation has
7 s (usable 2 s after the 5 s reserve): page 1 at usable 2.0, page 2 at 1.3, page 3 at 0.6 ->
`_call` raises "list: no time left in this invocation".

The queueing that follows the listing had no deadline either (a second review): 3,000 IDs at
4 s per SendMessageBatch ran 12 s of an 8 s invocation. Now each call is sent only while the
deadline leaves time for it, and the answer says how many were queued and to run it again.
"""

from __future__ import annotations

import json

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import Fault, OpenAIEmulator
from tests.integration.conftest import aged, fake_api, listed_as_given
from tests.support import Stack, context, failed_ids, sqs_event

PAGE_SECONDS = 0.7
INVOCATION_SECONDS = 7.0


def slow_listing(emulator: OpenAIEmulator) -> None:
    for _ in range(300):
        emulator.seed(status="in_progress")
    emulator.inject(
        Fault(
            "delay", method="GET", path_regex=r"/batches$", delay_seconds=PAGE_SECONDS, times=None
        )
    )


def test_a_sweep_that_runs_out_of_time_reports_what_it_queued(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    slow_listing(emulator)
    app = stack.app(emulator.base_url)

    # Direct invoke, as the README shows for sweeps.
    answer = app.handle({"sweep": {"all": True}}, context(INVOCATION_SECONDS))

    # What sweep.py promises: out of time, the selected batches are still queued.
    assert answer["complete"] is False
    assert answer["queued"] > 0


def test_a_valid_sweep_on_the_queue_is_not_failed_until_it_is_dead_lettered(
    stack: Stack, emulator: OpenAIEmulator
) -> None:
    slow_listing(emulator)
    app = stack.app(emulator.base_url)
    body = json.dumps({"sweep": {"all": True}})

    # Every receive of the same valid message fails the same way (deterministic), so after
    # maxReceiveCount (5) SQS moves it to the DLQ.
    outcomes = [
        failed_ids(app.handle(sqs_event(body, ids=["sweep-msg"]), context(INVOCATION_SECONDS)))
        for _ in range(5)
    ]
    assert outcomes == [set()] * 5, f"the sweep message failed on every receive: {outcomes}"


def test_a_sweep_queues_its_cancels_only_while_the_deadline_leaves_time(
    stack: Stack, proxy: FaultProxy
) -> None:
    # One page of 3,000 running batches (30 messages, three SendMessageBatch calls of ten);
    # SQS slow, not failing: 1.7 s a call, under the client's 2 s read timeout. 6.5 s in all
    # (listing needs more than 6: the 5 s reserve and a second): two calls fit, a third would
    # end too close to the deadline (2 s planned + 1.5 s to answer).
    batches = [aged(i, "in_progress", 1) for i in range(3000)]
    proxy.add_rule(
        Rule(operation="SQS.SendMessageBatch", action="delay", delay_seconds=1.7, times=None)
    )

    with fake_api(listed_as_given(batches, 3000)) as url:
        app = stack.app(url, aws_endpoint=proxy.url)
        answer = app.handle({"sweep": {"metadata": {"team": "x"}}}, context(6.5))

    assert proxy.calls["SQS.SendMessageBatch"] == 2
    assert (answer["matched"], answer["queued"], answer["not_queued"]) == (3000, 2000, 1000)
    assert (answer["complete"], answer["run_again"]) == (False, True)
    assert len(stack.drain_queue()) == 20
