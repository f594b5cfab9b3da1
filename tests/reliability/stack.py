"""The AWS resources of a chaos run, on two moto servers.

DynamoDB gets a moto process of its own: moto serves requests under one GIL, and the table
takes most of a run's AWS work, so one process would cap the run at a single CPU. The queue,
DLQ, bus, capture rule and secret stay together on the other (the bus delivers to the queue).
Resources are made by `tests.support.create_resources`, as for the integration tests, with the
run's visibility timeout and maxReceiveCount.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support import create_resources


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


def create_stack(
    aws_url: str,
    dynamodb_url: str,
    api_key: str,
    *,
    visibility_timeout: int,
    max_receive_count: int,
) -> ChaosStack:
    """`tests.support.create_resources` with the table on its own server and the run's
    visibility timeout and maxReceiveCount."""
    made = create_resources(
        aws_url,
        api_key,
        dynamodb_endpoint=dynamodb_url,
        visibility_timeout=visibility_timeout,
        max_receive_count=max_receive_count,
    )
    return ChaosStack(aws_url, dynamodb_url, *made.names, made.capture_queue())
