"""The webhook receiver in template.yaml: off unless its secret is given, a public function URL
in front of the handler, reserved concurrency, and a role that grants what its code calls and
nothing else (read from the code's AST, from webhook_handler's imports down)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from infra.sam.template import ROOT, Resolver, function_environment, load_template, properties
from tests.template.test_grants_match_calls import (
    ACTION_CALLS,
    allow_statements,
    as_list,
    boto3_calls,
    needed_by,
)
from tests.template.test_template_properties import ACCOUNT, ATTRIBUTES, REFS, SECRET_ARN

PACKAGE = ROOT / "functions" / "batch_canceller"
FUNCTION = "WebhookFunction"
ROLE = "WebhookFunctionRole"
WEBHOOK_SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:openai-webhook-AbCdEf"
WEBHOOK_RESOURCES = {FUNCTION, ROLE, "WebhookLogGroup"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resolver(template: dict[str, Any], **parameters: str) -> Resolver:
    return Resolver(
        template,
        parameters={"OpenAIApiKeySecretArn": SECRET_ARN, **parameters},
        refs=REFS,
        attributes=ATTRIBUTES,
    )


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def test_webhooks_are_off_by_default_and_on_with_a_secret(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["OpenAIWebhookSecretArn"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch(WEBHOOK_SECRET_ARN)
    assert not pattern.fullmatch("whsec_abc")
    assert resolver(template).condition("WebhooksOn") is False
    assert resolver(template, OpenAIWebhookSecretArn=WEBHOOK_SECRET_ARN).condition("WebhooksOn")
    for logical_id in WEBHOOK_RESOURCES:
        assert template["Resources"][logical_id]["Condition"] == "WebhooksOn", logical_id
    assert template["Outputs"]["WebhookUrl"] == {
        "Condition": "WebhooksOn",
        "Description": template["Outputs"]["WebhookUrl"]["Description"],
        "Value": {"Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]},
    }


def test_the_function_is_the_handler_behind_a_public_url_with_reserved_concurrency(
    template: dict[str, Any],
) -> None:
    props = properties(template, FUNCTION)
    assert props["Handler"] == "batch_canceller.webhook_handler.lambda_handler"
    assert (PACKAGE / "webhook_handler.py").is_file()
    assert props["CodeUri"] == "functions/"
    assert (props["Runtime"], props["Architectures"]) == ("python3.13", ["arm64"])
    assert props["FunctionUrlConfig"] == {"AuthType": "NONE"}  # the signature authenticates
    assert props["ReservedConcurrentExecutions"] == ref("WebhookReservedConcurrency")
    assert template["Parameters"]["WebhookReservedConcurrency"]["Default"] == 10
    assert isinstance(props["Timeout"], int)
    assert props["Timeout"] <= 15
    assert props["Role"] == {"Fn::GetAtt": [ROLE, "Arn"]}
    assert props["LoggingConfig"]["LogGroup"] == ref("WebhookLogGroup")
    group = properties(template, "WebhookLogGroup")
    assert group["RetentionInDays"] == ref("LogRetentionInDays")
    assert "Events" not in props
    assert "Policies" not in props


def test_the_environment_is_what_the_handler_reads(template: dict[str, Any]) -> None:
    from batch_canceller.webhook_handler import build_intake
    from tests.template.test_template_properties import RecordingEnv

    env = function_environment(
        template, FUNCTION, resolver(template, OpenAIWebhookSecretArn=WEBHOOK_SECRET_ARN)
    )
    assert env["OPENAI_WEBHOOK_SECRET_ID"] == WEBHOOK_SECRET_ARN
    assert env["CANCEL_QUEUE_URL"] == REFS["CancelQueue"]
    recording = RecordingEnv(env)
    build_intake(recording)
    assert set(env) - recording.read == {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "LOG_LEVEL",
    }


def test_the_canceller_is_told_whether_webhooks_are_on(template: dict[str, Any]) -> None:
    off = function_environment(template, "BatchCancellerFunction", resolver(template))
    on = function_environment(
        template,
        "BatchCancellerFunction",
        resolver(template, OpenAIWebhookSecretArn=WEBHOOK_SECRET_ARN),
    )
    assert (off["WEBHOOKS_ENABLED"], on["WEBHOOKS_ENABLED"]) == ("false", "true")
    assert on["WEBHOOK_FIRST_CHECK_DELAY_SECONDS"] == "600"
    parameter = template["Parameters"]["WebhookFirstCheckDelaySeconds"]
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (600, 0, 900)


def role_grants(template: dict[str, Any]) -> dict[str, list[Any]]:
    grants: dict[str, list[Any]] = {}
    for policy in properties(template, ROLE)["Policies"]:
        for statement in allow_statements(policy["PolicyDocument"]):
            for action in as_list(statement["Action"]):
                grants.setdefault(action, []).extend(as_list(statement["Resource"]))
    return grants


def test_the_role_reads_its_secret_sends_to_the_queue_and_nothing_else(
    template: dict[str, Any],
) -> None:
    assert role_grants(template) == {
        "logs:CreateLogStream": [{"Fn::GetAtt": ["WebhookLogGroup", "Arn"]}],
        "logs:PutLogEvents": [{"Fn::GetAtt": ["WebhookLogGroup", "Arn"]}],
        "secretsmanager:GetSecretValue": [ref("OpenAIWebhookSecretArn")],
        # Only with a customer managed key on the secret, and only via Secrets Manager.
        "kms:Decrypt": [ref("OpenAIWebhookSecretKmsKeyArn")],
        "sqs:SendMessage": [{"Fn::GetAtt": ["CancelQueue", "Arn"]}],
    }
    assert "ManagedPolicyArns" not in properties(template, ROLE)


def imported_modules(start: str = "webhook_handler") -> set[Path]:
    """The package's modules that `start` imports, directly or not (function-level too)."""
    found: set[Path] = set()
    todo = [PACKAGE / f"{start}.py"]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "batch_canceller."
            ):
                todo.append(PACKAGE / f"{node.module.removeprefix('batch_canceller.')}.py")
    return found


def called_in(paths: set[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Attribute):
                    names.add(node.func.attr)
                elif isinstance(node.func, ast.Name):
                    names.add(node.func.id)
    return names


def test_the_receivers_code_calls_exactly_what_its_role_grants(template: dict[str, Any]) -> None:
    modules = imported_modules()
    assert PACKAGE / "webhook_intake.py" in modules
    assert PACKAGE / "processor.py" not in modules  # the canceller stays out of it
    called = called_in(modules)
    # Lambda writes the logs; Secrets Manager decrypts with the key: no code calls those.
    granted = set(role_grants(template)) - {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "kms:Decrypt",
    }
    # every grant is needed by a call ...
    assert {action for action in granted if not needed_by(action) & called} == set()
    # ... and every AWS call is granted
    calls = boto3_calls(called)
    assert calls
    assert {name: actions for name, actions in calls.items() if not actions & granted} == {}
    assert set(ACTION_CALLS) >= granted
