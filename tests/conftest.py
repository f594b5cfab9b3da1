"""Shared fixtures: moto in server mode and the OpenAI emulator, both over real sockets."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator

import pytest

from infra.openai_emulator import OpenAIEmulator
from infra.servers import moto_server
from tests.support import API_KEY, SECRETS, LocalAws, Stack

# The function's code reads standard AWS variables; nothing may reach a real AWS account.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "BatchCancellerTests",
        "POWERTOOLS_SERVICE_NAME": "batch-canceller",
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        os.environ["AWS_ENDPOINT_URL"] = url
        yield url


@pytest.fixture(scope="session")
def local_aws(moto_url: str) -> LocalAws:
    return LocalAws(moto_url)


@pytest.fixture
def stack(local_aws: LocalAws) -> Stack:
    """Fresh, uniquely named resources for one test: table, queue + DLQ, bus, secret."""
    return local_aws.create_stack()


@pytest.fixture
def emulator() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_keys={API_KEY}, cancel_delay_seconds=1.0) as emu:
        yield emu


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Across the whole suite: no test's logs, output or failure text may contain an API key."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    texts = [report.capstdout, report.capstderr, report.caplog, str(report.longrepr or "")]
    leaked = [secret for secret in SECRETS if any(secret in text for text in texts)]
    if leaked and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = f"an API key appeared in the output of {item.nodeid}"


@pytest.fixture
def function_logs() -> Iterator[io.StringIO]:
    """What the function logs during the test (its handler's stream is fixed at import time,
    so pytest's capture fixtures cannot be relied on to see it)."""
    buffer = io.StringIO()
    handlers = [
        h
        for h in logging.getLogger("batch-canceller").handlers
        if isinstance(h, logging.StreamHandler)
    ]
    previous = [h.setStream(buffer) for h in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        if stream is not None:
            handler.setStream(stream)
