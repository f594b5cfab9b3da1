"""Adversarial review of the webhook path (issue 12): sequences that break DESIGN.md's webhook
table or the receiver/canceller hand-off. Each test names the behaviour the contract promises
and fails on the code as reviewed; none is marked xfail."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from batch_canceller import webhook_handler
from batch_canceller.input_fields import LATEST_TIME
from infra.fault_proxy import FaultProxy, Rule
from infra.local_stack.function_url import FunctionUrlServer
from infra.openai_emulator import OpenAIEmulator
from tests.integration.test_webhook_receiver import Receiver, answered, receiver
from tests.support import context, failed_ids, sqs_event
from tests.webhook_support import event_body, signed_headers, url_event

__all__ = ["receiver"]  # the fixture, imported for pytest

WEBHOOKS = {"WEBHOOKS_ENABLED": "true", "WEBHOOK_FIRST_CHECK_DELAY_SECONDS": "1"}


def unsigned_headers(signature: str) -> dict[str, str]:
    """Well-shaped `webhook-id` and fresh `webhook-timestamp`, any signature text: what
    anyone on the internet can send without knowing the secret."""
    return {
        "webhook-id": "msg_forged",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }


# -- 1. unsigned bad input answered 5xx ---------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "v1,\u00e9",  # a non-ASCII character where base64 is expected
        "v1,\u0661\u0662\u0663\u0664",  # Arabic-Indic digits
        "v1,AAAA v1,\u00fc",  # the second value non-ASCII
    ],
)
def test_a_non_ascii_signature_value_is_rejected_not_answered_500(
    receiver: Receiver, signature: str
) -> None:
    # DESIGN.md: malformed or non-matching signature headers are 400/401, nothing queued.
    body = event_body()
    status, _ = answered(receiver(url_event(body, unsigned_headers(signature))))
    assert status in (400, 401)
    assert receiver.queued() == []


def test_a_non_ascii_signature_over_a_real_socket_is_not_a_5xx(receiver: Receiver) -> None:
    # The same through the emulated function URL: header bytes as an HTTP client sends them.
    with FunctionUrlServer(webhook_handler.lambda_handler, timeout_seconds=10) as url:
        connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=10)
        body = event_body()
        connection.putrequest("POST", "/")
        connection.putheader("content-type", "application/json")
        connection.putheader("content-length", str(len(body)))
        for name, value in unsigned_headers("v1,x").items():
            if name != "webhook-signature":
                connection.putheader(name, value)
        connection.putheader("webhook-signature", "v1,\u00e9".encode())
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        connection.close()
    assert response.status < 500
    assert receiver.queued() == []


# -- 2. the receiver queues what the canceller dead-letters -------------------------------------


def test_what_the_receiver_queues_the_canceller_accepts_created_at_beyond_year_9000(
    receiver: Receiver, slow_emulator: OpenAIEmulator
) -> None:
    # GIVEN a delivery signed with the real secret whose created_at is a valid JSON integer
    # beyond what the canceller's notice parser allows (LATEST_TIME)
    body = event_body(created_at=int(LATEST_TIME.timestamp()) + 1)
    status, _ = answered(receiver(url_event(body, signed_headers(body))))
    queued = receiver.queued()
    # THEN either the receiver refuses it (400, nothing queued, per the table's "valid
    # signature but a body that ... is invalid" row), or the canceller accepts what it queued
    if status == 400:
        assert queued == []
        return
    assert status == 200
    app = receiver.stack.app(slow_emulator.base_url, **WEBHOOKS)
    answer = app.handle(sqs_event(*(json.dumps(m) for m in queued)), context())
    assert failed_ids(answer) == set()
    assert receiver.stack.dead_letters() == []


# -- 3. a forged signature answered 503 ---------------------------------------------------------


def test_a_forged_signature_is_401_even_when_the_secret_cannot_be_reread(
    receiver: Receiver, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a warm receiver (its keys cached) whose Secrets Manager then fails
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url)
    monkeypatch.setattr(webhook_handler, "_intake", None)
    body = event_body()
    assert answered(receiver(url_event(body, signed_headers(body))))[0] == 200
    receiver.queued()
    proxy.add_rule(Rule(operation="SecretsManager.GetSecretValue", action="http_error", times=None))
    # WHEN anyone sends a well-shaped request with a signature that matches nothing
    forged = event_body()
    status, _ = answered(receiver(url_event(forged, unsigned_headers("v1,AAAA"))))
    # THEN the table's answer: 401 (a 503 also invites the sender to come back, and counts
    # the forgery as a failure of the receiver, WebhooksFailed)
    assert status == 401
    assert receiver.queued() == []


# -- 4. a template parameter combination that stops the canceller -----------------------------


def test_every_poll_max_delay_the_template_allows_starts_the_canceller_with_webhooks_on() -> None:
    # PollMaxDelaySeconds allows 0..900 and WebhookFirstCheckDelaySeconds defaults to 600; the
    # template has no Rules tying them. With webhooks on and PollMaxDelaySeconds 300 (checks
    # every 5 minutes, a reasonable choice), CloudFormation deploys, and then every cold start
    # of the canceller raises ConfigurationError: no cancel, check or notice is handled.
    from batch_canceller.config import ConfigurationError, Settings
    from infra.sam.template import Resolver, function_environment, load_template
    from tests.template.test_template_properties import ATTRIBUTES, REFS, SECRET_ARN
    from tests.template.test_webhook_template import WEBHOOK_SECRET_ARN

    template = load_template()
    parameters = {
        "OpenAIApiKeySecretArn": SECRET_ARN,
        "OpenAIWebhookSecretArn": WEBHOOK_SECRET_ARN,
        "PollInitialDelaySeconds": "30",
        "PollMaxDelaySeconds": "300",
    }
    resolver = Resolver(template, parameters=parameters, refs=REFS, attributes=ATTRIBUTES)
    env = function_environment(template, "BatchCancellerFunction", resolver)
    assert "Rules" not in template  # nothing refuses the combination at deploy time
    try:
        Settings.from_env(env)
    except ConfigurationError as exc:
        pytest.fail(f"a deployable parameter set stops the canceller: {exc}")
