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
from tests.support import Stack, client, context, failed_ids, sqs_event

__all__ = ["scheduler"]  # the fixture, imported for pytest


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
        emulator.base_url, SCHEDULER_ROLE_ARN=ROLE, SCHEDULE_GROUP_NAME=stack.table_name, **WEBHOOKS
    )
    batch_id = str(emulator.seed(status="in_progress")["id"])
    body = {"batch_id": batch_id, "reason": "night", "requested_by": "ops", "cancel_at": in_hours(6)}
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
    assert (event["detail"]["reason"], event["detail"]["requested_by"]) == ("night", "ops")


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
    assert new not in out + err and old not in out + err
    assert code == 0, out + err
    assert len(received) == 1
