"""With the new 2 s read timeout, an SQS that answers SendMessageBatch in 2.5 s (slow, not down)
fails every attempt with a read timeout; the needs-retry guard stops the retries near the
deadline; `_queue_cancels` takes the `False`s as "could not be queued" and raises, so the whole
sweep fails ("sweep failed: RuntimeError") instead of answering `not_queued` / `run_again`, and
its message comes back to fail the same way until the DLQ. Meanwhile the proxy did deliver every
timed-out request: the cancels were queued, repeatedly. Found by the third adversarial review of
issue 11; the test failed before its fix.
"""

from __future__ import annotations

import json

from infra.fault_proxy import FaultProxy, Rule
from tests.integration.conftest import aged, fake_api, listed_as_given
from tests.support import Stack, context, failed_ids, sqs_event


def test_queueing_cancels_stops_before_the_deadline_when_sqs_is_slow(
    stack: Stack, proxy: FaultProxy
) -> None:
    """Sequence: a sweep from the queue, 8 s invocation, one page of 3,000 running batches;
    SendMessageBatch answers after 2.5 s. Attempt 1 times out at 2 s (read timeout), the SDK
    retries while the guard allows, then the call fails; `_queue_cancels` raises. Expected:
    the sweep answers with `not_queued` and `run_again`, and its message is done."""
    batches = [aged(i, "in_progress", 1) for i in range(3000)]
    proxy.add_rule(
        Rule(operation="SQS.SendMessageBatch", action="delay", delay_seconds=2.5, times=None)
    )
    with fake_api(listed_as_given(batches, 3000)) as url:
        app = stack.app(url, aws_endpoint=proxy.url)
        event = sqs_event(json.dumps({"sweep": {"metadata": {"team": "x"}}}))
        answer = app.handle(event, context(8.0))
    print("answer:", answer)
    print("SendMessageBatch requests reaching SQS:", proxy.calls["SQS.SendMessageBatch"])
    print("cancel messages actually on the queue:", len(stack.drain_queue()))
    assert failed_ids(answer) == set(), "the sweep failed whole instead of reporting not_queued"
