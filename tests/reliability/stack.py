"""The AWS resources of a chaos run, on two moto servers.

DynamoDB gets a moto process of its own: moto serves requests under one GIL, and the table
takes most of a run's AWS work, so one process would cap the run at a single CPU. The queue,
DLQ, bus, capture rule and secret stay together on the other (the bus delivers to the queue).
Resources are made as in `tests.support.LocalAws.create_stack`, with the run's visibility
timeout and maxReceiveCount.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from tests.support import add_receipts_rule, client

EVENT_SOURCE = "batch-canceller"


@dataclass(frozen=True)
class ChaosStack:
    aws_url: str  # SQS, EventBridge, Secrets Manager
    dynamodb_url: str
    table_name: str
    queue_url: str
    dlq_url: str
    bus_name: str
    secret_id: str
    capture_queue_url: str  # a rule on the bus delivers every event of the function here


def _queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def create_stack(
    aws_url: str,
    dynamodb_url: str,
    api_key: str,
    *,
    visibility_timeout: int,
    max_receive_count: int,
) -> ChaosStack:
    suffix = uuid.uuid4().hex[:10]
    table = f"batches-{suffix}"
    client("dynamodb", dynamodb_url).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "batch_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "batch_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs = client("sqs", aws_url)
    dlq_url = sqs.create_queue(QueueName=f"cancel-dlq-{suffix}")["QueueUrl"]
    redrive = {
        "deadLetterTargetArn": _queue_arn(sqs, dlq_url),
        "maxReceiveCount": max_receive_count,
    }
    queue_url = sqs.create_queue(
        QueueName=f"cancel-{suffix}",
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    events = client("events", aws_url)
    bus = f"bus-{suffix}"
    events.create_event_bus(Name=bus)
    capture_url = sqs.create_queue(QueueName=f"capture-{suffix}")["QueueUrl"]
    events.put_rule(
        Name=f"capture-{suffix}",
        EventBusName=bus,
        EventPattern=json.dumps({"source": [EVENT_SOURCE]}),
    )
    events.put_targets(
        Rule=f"capture-{suffix}",
        EventBusName=bus,
        Targets=[{"Id": "capture", "Arn": _queue_arn(sqs, capture_url)}],
    )
    # As deployed: the function's own events come back to its queue as receipts.
    add_receipts_rule(events, bus, _queue_arn(sqs, queue_url))
    secret = f"openai-key-{suffix}"
    client("secretsmanager", aws_url).create_secret(
        Name=secret, SecretString=json.dumps({"api_key": api_key})
    )
    return ChaosStack(aws_url, dynamodb_url, table, queue_url, dlq_url, bus, secret, capture_url)
