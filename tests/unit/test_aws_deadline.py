"""The deadline hooks on the AWS clients, against a port where nothing listens (no AWS needed):
an attempt the deadline has no room for is refused before it connects, retries stop when
their pause and attempt would not fit, and pool threads see the deadline of their caller."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import BotoCoreError, EndpointConnectionError

from batch_canceller.aws_deadline import (
    OutOfAwsTime,
    bound_by_deadline,
    carrying_deadline,
    invocation_deadline,
)
from batch_canceller.deadline import Deadline
from batch_canceller.service import aws_config


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _client(port: int, attempts: list[str]) -> Any:
    made = boto3.session.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    ).client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", config=aws_config(4))
    bound_by_deadline(made)
    # Registered after the deadline's hook: counts the attempts that were really sent.
    made.meta.events.register("before-send", lambda **_: attempts.append("sent"))
    return made


def test_an_attempt_without_room_is_refused_before_it_is_sent(closed_port: int) -> None:
    attempts: list[str] = []
    dynamodb = _client(closed_port, attempts)
    with invocation_deadline(Deadline.after(2.0)), pytest.raises(OutOfAwsTime) as refused:
        dynamodb.list_tables()
    assert attempts == []
    assert isinstance(refused.value, BotoCoreError)  # call sites take it as a failed call
    assert "ListTables" in str(refused.value)


def test_outside_an_invocation_nothing_is_refused(closed_port: int) -> None:
    attempts: list[str] = []
    dynamodb = _client(closed_port, attempts)
    with pytest.raises(EndpointConnectionError):
        dynamodb.list_tables()
    assert len(attempts) == 6  # the SDK's own retries, unchanged


def test_no_retry_when_its_pause_and_attempt_would_not_fit(closed_port: int) -> None:
    attempts: list[str] = []
    dynamodb = _client(closed_port, attempts)
    # Room for one attempt (3 s + 0.5 s), not for a pause of up to 1 s and another.
    with invocation_deadline(Deadline.after(4.2)), pytest.raises(EndpointConnectionError):
        dynamodb.list_tables()
    assert attempts == ["sent"]


def test_pool_threads_see_the_deadline_of_the_caller(closed_port: int) -> None:
    attempts: list[str] = []
    dynamodb = _client(closed_port, attempts)

    def call(_: int) -> str:
        try:
            dynamodb.list_tables()
        except BotoCoreError as exc:
            return type(exc).__name__
        return "answered"

    with ThreadPoolExecutor(max_workers=2) as pool:
        mapped = carrying_deadline(pool.map)
        with invocation_deadline(Deadline.after(2.0)):
            assert list(mapped(call, range(4))) == ["OutOfAwsTime"] * 4
    assert attempts == []
