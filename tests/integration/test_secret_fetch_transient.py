"""A Secrets Manager that throttles or answers 5xx is a failed AWS call (the work comes back),
not a configuration error: `ConfigurationErrorsAlarm` (threshold 0) must mean the key or its
secret needs fixing. AccessDenied still is one. Found by the fourth adversarial review of issue
11; the transient cases failed before the fix."""

from __future__ import annotations

import json

import pytest

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, context, failed_ids, sqs_event


@pytest.mark.parametrize(("action", "status"), [("throttle", None), ("http_error", 500)])
def test_a_transient_secrets_manager_error_is_not_a_configuration_error(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy, action: str, status: int
) -> None:
    """Sequence: a cold container (key not cached); GetSecretValue is throttled / answers 500
    on every attempt; one SQS message cancels one batch. Expected: the message comes back
    (it does) and it is an AWS failure, not a ConfigurationError (it is counted as one)."""
    batch_id = instant_emulator.seed(status="in_progress")["id"]
    proxy.add_rule(
        Rule(operation="SecretsManager.GetSecretValue", action=action, status=status, times=None)
    )
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    event = sqs_event(json.dumps({"batch_ids": [batch_id]}))
    answer = app.handle(event, context(30))
    print("answer:", answer, "counts:", dict(app.tally.counts), "proxy:", dict(proxy.calls))
    assert failed_ids(answer) == {event["Records"][0]["messageId"]}
    assert app.tally.counts["ConfigurationErrors"] == 0, "a throttle/500 raised the config alarm"


def test_access_denied_is_still_a_configuration_error(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """Control (expected to pass): AccessDenied (400 ClientError) stays a ConfigurationError."""
    batch_id = instant_emulator.seed(status="in_progress")["id"]
    proxy.add_rule(
        Rule(operation="SecretsManager.GetSecretValue", action="http_error", status=400, times=None)
    )
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    event = sqs_event(json.dumps({"batch_ids": [batch_id]}))
    answer = app.handle(event, context(30))
    print("answer:", answer, "counts:", dict(app.tally.counts))
    assert failed_ids(answer) == {event["Records"][0]["messageId"]}
    assert app.tally.counts["ConfigurationErrors"] == 1
