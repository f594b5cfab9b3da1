"""The reconciler's deadline stop (WRITE_SECONDS = 1 s + FINISH_SECONDS 1.5 s) is looser than the
hook's (connect 1 + read 2 + 0.5 = 3.5 s): between 3.5 s and 2.5 s left, a settle is started,
the hook refuses it with OutOfAwsTime, nothing in Reconciler.run catches it, and the whole
reconcile fails instead of answering `stopped: deadline` (the merged
tests/integration/test_reconcile_index.py::test_a_reconcile_run_stays_within_its_deadline fails
the same way on this code). Found by the third adversarial review of issue 11; the test failed
before its fix.
"""

from __future__ import annotations

import json
from datetime import timedelta

from batch_canceller.records import iso, utc_now
from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client, context, failed_ids, sqs_event


def test_no_invocation_runs_past_its_deadline_a_reconcile_out_of_time_stops_instead_of_failing(
    stack: Stack, slow_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """Sequence: 100 settled-but-indexed records; DynamoDB writes take 100 ms. The scheduled
    `{"reconcile": {}}` arrives from the queue in an 8 s invocation. It settles
    records one by one; at ~3.4 s left `settle` is refused by the hook (OutOfAwsTime), which
    propagates: "reconcile failed: OutOfAwsTime", the reconcile message is reported failed
    (it will be received again and, after maxReceiveCount, dead-lettered). Expected: the run
    stops by the deadline with a summary and its message is done."""
    old = iso(utc_now() - timedelta(hours=2))
    ddb = client("dynamodb", stack.endpoint)
    for n in range(100):
        ddb.put_item(
            TableName=stack.table_name,
            Item={
                "batch_id": {"S": f"batch_settle{n:04d}"},
                "status": {"S": "cancelled"},
                "status_rank": {"N": "5"},
                "updated_at": {"S": old},
                "follow_through": {"S": "open"},
                "announced_events": {"SS": ["Batch Cancelled"]},
            },
        )
    app = stack.app(slow_emulator.base_url, aws_endpoint=proxy.url)
    proxy.add_rule(
        Rule(operation="DynamoDB.UpdateItem", action="delay", delay_seconds=0.1, times=None)
    )
    event = sqs_event(json.dumps({"reconcile": {}}))
    answer = app.handle(event, context(8.0))
    print("answer:", answer)
    assert failed_ids(answer) == set(), "the reconcile failed on a refused call instead of stopping"
