"""The real Lambda handler: configuration from the environment, logs and EMF metrics."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from batch_canceller import handler
from batch_canceller.config import ConfigurationError
from infra.openai_emulator import Fault, OpenAIEmulator
from tests.support import API_KEY, Stack, context, sqs_event


@pytest.fixture
def configured(
    stack: Stack, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    settings = stack.settings(emulator.base_url)
    env = {
        "BATCHES_TABLE_NAME": settings.batches_table_name,
        "EVENT_BUS_NAME": settings.event_bus_name,
        "CANCEL_QUEUE_URL": settings.cancel_queue_url,
        "DEAD_LETTER_QUEUE_URL": settings.dead_letter_queue_url or "",
        "OPENAI_API_KEY_SECRET_ID": settings.api_key_secret_id,
        "OPENAI_BASE_URL": emulator.base_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler, "_application", None)
    yield
    monkeypatch.setattr(handler, "_application", None)


def emf_metrics(output: str) -> dict[str, Any]:
    """Metric values from the EMF documents Powertools printed."""
    found: dict[str, Any] = {}
    for line in output.splitlines():
        if '"_aws"' in line:
            document = json.loads(line)
            for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = document[definition["Name"]]
                found[definition["Name"]] = sum(value) if isinstance(value, list) else value
    return found


@pytest.mark.usefixtures("configured")
def test_handler_emits_a_metric_per_outcome_with_retries_and_latency(
    emulator: OpenAIEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.cancel_delay_seconds = 0
    done = emulator.seed(status="in_progress")
    finished = emulator.seed(status="completed")
    emulator.inject(Fault("status", status=429, retry_after_ms=10, times=1))

    answer = handler.lambda_handler(
        sqs_event(done["id"], finished["id"], "batch_unknown", "../bad"), context()
    )

    assert answer == {"batchItemFailures": []}
    metrics = emf_metrics(capfd.readouterr().out)
    assert metrics["BatchCancelled"] == 1
    assert metrics["BatchFinishedBeforeCancel"] == 1
    assert metrics["BatchCancelFailed"] == 1
    assert metrics["InvalidMessages"] == 1
    assert metrics["ApiRetries"] == 1
    assert metrics["CancelRequests"] == 3
    assert "ApiLatency" in metrics


@pytest.mark.usefixtures("configured")
def test_handler_logs_are_structured_with_the_lambda_context(
    emulator: OpenAIEmulator, function_logs: io.StringIO
) -> None:
    emulator.set_api_keys({"sk-other"})
    batch = emulator.seed(status="in_progress")

    handler.lambda_handler(sqs_event(batch["id"]), context())

    lines = [json.loads(line) for line in function_logs.getvalue().splitlines()]
    errors = [line for line in lines if line.get("level") == "ERROR"]
    assert errors, "a rejected key must be a loud error"
    assert errors[0]["batch_id"] == batch["id"]
    assert errors[0]["function_request_id"]
    assert errors[0]["http_status"] == 401
    assert all(API_KEY not in json.dumps(line) for line in lines)


def test_missing_configuration_fails_loudly_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handler, "_application", None)
    for name in (
        "BATCHES_TABLE_NAME",
        "EVENT_BUS_NAME",
        "CANCEL_QUEUE_URL",
        "OPENAI_API_KEY_SECRET_ID",
    ):
        monkeypatch.setenv(name, "x" if name != "CANCEL_QUEUE_URL" else "https://sqs/1/q")
    monkeypatch.delenv("BATCHES_TABLE_NAME")

    with pytest.raises(ConfigurationError, match="BATCHES_TABLE_NAME"):
        handler.lambda_handler(sqs_event("batch_a"), context())
