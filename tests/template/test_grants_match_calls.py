"""The function's role grants only what the code calls, and the code calls nothing ungranted.

Both directions are read from the sources: the role's statements from template.yaml, the
calls from the AST of functions/batch_canceller/*.py. What ties an IAM action to a call is the
data below, so a new grant or a new call without its line here fails a test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.sam.template import ROOT, load_template, properties

PACKAGE = ROOT / "functions" / "batch_canceller"
ROLE = "BatchCancellerFunctionRole"

# Granted action -> the calls in functions/ that need it: boto3 client methods (paginators
# count by their operation's name), or the library entry point that makes the call for us.
ACTION_CALLS: dict[str, tuple[str, ...]] = {
    "dynamodb:GetItem": ("get_item",),
    "dynamodb:BatchGetItem": ("batch_get_item",),
    "dynamodb:UpdateItem": ("update_item",),
    "dynamodb:Query": ("query",),
    "sqs:SendMessage": ("send_message", "send_message_batch"),
    "sqs:ChangeMessageVisibility": ("change_message_visibility", "change_message_visibility_batch"),
    "events:PutEvents": ("put_events",),
    # Powertools' SecretsProvider calls GetSecretValue with the client it is given.
    "secretsmanager:GetSecretValue": ("get_secret_value", "SecretsProvider"),
    "scheduler:CreateSchedule": ("create_schedule",),
    "scheduler:DeleteSchedule": ("delete_schedule",),
    "scheduler:GetSchedule": ("get_schedule",),
    "scheduler:UpdateSchedule": ("update_schedule",),
    "scheduler:ListSchedules": ("list_schedules",),
    # A schedule's Target.RoleArn is passed to Scheduler by the call that writes the schedule.
    "iam:PassRole": ("create_schedule", "update_schedule"),
}

# Granted actions no code in functions/ calls, and who calls them with the function's role.
USED_OUTSIDE_THE_CODE: dict[str, str] = {
    "logs:CreateLogStream": "the Lambda service writes the function's logs",
    "logs:PutLogEvents": "the Lambda service writes the function's logs",
    "sqs:ReceiveMessage": "the SQS event source mapping polls the queue",
    "sqs:DeleteMessage": "the SQS event source mapping deletes handled messages",
    "sqs:GetQueueAttributes": "the SQS event source mapping reads the queue's attributes",
    "kms:Decrypt": "Secrets Manager decrypts the key's secret (with a customer managed key)",
}

# IAM authorises the batch form of an operation as the single one.
BATCH_OPERATIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
# boto3 service name -> IAM service prefix, for the clients the function creates.
SERVICES = {
    "dynamodb": "dynamodb",
    "sqs": "sqs",
    "events": "events",
    "secretsmanager": "secretsmanager",
    "scheduler": "scheduler",
}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allow_statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for statement in as_list(document["Statement"]):
        if "Fn::If" in statement:  # a conditional statement: both branches count
            for branch in statement["Fn::If"][1:]:
                if isinstance(branch, dict) and branch.get("Effect") == "Allow":
                    yield branch
        elif statement.get("Effect") == "Allow":
            yield statement


def granted_actions(template: dict[str, Any]) -> set[str]:
    """Every action the function's role allows, over all its policies."""
    return {
        action
        for policy in properties(template, ROLE)["Policies"]
        for statement in allow_statements(policy["PolicyDocument"])
        for action in as_list(statement["Action"])
    }


def called_names(package: Path = PACKAGE) -> set[str]:
    """Names called anywhere in the package (`x.name(...)`, `name(...)`), and the operation
    names given to `get_paginator("...")`."""
    names: set[str] = set()
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
                if node.func.attr == "get_paginator" and node.args:
                    first = node.args[0]
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        names.add(first.value)
            elif isinstance(node.func, ast.Name):
                names.add(node.func.id)
    return names


@cache
def operations() -> dict[str, set[str]]:
    """boto3 method name -> the IAM actions of that operation, for the function's services."""
    session = boto3.session.Session(region_name="us-east-1")  # only its service models are read
    found: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        mapping = session.client(service).meta.method_to_api_mapping
        for method, operation in mapping.items():
            action = f"{prefix}:{BATCH_OPERATIONS.get(operation, operation)}"
            found.setdefault(method, set()).add(action)
    return found


def needed_by(action: str) -> set[str]:
    """The calls that need `action`: the data above, and every boto3 method of its operation."""
    from_model = {method for method, actions in operations().items() if action in actions}
    return set(ACTION_CALLS.get(action, ())) | from_model


def boto3_calls(names: set[str]) -> dict[str, set[str]]:
    """The called names that are operations of the function's AWS clients, with their actions."""
    return {name: operations()[name] for name in names if name in operations()}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_every_granted_action_is_accounted_for(template: dict[str, Any]) -> None:
    # A grant needs a line in the data above: a call that needs it, or who else uses it.
    unaccounted = granted_actions(template) - set(ACTION_CALLS) - set(USED_OUTSIDE_THE_CODE)
    assert unaccounted == set()


def test_every_granted_action_is_used(template: dict[str, Any]) -> None:
    # GIVEN the names the function's code calls
    called = called_names()
    # THEN every action its role grants is needed by one of them, or by the Lambda service
    unused = {
        action
        for action in granted_actions(template) - set(USED_OUTSIDE_THE_CODE)
        if not needed_by(action) & called
    }
    assert unused == set(), f"granted, never called: {sorted(unused)}"


def test_every_aws_call_in_the_code_is_granted(template: dict[str, Any]) -> None:
    # The reverse: a boto3 operation the code calls needs its action in the role.
    granted = granted_actions(template)
    calls = boto3_calls(called_names())
    assert calls, "the scan found no boto3 call at all: it is broken"
    ungranted = {name: sorted(actions) for name, actions in calls.items() if not actions & granted}
    assert ungranted == {}


def test_the_mapping_names_real_operations() -> None:
    # A typo in ACTION_CALLS would make a grant look unused (or used) for the wrong reason.
    library_calls = {"SecretsProvider"}
    for action, calls in ACTION_CALLS.items():
        for call in calls:
            if call in library_calls:
                continue
            actions = operations().get(call, set())
            if action == "iam:PassRole":
                assert actions, call
            else:
                assert action in actions, (action, call)


def test_the_scan_finds_calls_and_paginators(tmp_path: Path) -> None:
    # GIVEN a module calling a client method, a paginator and a library entry point
    (tmp_path / "m.py").write_text(
        "def f(client, parameters):\n"
        "    client.put_item(TableName='t', Item={})\n"
        "    client.get_paginator('query').paginate()\n"
        "    parameters.SecretsProvider(boto3_client=client)\n",
        encoding="utf-8",
    )
    # THEN the scan sees each of them, and maps the boto3 ones to their actions
    names = called_names(tmp_path)
    assert {"put_item", "query", "SecretsProvider"} <= names
    calls = boto3_calls(names)
    assert calls["put_item"] == {"dynamodb:PutItem"}
    assert "dynamodb:Query" in calls["query"]
    assert operations()["send_message_batch"] == {"sqs:SendMessage"}


def test_an_index_is_granted_only_to_code_that_reads_one(template: dict[str, Any]) -> None:
    # GetItem and UpdateItem never touch an index; only Query and Scan read one.
    index_grants = [
        statement["Action"]
        for policy in properties(template, ROLE)["Policies"]
        for statement in allow_statements(policy["PolicyDocument"])
        for resource in as_list(statement["Resource"])
        if "/index/" in str(resource)
    ]
    if index_grants:
        assert {"query", "scan"} & called_names(), f"index granted for {index_grants}"
