"""The API key's Secrets Manager fetch is outside the deadline.

aws_deadline hooks only the DynamoDB and SQS clients. The Secrets Manager client
(service.build_application) is built with aws_config (standard retries, 5 attempts, 1 s + 2 s)
and no hook, and OpenAIBatchClient._call fetches the key *before* its deadline check; the fetch
is serialized by SecretsManagerApiKey's lock, and a failed fetch caches nothing, so every worker
thread fetches again in turn. Found by the third adversarial review of issue 11; the test failed
before its fix.
"""

from __future__ import annotations

import json
import time

from infra.fault_proxy import FaultProxy, Rule
from infra.openai_emulator import OpenAIEmulator
from tests.support import Stack, context, sqs_event

BUDGET = 8.0


def test_no_invocation_runs_past_its_deadline_when_secrets_manager_stalls(
    stack: Stack, instant_emulator: OpenAIEmulator, proxy: FaultProxy
) -> None:
    """Sequence: a cold container (key not cached) gets one SQS message cancelling 3 batches,
    8 s budget; GetSecretValue stalls 11 s on every attempt. Each of the 3 worker threads
    passes WorkRunner's deadline check, then waits for the lock and makes its own 5-attempt
    fetch. Expected: the invocation returns before its 8 s deadline."""
    ids = [instant_emulator.seed(status="in_progress")["id"] for _ in range(3)]
    proxy.add_rule(
        Rule(
            operation="SecretsManager.GetSecretValue",
            action="delay",
            delay_seconds=11.0,
            times=None,
        )
    )
    app = stack.app(instant_emulator.base_url, aws_endpoint=proxy.url)
    event = sqs_event(json.dumps({"batch_ids": ids}))
    started = time.monotonic()
    answer = app.handle(event, context(BUDGET))
    took = time.monotonic() - started
    print(f"answer {answer}; took {took:.1f} s of an {BUDGET:.0f} s invocation")
    assert took < BUDGET, f"ran {took - BUDGET:.1f} s past its deadline (Lambda kills it there)"
