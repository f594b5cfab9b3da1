"""Adversarial review of the webhook path (issue 12), second pass: sequences the first review
(test_webhook_breaks.py) did not take. Each test names the behaviour the contract promises and
fails on the code as reviewed; none is marked xfail."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.openai_emulator import OpenAIEmulator
from infra.openai_emulator.webhook_events import new_secret
from tests.integration.test_scheduled_cancellations import ROLE, in_hours, scheduler, schedules
from tests.integration.test_webhook_notices import WEBHOOKS, notice
from tests.integration.test_webhook_receiver import Receiver, receiver
from tests.support import Stack, client, context, failed_ids, sqs_event

__all__ = ["receiver", "scheduler"]  # the fixtures, imported for pytest


# -- 1. a cancel_at waiting for a batch: the webhook's announcement drops the request --------


@pytest.mark.parametrize(
    ("ended_as", "kind", "detail_type"),
    [
        ("completed", "batch.completed", "Batch Finished Before Cancel"),
        ("cancelled", "batch.cancelled", "Batch Cancelled"),
    ],
)
def test_a_notice_for_a_scheduled_batch_announces_it_with_the_requests_reason(
    stack: Stack,
    emulator: OpenAIEmulator,
    scheduler: Any,
    ended_as: str,
    kind: str,
    detail_type: str,
) -> None:
    # GIVEN a cancel_at six hours away, with a reason and a requester: the record holds only
    # batch_id and cancel_schedule (README, The record), the reason lives in the schedule
    app = stack.app(
        emulator.base_url,
        SCHEDULER_ROLE_ARN=ROLE,
        SCHEDULE_GROUP_NAME=stack.table_name,
        WEBHOOKS_ENABLED=WEBHOOKS["WEBHOOKS_ENABLED"],
        WEBHOOK_FIRST_CHECK_DELAY_SECONDS=WEBHOOKS["WEBHOOK_FIRST_CHECK_DELAY_SECONDS"],
    )
    batch_id = str(emulator.seed(status="in_progress")["id"])
    body = {
        "batch_id": batch_id,
        "reason": "night",
        "requested_by": "ops",
        "cancel_at": in_hours(6),
    }
    assert failed_ids(app.handle(sqs_event(json.dumps(body)), context())) == set()
    assert set(stack.item(batch_id) or {}) == {"batch_id", "cancel_schedule"}
    assert len(schedules(scheduler, stack.table_name)) == 1
    # WHEN the batch ends on its own (or is cancelled in the dashboard) and OpenAI's webhook
    # for it arrives before the schedule fires
    emulator.finish(batch_id, ended_as)
    assert failed_ids(app.handle(sqs_event(notice(batch_id, kind)), context())) == set()
    # THEN whatever is announced for the batch carries the request's reason and requester, as
    # the schedule's own cancel would have (README: `reason` and `requested_by` when given).
    # Polling alone keeps the schedule, which fires and announces with them.
    announced = stack.events_of(detail_type, batch_id)
    if not announced:
        assert len(schedules(scheduler, stack.table_name)) == 1  # the request still stands
        return
    (event,) = announced
    left = len(schedules(scheduler, stack.table_name))
    detail = event["detail"]
    assert (detail["reason"], detail["requested_by"]) == ("night", "ops"), f"schedules left: {left}"


# -- 2. `webhook send` cannot sign with a secret in its documented rotation form ---------------


def test_webhook_send_signs_with_a_secret_stored_in_its_rotation_form(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # README, Webhooks: during a rotation the secret is {"webhook_secret": ["whsec_new",
    # "whsec_old"]}, which the receiver reads; the CLI's test delivery should sign with it
    # (with the first, the new one) rather than say the secret holds no webhook secret.
    from infra.cli.main import main
    from tests.infra.webhook_receiver import WebhookReceiver

    new, old = new_secret(), new_secret()
    secret_id = client("secretsmanager", moto_url).create_secret(
        Name=f"webhook-{uuid.uuid4().hex[:12]}",
        SecretString=json.dumps({"webhook_secret": [new, old]}),
    )["ARN"]
    with WebhookReceiver() as receiver:
        state = tmp_path / "state.json"
        state.write_text(
            json.dumps(
                {
                    "aws_endpoint": moto_url,
                    "region": "us-east-1",
                    "outputs": {},
                    "webhook": {"url": receiver.url, "secret_id": secret_id},
                }
            ),
            encoding="utf-8",
        )
        code = main(["--local", str(state), "webhook", "send", "batch_abc123"])
        received = list(receiver.received)
    out, err = capsys.readouterr()
    assert new not in out + err
    assert old not in out + err
    assert code == 0, out + err
    assert len(received) == 1


# -- 3. a webhook secret under a customer managed KMS key cannot be read -----------------------


def test_the_receiver_can_read_a_webhook_secret_under_the_stacks_customer_managed_key() -> None:
    # The stack supports a customer managed key for its secret (OpenAIApiKeySecretKmsKeyArn:
    # the canceller's role gets kms:Decrypt via Secrets Manager). A webhook secret encrypted
    # with that key (or any customer key) needs the same grant on the receiver's role; without
    # it every GetSecretValue is AccessDenied, every delivery is answered 503, and no webhook
    # ever ends a wait. Neither a parameter for the webhook secret's key nor a grant exists.
    from infra.sam.template import load_template, properties

    template = load_template()
    webhook_parameters = [name for name in template["Parameters"] if "Webhook" in name]
    role = json.dumps(properties(template, "WebhookFunctionRole")["Policies"])
    assert "kms:Decrypt" in role, (
        "WebhookFunctionRole cannot decrypt a customer-key secret; webhook parameters: "
        f"{webhook_parameters}"
    )


# -- 4. the emulated function URL drops a chunked body -----------------------------------------


def test_the_local_function_url_passes_a_chunked_body_to_the_handler(receiver: Receiver) -> None:
    # A function URL (like any HTTP/1.1 server) takes a body sent with Transfer-Encoding:
    # chunked and no Content-Length; Lambda hands the handler the whole body. The emulated URL
    # reads Content-Length only (0 when absent), so the handler sees an empty body and a
    # correctly signed delivery is answered 401 locally while AWS answers 200.
    import http.client

    from batch_canceller import webhook_handler
    from infra.local_stack.function_url import FunctionUrlServer
    from tests.webhook_support import event_body, signed_headers

    body = event_body()
    with FunctionUrlServer(webhook_handler.lambda_handler, timeout_seconds=10) as url:
        connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=10)
        headers = {"content-type": "application/json", **signed_headers(body)}
        connection.request("POST", "/", body=iter([body[:10], body[10:]]), headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
    assert response.status == 200
    assert len(receiver.queued()) == 1
