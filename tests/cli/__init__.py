"""Helpers for the CLI tests: a local-stack state file for the `stack` fixture, and a runner."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from infra.cli.main import main
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, client

SCHEDULER_ROLE = "arn:aws:iam::123456789012:role/x"


def write_state(
    stack: Stack, emulator: OpenAIEmulator, directory: Path, **outputs: str | None
) -> Path:
    """The state file `make local` writes, for this test's resources; `outputs` override
    (None removes one). A schedule group of its own keeps tests apart."""
    sqs = client("sqs", stack.endpoint)
    queue_arn = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    group = stack.table_name
    client("scheduler", stack.endpoint).create_schedule_group(Name=group)
    values: dict[str, str | None] = {
        "CancelQueueUrl": stack.queue_url,
        "CancelQueueArn": queue_arn,
        "DeadLetterQueueUrl": stack.dlq_url,
        "BatchesTableName": stack.table_name,
        "EventBusName": stack.bus_name,
        "ScheduleGroupName": group,
        "SchedulerRoleArn": SCHEDULER_ROLE,
    }
    values.update(outputs)
    environment = {
        "BATCHES_TABLE_NAME": stack.table_name,
        "EVENT_BUS_NAME": stack.bus_name,
        "CANCEL_QUEUE_URL": stack.queue_url,
        "CANCEL_QUEUE_ARN": queue_arn,
        "DEAD_LETTER_QUEUE_URL": stack.dlq_url,
        "OPENAI_API_KEY_SECRET_ID": stack.secret_id,
        "OPENAI_BASE_URL": emulator.base_url,
        "SCHEDULER_ROLE_ARN": SCHEDULER_ROLE,
        "SCHEDULE_GROUP_NAME": group,
        "POLL_INITIAL_DELAY_SECONDS": "1",
        "POLL_MAX_DELAY_SECONDS": "2",
        "MAX_IN_FLIGHT": "8",
    }
    state = {
        "aws_endpoint": stack.endpoint,
        "region": "us-east-1",
        "outputs": {key: value for key, value in values.items() if value is not None},
        "function_environment": environment,
    }
    path = directory / "state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    return path


def bare_state(directory: Path, endpoint: str, **outputs: str) -> Path:
    """A state file with just these outputs (no function), for checks that need no stack."""
    state = {"aws_endpoint": endpoint, "region": "us-east-1", "outputs": outputs}
    path = directory / "bare.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    return path


def queue_state(directory: Path, endpoint: str) -> tuple[Path, str]:
    """A fresh queue on moto and a state file naming it: all `send` needs, made in one call."""
    queue_url = client("sqs", endpoint).create_queue(QueueName=f"cli-{uuid.uuid4().hex[:12]}")[
        "QueueUrl"
    ]
    return bare_state(directory, endpoint, CancelQueueUrl=queue_url), queue_url


def drain(endpoint: str, queue_url: str) -> list[dict[str, Any]]:
    """Every message body on the queue, parsed; the queue is empty afterwards."""
    sqs = client("sqs", endpoint)
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def offline_state(directory: Path, **outputs: str) -> Path:
    """Nothing listens at this endpoint: for checks that must fail before any AWS call
    (a call would fail differently)."""
    endpoint = "http://127.0.0.1:9"
    defaults = {
        "CancelQueueUrl": f"{endpoint}/123456789012/cancel",
        "BatchesTableName": "batches",
        "ScheduleGroupName": "group",
    }
    return bare_state(directory, endpoint, **{**defaults, **outputs})


def cli(state: Path, *args: str) -> int:
    """`batch-canceller --local STATE ARGS...`, in-process."""
    return main(["--local", str(state), *args])
