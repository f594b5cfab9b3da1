"""The local stack with a function-URL function in the template: its handler is served by the
emulated function URL, the emulator's webhooks reach it signed with the provisioned secret,
and `webhook send` does too. Without such a function the stack has none of it."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cli.main import main
from infra.local_stack.banner import banner, exports
from infra.local_stack.provision import provision
from infra.local_stack.stack import LocalStack
from infra.local_stack.url_functions import without_url_functions
from infra.sam.template import load_template
from tests.local_stack import url_handler
from tests.support import client

HANDLER = "tests.local_stack.url_handler.lambda_handler"


def with_webhook_function() -> dict[str, Any]:
    """template.yaml plus a receiver shaped as DESIGN.md's "Webhook intake" describes it."""
    template = copy.deepcopy(load_template())
    template["Parameters"]["OpenAIWebhookSecretArn"] = {"Type": "String", "Default": ""}
    template["Resources"]["WebhookFunction"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": "functions/",
            "Handler": HANDLER,
            "Timeout": 5,
            "FunctionUrlConfig": {"AuthType": "NONE"},
            "Environment": {
                "Variables": {
                    "OPENAI_WEBHOOK_SECRET_ID": {"Ref": "OpenAIWebhookSecretArn"},
                    "CANCEL_QUEUE_URL": {"Ref": "CancelQueue"},
                }
            },
        },
    }
    template["Outputs"]["WebhookUrl"] = {
        "Value": {"Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]}
    }
    return template


def test_without_a_url_function_nothing_is_provisioned_for_webhooks(moto_url: str) -> None:
    stack = provision(moto_url, api_key="sk-local", stack_name="no-webhook-test")
    assert stack.url_functions == []
    assert stack.webhook_secret_arn is None
    assert "webhook" not in stack.state("http://127.0.0.1:1/v1")


def test_a_url_function_gets_its_environment_and_a_whsec_secret(moto_url: str) -> None:
    stack = provision(
        moto_url,
        api_key="sk-local",
        stack_name="webhook-provision-test",
        template=with_webhook_function(),
        function_urls={"WebhookFunction": "http://127.0.0.1:4568/"},
    )

    (function,) = stack.url_functions
    assert function.handler == HANDLER
    assert function.timeout_seconds == 5
    assert function.environment["OPENAI_WEBHOOK_SECRET_ID"] == stack.webhook_secret_arn
    assert function.environment["CANCEL_QUEUE_URL"] == stack.outputs["CancelQueueUrl"]
    stored = client("secretsmanager", moto_url).get_secret_value(SecretId=stack.webhook_secret_arn)
    assert stored["SecretString"] == stack.webhook_secret
    assert stored["SecretString"].startswith("whsec_")
    assert stack.outputs["WebhookUrl"] == "http://127.0.0.1:4568/"
    assert stack.webhook_secret not in json.dumps(stack.state("http://127.0.0.1:1/v1"))


@pytest.fixture
def running() -> Iterator[LocalStack]:
    saved = dict(os.environ)  # the stack points AWS_* at itself, as `make local` does
    stack = LocalStack(cancel_delay_seconds=0.2, template=with_webhook_function()).start()
    try:
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


def test_emulator_webhooks_reach_the_handler_through_the_function_url(
    running: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url_handler.RECEIVED.clear()
    assert running.webhook_url is not None
    state = running.state()
    assert state["webhook"] == {
        "url": running.webhook_url,
        "secret_id": running.provisioned.webhook_secret_arn,
        "function": "WebhookFunction",
    }
    assert running.outputs["WebhookUrl"] == running.webhook_url
    variables = exports(state, running.openai.url, tmp_path)
    assert variables["WEBHOOK_URL"] == running.webhook_url
    printed = banner(variables, ["batch_a", "batch_b"], tmp_path, "LOCAL_AWS_PORT")
    assert "--local webhook send batch_b" in printed
    assert "LOCAL_WEBHOOK_PORT" in printed

    batch = running.openai.seed(status="in_progress")
    running.openai.finish(batch["id"], "completed")

    ((verdict, event),) = url_handler.wait_for(1)
    assert verdict == "verified"
    assert json.loads(event["body"])["data"]["id"] == batch["id"]
    assert event["requestContext"]["http"]["method"] == "POST"
    assert running.openai.webhooks.wait_idle(10)
    (delivery,) = running.openai.webhooks.deliveries()
    assert delivery["state"] == "delivered"

    path = tmp_path / "state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    assert main(["--local", str(path), "webhook", "send", "batch_by_hand"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["status", "200"]
    (_, (verdict, by_hand)) = url_handler.wait_for(2)
    assert verdict == "verified"
    assert json.loads(by_hand["body"])["data"]["id"] == "batch_by_hand"


def test_a_busy_webhook_port_fails_at_once_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from infra.local_stack import __main__ as local_main

    monkeypatch.setattr(local_main, "load_template", with_webhook_function)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("LOCAL_AWS_PORT", "0")
        monkeypatch.setenv("LOCAL_OPENAI_PORT", "0")
        monkeypatch.setenv("LOCAL_WEBHOOK_PORT", str(taken.getsockname()[1]))

        assert local_main.main() == 2
    assert "LOCAL_WEBHOOK_PORT=<port>" in capsys.readouterr().err


def test_the_webhook_port_is_checked_only_with_a_url_function() -> None:
    from infra.local_stack.__main__ import port_variables

    assert "LOCAL_WEBHOOK_PORT" not in port_variables(without_url_functions(load_template()))
    assert "LOCAL_WEBHOOK_PORT" in port_variables(with_webhook_function())
