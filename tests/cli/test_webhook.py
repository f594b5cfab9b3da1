"""`webhook send`: a signed test delivery POSTed to the function URL, verified by the `openai`
SDK at a real endpoint; the secret comes from Secrets Manager (moto) and is never printed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from openai import OpenAI

from infra.openai_emulator.webhook_events import new_secret
from tests.infra.webhook_receiver import WebhookReceiver
from tests.support import client


def stored_secret(endpoint: str, value: str) -> str:
    return str(
        client("secretsmanager", endpoint).create_secret(
            Name=f"webhook-{uuid.uuid4().hex[:12]}", SecretString=value
        )["ARN"]
    )


def state_file(directory: Path, endpoint: str, **webhook: str) -> Path:
    path = directory / "state.json"
    state = {"aws_endpoint": endpoint, "region": "us-east-1", "outputs": {}, "webhook": webhook}
    path.write_text(json.dumps(state), encoding="utf-8")
    return path


def run(*args: str) -> int:
    from infra.cli.main import main

    return main(list(args))


def test_send_posts_a_delivery_the_sdk_verifies_and_prints_the_status(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = new_secret()
    with WebhookReceiver() as receiver:
        state = state_file(
            tmp_path, moto_url, url=receiver.url, secret_id=stored_secret(moto_url, secret)
        )

        code = run(
            "--local", str(state), "webhook", "send", "batch_abc123", "--type", "batch.failed"
        )

        (received,) = receiver.received
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[0].split() == ["status", "200"]
    event = OpenAI(api_key="x", webhook_secret=secret).webhooks.unwrap(
        received.body, received.headers
    )
    assert (event.type, event.data.id) == ("batch.failed", "batch_abc123")
    assert received.webhook_id in out
    assert secret not in out + err


def test_a_non_2xx_answer_is_printed_and_exits_1(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with WebhookReceiver(401) as receiver:
        state = state_file(
            tmp_path, moto_url, url=receiver.url, secret_id=stored_secret(moto_url, new_secret())
        )
        code = run("--local", str(state), "webhook", "send", "batch_abc123", "--json")
    assert code == 1
    assert json.loads(capsys.readouterr().out)["status"] == 401


def test_url_and_secret_id_flags_need_no_stack_and_read_a_json_secret(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = new_secret()
    secret_id = stored_secret(moto_url, json.dumps({"webhook_secret": secret}))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.delenv("BATCH_CANCELLER_STACK", raising=False)
    monkeypatch.setenv("OPENAI_WEBHOOK_SECRET_ID", secret_id)
    with WebhookReceiver() as receiver:
        code = run("webhook", "send", "batch_x1", "--url", receiver.url, "--region", "us-east-1")
        (received,) = receiver.received
    assert code == 0
    OpenAI(api_key="x", webhook_secret=secret).webhooks.unwrap(received.body, received.headers)


def test_without_a_url_it_says_how_to_give_one(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = state_file(tmp_path, moto_url)
    assert run("--local", str(state), "webhook", "send", "batch_abc123") == 2
    assert "--url" in capsys.readouterr().err


def test_a_secret_that_is_not_whsec_is_refused_without_printing_it(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with WebhookReceiver() as receiver:
        state = state_file(
            tmp_path,
            moto_url,
            url=receiver.url,
            secret_id=stored_secret(moto_url, "sk-not-a-webhook-secret"),
        )
        assert run("--local", str(state), "webhook", "send", "batch_abc123") == 2
        assert receiver.received == []
    out, err = capsys.readouterr()
    assert "holds no 'whsec_' webhook secret" in err
    assert "sk-not-a-webhook-secret" not in out + err
