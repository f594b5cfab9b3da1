"""The local stack is provisioned from template.yaml and runs the demo end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from infra.local_stack.provision import provision
from infra.sam.template import load_template, properties
from tests.support import client

ROOT = Path(__file__).resolve().parents[2]


def test_resources_come_from_the_template(moto_url: str) -> None:
    stack = provision(moto_url, api_key="sk-local", stack_name="provision-test")
    template = load_template()
    sqs = client("sqs", moto_url)

    queue = stack.outputs["CancelQueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    declared = properties(template, "CancelQueue")
    assert int(attributes["VisibilityTimeout"]) == declared["VisibilityTimeout"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == declared["RedrivePolicy"]["maxReceiveCount"]
    assert redrive["deadLetterTargetArn"].endswith("provision-test-DeadLetterQueue")
    dlq = sqs.get_queue_attributes(
        QueueUrl=stack.outputs["DeadLetterQueueUrl"], AttributeNames=["MessageRetentionPeriod"]
    )["Attributes"]
    assert int(dlq["MessageRetentionPeriod"]) == 1209600

    table = client("dynamodb", moto_url).describe_table(TableName=stack.outputs["BatchesTableName"])
    indexes = [i["IndexName"] for i in table["Table"].get("GlobalSecondaryIndexes", [])]
    assert indexes == [
        i["IndexName"] for i in properties(template, "BatchesTable")["GlobalSecondaryIndexes"]
    ]

    events = client("events", moto_url)
    bus = stack.outputs["EventBusName"]
    rules = events.list_rules(EventBusName=bus)["Rules"]
    declared_receipts = properties(template, "PublicationReceiptsRule")["EventPattern"]
    assert sorted((json.loads(r["EventPattern"]) for r in rules), key=json.dumps) == sorted(
        [{"detail-type": ["Batch Cancel Requested"]}, declared_receipts], key=json.dumps
    )
    # Both rules send to the queue (cancel requests too: one bounded path), by its real ARN.
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for rule in rules:
        targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        assert [t["Arn"] for t in targets] == [queue_arn], rule["Name"]

    env = stack.function_environment
    assert env["CANCEL_QUEUE_URL"] == queue
    assert env["CANCEL_QUEUE_ARN"] == queue_arn == stack.outputs["CancelQueueArn"]
    assert env["BATCHES_TABLE_NAME"] == stack.outputs["BatchesTableName"]
    assert env["DEAD_LETTER_QUEUE_URL"] == stack.outputs["DeadLetterQueueUrl"]
    assert env["SCHEDULE_GROUP_NAME"] == stack.outputs["ScheduleGroupName"]
    assert stack.sqs_sources[0].queue_url == queue


def test_demo_runs_to_a_clean_verdict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.local_stack.demo"],
        cwd=ROOT,
        env={**os.environ, "LOCAL_STACK_DIR": str(tmp_path)},  # its log: not in the checkout
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "none lost, none announced twice" in result.stdout
    assert "scheduled cancellations fired: ['cancel-" in result.stdout
    # The webhook story: the emulator's webhooks ended the cancellations, no check sent a GET.
    ended = re.search(
        r"ended by a webhook: (\d+) of (\d+) cancellations .*status-check GETs for them: (\d+)",
        result.stdout,
    )
    assert ended is not None, result.stdout[-3000:]
    assert int(ended[1]) >= 1
    assert int(ended[3]) == 0
    assert re.search(
        r"announced by the webhook; GET /batches/\{id\} for it: 1 in all", result.stdout
    )
