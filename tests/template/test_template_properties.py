"""Properties of template.yaml that production depends on, read from the template itself."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from batch_canceller.config import ConfigurationError, Settings
from infra.sam.template import (
    ROOT,
    Resolver,
    function_environment,
    load_template,
    properties,
    resources_of_type,
)

FUNCTION = "BatchCancellerFunction"
DAYS_14 = 14 * 24 * 3600

# Allow statements that may use Resource "*", with the reason. Nothing else may. (There was
# scheduler:ListSchedules, which cannot be scoped; schedules named per batch need no listing.)
WILDCARD_RESOURCE_ALLOWLIST: dict[str, str] = {}

# Placeholder values of what CloudFormation would pass for each resource.
ACCOUNT = "123456789012"
QUEUE_URL = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/batch-canceller-CancelQueue"
DLQ_URL = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/batch-canceller-DeadLetterQueue"
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:batch-canceller/openai-AbCdEf"
REFS = {
    "BatchesTable": "batch-canceller-BatchesTable",
    "EventBus": "batch-canceller-events",
    "CancelQueue": QUEUE_URL,
    "DeadLetterQueue": DLQ_URL,
    "ScheduleGroup": "batch-canceller-ScheduleGroup",
    "AlarmTopic": f"arn:aws:sns:us-east-1:{ACCOUNT}:alarms",
}
QUEUE_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:batch-canceller-CancelQueue"
ATTRIBUTES = {
    ("SchedulerRole", "Arn"): f"arn:aws:iam::{ACCOUNT}:role/batch-canceller-scheduler",
    ("CancelQueue", "Arn"): QUEUE_ARN,
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    """The function's properties with Globals merged in, as SAM would."""
    merged = dict(template.get("Globals", {}).get("Function", {}))
    merged.update(properties(template, FUNCTION))
    return merged


def resolver(template: dict[str, Any], **parameters: str) -> Resolver:
    return Resolver(
        template,
        parameters={"OpenAIApiKeySecretArn": SECRET_ARN, **parameters},
        refs=REFS,
        attributes=ATTRIBUTES,
    )


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def arn_of(logical_id: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- the function --------------------------------------------------------------------------


def test_function_runs_python_3_13_on_arm64(function: dict[str, Any]) -> None:
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]


def test_handler_and_code_uri_point_at_the_package(function: dict[str, Any]) -> None:
    assert function["CodeUri"] == "functions/"
    module, _, attribute = function["Handler"].rpartition(".")
    assert module == "batch_canceller.handler"
    assert attribute == "lambda_handler"
    assert (ROOT / "functions" / "batch_canceller" / "handler.py").is_file()
    assert (ROOT / "functions" / "requirements.txt").is_file()


def test_memory_and_timeout_are_constants(function: dict[str, Any]) -> None:
    # They are set from a measurement, not per deployment.
    assert isinstance(function["MemorySize"], int)
    assert isinstance(function["Timeout"], int)
    assert 128 <= function["MemorySize"] <= 10240
    assert 1 <= function["Timeout"] <= 900


def test_function_keeps_re_queuing_itself(function: dict[str, Any]) -> None:
    # Status checks go back to the queue the function consumes, for hours: loop detection
    # would otherwise stop the chain after 16 hops.
    assert function["RecursiveLoop"] == "Allow"


def test_function_logs_to_its_own_log_group_with_retention(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    group = function["LoggingConfig"]["LogGroup"]
    assert group == ref("BatchCancellerLogGroup")
    assert "RetentionInDays" in properties(template, "BatchCancellerLogGroup")


# -- the queue and its dead-letter queues ---------------------------------------------------


def test_visibility_timeout_covers_six_function_timeouts_and_the_batching_window(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    # Lambda's guidance for an SQS event source: at least 6 x the function timeout (plus the
    # batching window), so a message is never processed twice at once.
    largest_window = template["Parameters"]["QueueMaximumBatchingWindowInSeconds"]["MaxValue"]
    visibility = properties(template, "CancelQueue")["VisibilityTimeout"]
    assert visibility >= 6 * function["Timeout"]
    assert visibility >= 6 * function["Timeout"] + largest_window


def test_a_redelivery_after_a_crash_finds_the_dead_deliverys_claims_lapsed(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    # docs/exactly-once.md, the timing rule: a delivery's claim lasts until its invocation's
    # deadline plus the receipt grace, and an invocation starts at most one batching window
    # after its messages were received (when their visibility timeout started).
    from batch_canceller.announce_protocol import RECEIPT_GRACE_SECONDS

    largest_window = template["Parameters"]["QueueMaximumBatchingWindowInSeconds"]["MaxValue"]
    grace = int(function["Environment"]["Variables"]["RECEIPT_GRACE_SECONDS"])
    visibility = properties(template, "CancelQueue")["VisibilityTimeout"]
    assert visibility >= function["Timeout"] + largest_window + grace
    # The function's own default is the template's value, and the protocol module's.
    assert grace == Settings.receipt_grace_seconds == RECEIPT_GRACE_SECONDS


def test_a_receipt_that_cannot_be_recorded_is_retried_for_longer_than_any_lease(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    # A receipt dead-lettered while the claim it confirms is still live could let a takeover
    # publish its event again (an adversarial review showed it with a 100 s DynamoDB outage).
    from batch_canceller.app import RECEIPT_COPY_AFTER_RECEIVES, RECEIPT_USEFUL_FOR

    receives = properties(template, "CancelQueue")["RedrivePolicy"]["maxReceiveCount"]
    grace = int(function["Environment"]["Variables"]["RECEIPT_GRACE_SECONDS"])
    # It goes on as a fresh copy before the queue would dead-letter it ...
    assert receives > RECEIPT_COPY_AFTER_RECEIVES
    # ... for longer than the longest lease any Lambda timeout allows.
    assert RECEIPT_USEFUL_FOR.total_seconds() >= 900 + grace >= function["Timeout"] + grace


def test_queue_redrives_to_the_dlq_after_five_receives(template: dict[str, Any]) -> None:
    redrive = properties(template, "CancelQueue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == arn_of("DeadLetterQueue")
    assert redrive["maxReceiveCount"] == 5


@pytest.mark.parametrize(
    "queue", ["DeadLetterQueue", "EventDeadLetterQueue", "ScheduleDeadLetterQueue"]
)
def test_dead_letter_queues_keep_messages_fourteen_days(
    template: dict[str, Any], queue: str
) -> None:
    assert properties(template, queue)["MessageRetentionPeriod"] == DAYS_14


def test_every_queue_is_encrypted(template: dict[str, Any]) -> None:
    queues = resources_of_type(template, "AWS::SQS::Queue")
    assert set(queues) >= {
        "CancelQueue",
        "DeadLetterQueue",
        "EventDeadLetterQueue",
        "ScheduleDeadLetterQueue",
    }
    for logical_id, queue in queues.items():
        props = queue.get("Properties", {})
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, logical_id


def test_queues_refuse_plain_http(template: dict[str, Any]) -> None:
    denied: set[str] = set()
    for policy in resources_of_type(template, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            condition = statement.get("Condition", {}).get("Bool", {})
            if statement["Effect"] == "Deny" and condition.get("aws:SecureTransport") == "false":
                denied.update(r["Fn::GetAtt"][0] for r in as_list(statement["Resource"]))
    assert denied == set(resources_of_type(template, "AWS::SQS::Queue"))


# -- the table ------------------------------------------------------------------------------


def test_table_is_on_demand_encrypted_and_recoverable(template: dict[str, Any]) -> None:
    table = template["Resources"]["BatchesTable"]
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "batch_id", "KeyType": "HASH"}]
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    # The record of every cancellation outlives the stack.
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_table_deletion_protection_is_a_parameter(template: dict[str, Any]) -> None:
    protection = properties(template, "BatchesTable")["DeletionProtectionEnabled"]
    assert protection == ref("TableDeletionProtection")
    parameter = template["Parameters"]["TableDeletionProtection"]
    assert set(parameter["AllowedValues"]) == {"true", "false"}
    assert parameter["Default"] == "true"


def test_table_has_the_status_index(template: dict[str, Any]) -> None:
    props = properties(template, "BatchesTable")
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert types == {"batch_id": "S", "status": "S", "updated_at": "S", "follow_through": "S"}
    (index,) = (i for i in props["GlobalSecondaryIndexes"] if i["IndexName"] == "status-index")
    assert index["KeySchema"] == [
        {"AttributeName": "status", "KeyType": "HASH"},
        {"AttributeName": "updated_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"]["ProjectionType"] in {"ALL", "KEYS_ONLY", "INCLUDE"}


# -- event sources --------------------------------------------------------------------------


def test_sqs_event_source_reports_partial_batch_failures(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    sqs = function["Events"]["CancelQueueMessages"]
    assert sqs["Type"] == "SQS"
    props = sqs["Properties"]
    assert props["Queue"] == arn_of("CancelQueue")
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == ref("QueueBatchSize")
    assert template["Parameters"]["QueueBatchSize"]["Default"] == 10
    assert props["MaximumBatchingWindowInSeconds"] == ref("QueueMaximumBatchingWindowInSeconds")


def test_sqs_event_source_concurrency_is_a_parameter_of_at_least_two(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    scaling = function["Events"]["CancelQueueMessages"]["Properties"]["ScalingConfig"]
    assert scaling["MaximumConcurrency"] == ref("QueueMaximumConcurrency")
    parameter = template["Parameters"]["QueueMaximumConcurrency"]
    assert parameter["Type"] == "Number"
    assert parameter["MinValue"] >= 2  # Lambda's lower bound
    assert parameter["Default"] >= parameter["MinValue"]


def test_event_dlq_accepts_messages_from_the_projects_rules_only(template: dict[str, Any]) -> None:
    policy = properties(template, "EventDeadLetterQueuePolicy")
    assert policy["Queues"] == [ref("EventDeadLetterQueue")]
    (allow,) = (s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow")
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        arn_of("CancelRequestedRule"),
        arn_of("PublicationReceiptsRule"),
    ]


def test_receipts_rule_sends_the_functions_own_outcome_events_back_to_its_queue(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    from batch_canceller.commands import RECEIPTED_DETAIL_TYPES

    rule = properties(template, "PublicationReceiptsRule")
    assert rule["EventBusName"] == ref("EventBus")
    pattern = rule["EventPattern"]
    assert pattern["source"] == [function["Environment"]["Variables"]["EVENT_SOURCE"]]
    assert set(pattern["detail-type"]) == RECEIPTED_DETAIL_TYPES
    (target,) = rule["Targets"]
    assert target["Arn"] == arn_of("CancelQueue")
    assert target["DeadLetterConfig"]["Arn"] == arn_of("EventDeadLetterQueue")
    # The queue lets this rule (and the cancel requests' rule) send to it.
    policy = properties(template, "QueuesPolicy")["PolicyDocument"]["Statement"]
    (allow,) = (s for s in policy if s["Effect"] == "Allow")
    assert (allow["Principal"], allow["Action"], allow["Resource"]) == (
        {"Service": "events.amazonaws.com"},
        "sqs:SendMessage",
        arn_of("CancelQueue"),
    )
    assert arn_of("PublicationReceiptsRule") in allow["Condition"]["ArnEquals"]["aws:SourceArn"]


def test_failed_async_invocations_land_in_the_event_dlq(function: dict[str, Any]) -> None:
    config = function["EventInvokeConfig"]
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": arn_of("EventDeadLetterQueue"),
    }


# -- schedules ------------------------------------------------------------------------------


def test_sweep_schedule_sends_the_policy_to_the_queue(template: dict[str, Any]) -> None:
    props = properties(template, "SweepSchedule")
    assert props["ScheduleExpression"] == ref("SweepScheduleExpression")
    assert props["Target"]["Arn"] == arn_of("CancelQueue")
    assert props["Target"]["RoleArn"] == arn_of("SchedulerRole")
    sent = resolver(template).resolve(props["Target"]["Input"])
    assert json.loads(sent) == {"sweep": {"older_than_minutes": 1200}}
    custom = resolver(template, SweepPolicyJson='{"metadata": {"team": "a"}, "dry_run": true}')
    assert json.loads(custom.resolve(props["Target"]["Input"])) == {
        "sweep": {"metadata": {"team": "a"}, "dry_run": True}
    }


def test_sweep_is_off_unless_enabled(template: dict[str, Any]) -> None:
    state = properties(template, "SweepSchedule")["State"]
    assert resolver(template).resolve(state) == "DISABLED"
    assert resolver(template, SweepEnabled="true").resolve(state) == "ENABLED"
    assert resolver(template, SweepEnabled="false").resolve(state) == "DISABLED"


def test_sweep_parameter_defaults(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["SweepScheduleExpression"]["Default"] == "rate(15 minutes)"
    assert json.loads(parameters["SweepPolicyJson"]["Default"]) == {"older_than_minutes": 1200}
    assert set(parameters["SweepEnabled"]["AllowedValues"]) == {"true", "false"}


FOLLOW_THROUGH_INDEX_ARN = {"Fn::Sub": "${BatchesTable.Arn}/index/follow-through-index"}


def test_the_follow_through_index_is_sparse_and_oldest_update_first(
    template: dict[str, Any],
) -> None:
    from batch_canceller.reconcile import FOLLOW_THROUGH_INDEX

    indexes = properties(template, "BatchesTable")["GlobalSecondaryIndexes"]
    (index,) = (i for i in indexes if i["IndexName"] == FOLLOW_THROUGH_INDEX)
    assert index["KeySchema"] == [
        {"AttributeName": "follow_through", "KeyType": "HASH"},
        {"AttributeName": "updated_at", "KeyType": "RANGE"},
    ]
    # The reconciler reads the items themselves (consistently) before it acts.
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_reconcile_schedule_sends_a_reconcile_to_the_queue_with_its_own_dlq(
    template: dict[str, Any],
) -> None:
    props = properties(template, "ReconcileSchedule")
    assert props["ScheduleExpression"] == ref("ReconcileScheduleExpression")
    assert template["Parameters"]["ReconcileScheduleExpression"]["Default"] == "rate(15 minutes)"
    assert props["State"] == "ENABLED"
    target = props["Target"]
    assert target["Arn"] == arn_of("CancelQueue")
    assert json.loads(target["Input"]) == {"reconcile": {}}
    assert target["DeadLetterConfig"] == {"Arn": arn_of("ReconcileScheduleDeadLetterQueue")}
    assert target["RoleArn"] == arn_of("ReconcileSchedulerRole")
    role = properties(template, "ReconcileSchedulerRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": [arn_of("CancelQueue"), arn_of("ReconcileScheduleDeadLetterQueue")],
        }
    ]


def test_scheduler_role_may_only_send_to_the_queue_and_the_sweeps_dlq(
    template: dict[str, Any],
) -> None:
    props = properties(template, "SchedulerRole")
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == ref("AWS::AccountId")
    statements = [s for p in props["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": arn_of("CancelQueue")},
        {
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": arn_of("ScheduleDeadLetterQueue"),
        },
    ]
    assert "ManagedPolicyArns" not in props


# -- least privilege ------------------------------------------------------------------------


POLICY_RESOURCE_TYPES = {
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
}


def policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy document in the template, by where it sits."""
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield f"{logical_id}/{policy['PolicyName']}", policy["PolicyDocument"]
        elif kind in POLICY_RESOURCE_TYPES:
            yield logical_id, props["PolicyDocument"]
        elif kind == "AWS::Serverless::Function":
            for index, policy in enumerate(as_list(props.get("Policies", []))):
                yield f"{logical_id}/Policies[{index}]", policy


def allow_statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for statement in as_list(document["Statement"]):
        if "Fn::If" in statement:  # a conditional statement: check both branches
            for branch in statement["Fn::If"][1:]:
                if branch != ref("AWS::NoValue") and branch.get("Effect") == "Allow":
                    yield branch
        elif statement.get("Effect") == "Allow":
            yield statement


def test_no_wildcard_actions_or_resources(template: dict[str, Any]) -> None:
    problems: list[str] = []
    for where, document in policy_documents(template):
        for statement in allow_statements(document):
            actions = as_list(statement.get("Action", []))
            if "NotAction" in statement or "NotResource" in statement:
                problems.append(f"{where}: NotAction/NotResource in an Allow")
            problems.extend(
                f"{where}: wildcard action {action}"
                for action in actions
                if isinstance(action, str) and "*" in action
            )
            if "*" in as_list(statement.get("Resource", [])):
                unlisted = [a for a in actions if a not in WILDCARD_RESOURCE_ALLOWLIST]
                if unlisted:
                    problems.append(f"{where}: Resource '*' for {unlisted}")
    assert problems == []


def test_sam_attaches_no_managed_policies(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    # With its own Role, SAM adds nothing (its generated role would carry AWS managed policies
    # with Resource "*"); and no role of the template uses managed policies.
    assert function["Role"] == arn_of("BatchCancellerFunctionRole")
    assert "Policies" not in function
    for logical_id, role in resources_of_type(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], logical_id


def function_grants(template: dict[str, Any]) -> dict[str, list[Any]]:
    """Action -> the resources the function's role grants it on."""
    grants: dict[str, list[Any]] = {}
    for policy in properties(template, "BatchCancellerFunctionRole")["Policies"]:
        for statement in allow_statements(policy["PolicyDocument"]):
            for action in as_list(statement["Action"]):
                grants.setdefault(action, []).extend(as_list(statement["Resource"]))
    return grants


def test_function_role_names_its_resources(template: dict[str, Any]) -> None:
    grants = function_grants(template)
    for action in ("GetItem", "BatchGetItem", "UpdateItem"):
        assert grants[f"dynamodb:{action}"] == [arn_of("BatchesTable")]
    # Never called: tests/template/test_grants_match_calls.py.
    assert "dynamodb:PutItem" not in grants
    # Only the reconciler queries, and only its sparse index.
    assert grants["dynamodb:Query"] == [FOLLOW_THROUGH_INDEX_ARN]
    for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes"):
        assert grants[f"sqs:{action}"] == [arn_of("CancelQueue")]
    assert grants["sqs:SendMessage"] == [
        arn_of("CancelQueue"),
        arn_of("DeadLetterQueue"),
        arn_of("EventDeadLetterQueue"),
    ]
    assert grants["events:PutEvents"] == [arn_of("EventBus")]
    assert grants["secretsmanager:GetSecretValue"] == [ref("OpenAIApiKeySecretArn")]
    assert grants["kms:Decrypt"] == [ref("OpenAIApiKeySecretKmsKeyArn")]
    group = {
        "Fn::Sub": "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}"
        ":schedule/${ScheduleGroup}/*"
    }
    for action in ("CreateSchedule", "UpdateSchedule", "DeleteSchedule"):
        assert grants[f"scheduler:{action}"] == [group]
    # The function lists and reads no schedule (the operator's CLI does); it deletes those of
    # its own group only, once their batch is terminal (not the sweep or reconcile schedules).
    assert {a for a in grants if a.startswith("scheduler:")} == {
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
    }
    assert grants["iam:PassRole"] == [arn_of("SchedulerRole")]
    assert grants["logs:PutLogEvents"] == [arn_of("BatchCancellerLogGroup")]
    # Powertools writes metrics as EMF into the logs.
    assert "cloudwatch:PutMetricData" not in grants


def test_the_scheduler_role_can_be_passed_to_scheduler_only(template: dict[str, Any]) -> None:
    for policy in properties(template, "BatchCancellerFunctionRole")["Policies"]:
        for statement in allow_statements(policy["PolicyDocument"]):
            if statement["Action"] == "iam:PassRole":
                passed_to = statement["Condition"]["StringEquals"]["iam:PassedToService"]
                assert passed_to == "scheduler.amazonaws.com"


def test_kms_decrypt_only_with_a_key_and_only_via_secrets_manager(
    template: dict[str, Any],
) -> None:
    (policy,) = (
        p
        for p in properties(template, "BatchCancellerFunctionRole")["Policies"]
        if p["PolicyName"] == "api-key-secret"
    )
    document = policy["PolicyDocument"]
    without_key = resolver(template).resolve(document)
    assert [s["Action"] for s in without_key["Statement"]] == ["secretsmanager:GetSecretValue"]
    key = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    with_key = resolver(template, OpenAIApiKeySecretKmsKeyArn=key).resolve(document)
    decrypt = with_key["Statement"][1]
    assert decrypt["Resource"] == key
    assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == (
        "secretsmanager.us-east-1.amazonaws.com"
    )


# -- configuration --------------------------------------------------------------------------


class RecordingEnv(dict[str, str]):
    """An environment that remembers which variables were read."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def declared_variables(function: dict[str, Any]) -> dict[str, Any]:
    return dict(function["Environment"]["Variables"])


def test_template_sets_every_variable_the_function_reads(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    # GIVEN the environment CloudFormation would give the function, every optional value set
    env = function_environment(
        template,
        FUNCTION,
        resolver(
            template,
            OpenAIOrganization="org-1",
            OpenAIProject="proj-1",
            AzureOpenAIApiVersion="2024-10-21",
        ),
    )
    recording = RecordingEnv(env)
    # WHEN the function's configuration reads it
    settings = Settings.from_env(recording)
    # THEN it is valid, and every variable it read is one the template declares
    assert settings.cancel_queue_url == QUEUE_URL
    assert settings.cancel_queue_arn == QUEUE_ARN
    assert settings.dead_letter_queue_url == DLQ_URL
    assert settings.api_key_secret_id == SECRET_ARN
    assert settings.openai_organization == "org-1"
    assert settings.openai_project == "proj-1"
    assert settings.azure_api_version == "2024-10-21"
    declared = set(declared_variables(function))
    assert recording.read - declared == set()
    # and the template declares nothing the function does not read (typos, stale names),
    # apart from what Powertools reads itself.
    assert declared - recording.read == {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "LOG_LEVEL",
    }


def test_required_variables_are_set_unconditionally(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    env = function_environment(template, FUNCTION, resolver(template))
    required = set()
    for name in env:
        try:
            Settings.from_env({k: v for k, v in env.items() if k != name})
        except ConfigurationError as exc:
            required.add(name)
            message = str(exc)
        else:
            continue
        assert name in message  # a missing value fails loudly, with its name
    assert required >= {
        "BATCHES_TABLE_NAME",
        "EVENT_BUS_NAME",
        "CANCEL_QUEUE_URL",
        "OPENAI_API_KEY_SECRET_ID",
    }
    variables = declared_variables(function)
    for name in required:
        assert "Fn::If" not in variables[name], name


def test_variables_are_wired_to_the_stacks_resources(function: dict[str, Any]) -> None:
    variables = declared_variables(function)
    assert variables["BATCHES_TABLE_NAME"] == ref("BatchesTable")
    assert variables["EVENT_BUS_NAME"] == ref("EventBus")
    assert variables["CANCEL_QUEUE_URL"] == ref("CancelQueue")
    assert variables["CANCEL_QUEUE_ARN"] == arn_of("CancelQueue")
    assert variables["DEAD_LETTER_QUEUE_URL"] == ref("DeadLetterQueue")
    assert variables["OPENAI_API_KEY_SECRET_ID"] == ref("OpenAIApiKeySecretArn")
    assert variables["SCHEDULE_GROUP_NAME"] == ref("ScheduleGroup")
    assert variables["SCHEDULER_ROLE_ARN"] == arn_of("SchedulerRole")
    assert variables["POWERTOOLS_SERVICE_NAME"] == "batch-canceller"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "BatchCanceller"
    assert variables["LOG_LEVEL"] == ref("LogLevel")


def test_parameter_defaults_are_the_functions_defaults(template: dict[str, Any]) -> None:
    # The template's defaults and the code's must not drift apart.
    env = function_environment(template, FUNCTION, resolver(template))
    from_template = Settings.from_env(env)
    minimal = {
        name: env[name]
        for name in (
            "BATCHES_TABLE_NAME",
            "EVENT_BUS_NAME",
            "CANCEL_QUEUE_URL",
            "OPENAI_API_KEY_SECRET_ID",
        )
    }
    code_defaults = Settings.from_env(minimal)
    for field in (
        "openai_base_url",
        "openai_organization",
        "openai_project",
        "event_source",
        "poll_initial_delay_seconds",
        "poll_max_delay_seconds",
        "poll_timeout_seconds",
        "max_in_flight",
        "adaptive_concurrency",
        "api_style",
        "azure_api_version",
    ):
        assert getattr(from_template, field) == getattr(code_defaults, field), field


@pytest.mark.parametrize(
    ("parameter", "variable"),
    [
        ("MaxInFlight", "MAX_IN_FLIGHT"),
        ("PollInitialDelaySeconds", "POLL_INITIAL_DELAY_SECONDS"),
        ("PollMaxDelaySeconds", "POLL_MAX_DELAY_SECONDS"),
        ("PollTimeoutSeconds", "POLL_TIMEOUT_SECONDS"),
    ],
)
def test_number_parameter_bounds_are_accepted_by_the_function(
    template: dict[str, Any], parameter: str, variable: str
) -> None:
    # Whatever CloudFormation lets through, the function must accept at cold start.
    declared = template["Parameters"][parameter]
    base = function_environment(template, FUNCTION, resolver(template))
    for bound in (declared["MinValue"], declared["MaxValue"]):
        env = {**base, variable: str(bound)}
        if variable == "POLL_MAX_DELAY_SECONDS":
            env["POLL_INITIAL_DELAY_SECONDS"] = "0"
        Settings.from_env(env)


def test_api_style_values_are_the_functions(template: dict[str, Any]) -> None:
    base = function_environment(template, FUNCTION, resolver(template))
    for style in template["Parameters"]["OpenAIApiStyle"]["AllowedValues"]:
        assert Settings.from_env({**base, "OPENAI_API_STYLE": style}).api_style == style


def test_adaptive_concurrency_values_are_the_functions(template: dict[str, Any]) -> None:
    base = function_environment(template, FUNCTION, resolver(template))
    values = template["Parameters"]["AdaptiveConcurrency"]["AllowedValues"]
    read = {
        Settings.from_env({**base, "ADAPTIVE_CONCURRENCY": v}).adaptive_concurrency for v in values
    }
    assert read == {True, False}


def test_secret_parameter_takes_a_secret_arn_only(template: dict[str, Any]) -> None:
    pattern = re.compile(template["Parameters"]["OpenAIApiKeySecretArn"]["AllowedPattern"])
    assert pattern.fullmatch(SECRET_ARN)
    assert not pattern.fullmatch("REPLACE_ME")
    assert not pattern.fullmatch("batch-canceller/openai")
    assert "Default" not in template["Parameters"]["OpenAIApiKeySecretArn"]


# -- alarms and outputs ---------------------------------------------------------------------


EXPECTED_ALARMS = {
    # logical ID: (namespace, metric, dimension name, dimension value)
    "DeadLetterQueueNotEmptyAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]},
    ),
    "EventDeadLetterQueueNotEmptyAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        {"Fn::GetAtt": ["EventDeadLetterQueue", "QueueName"]},
    ),
    "ScheduleDeadLetterQueueNotEmptyAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]},
    ),
    "FunctionErrorsAlarm": ("AWS/Lambda", "Errors", "FunctionName", ref(FUNCTION)),
    "FunctionThrottlesAlarm": ("AWS/Lambda", "Throttles", "FunctionName", ref(FUNCTION)),
    "CancelQueueOldestMessageAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        "QueueName",
        {"Fn::GetAtt": ["CancelQueue", "QueueName"]},
    ),
    "CancellationStalledAlarm": (
        "BatchCanceller",
        "BatchCancelStalled",
        "service",
        "batch-canceller",
    ),
    "ConfigurationErrorsAlarm": (
        "BatchCanceller",
        "ConfigurationErrors",
        "service",
        "batch-canceller",
    ),
    "EventPublishFailuresAlarm": (
        "BatchCanceller",
        "EventPublishFailures",
        "service",
        "batch-canceller",
    ),
    "UnexpectedErrorsAlarm": ("BatchCanceller", "UnexpectedErrors", "service", "batch-canceller"),
}


@pytest.mark.parametrize("alarm", sorted(EXPECTED_ALARMS))
def test_alarm_watches_its_metric(template: dict[str, Any], alarm: str) -> None:
    namespace, metric, dimension, value = EXPECTED_ALARMS[alarm]
    props = properties(template, alarm)
    assert template["Resources"][alarm]["Type"] == "AWS::CloudWatch::Alarm"
    assert (props["Namespace"], props["MetricName"]) == (namespace, metric)
    assert props["Dimensions"] == [{"Name": dimension, "Value": value}]
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["TreatMissingData"] == "notBreaching"


def test_threshold_of_the_oldest_message_alarm_is_a_parameter(template: dict[str, Any]) -> None:
    assert properties(template, "CancelQueueOldestMessageAlarm")["Threshold"] == ref(
        "QueueOldestMessageAlarmSeconds"
    )
    for alarm in set(EXPECTED_ALARMS) - {"CancelQueueOldestMessageAlarm"}:
        assert properties(template, alarm)["Threshold"] == 0, alarm


def test_stalled_alarm_matches_the_functions_emf_metrics(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    from batch_canceller.observability import SERVICE

    variables = declared_variables(function)
    props = properties(template, "CancellationStalledAlarm")
    assert props["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"]
    assert props["Dimensions"][0]["Value"] == variables["POWERTOOLS_SERVICE_NAME"] == SERVICE


def test_alarms_notify_the_topic_only_when_an_email_is_given(template: dict[str, Any]) -> None:
    assert template["Resources"]["AlarmTopic"]["Condition"] == "HasAlarmEmail"
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == ref("AlarmEmail")
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    assert set(alarms) == set(EXPECTED_ALARMS)
    without = resolver(template)
    with_email = resolver(template, AlarmEmail="ops@example.com")
    for logical_id, alarm in alarms.items():
        props = alarm["Properties"]
        for key in ("AlarmActions", "OKActions"):
            assert with_email.resolve({key: props[key]}) == {key: [REFS["AlarmTopic"]]}, logical_id
            assert without.resolve({key: props[key]}) == {}, logical_id


OUTPUTS = {
    "CancelQueueUrl": ref("CancelQueue"),
    "CancelQueueArn": arn_of("CancelQueue"),
    "DeadLetterQueueUrl": ref("DeadLetterQueue"),
    "DeadLetterQueueArn": arn_of("DeadLetterQueue"),
    "ScheduleDeadLetterQueueUrl": ref("ScheduleDeadLetterQueue"),
    "BatchesTableName": ref("BatchesTable"),
    "EventBusName": ref("EventBus"),
    "EventBusArn": arn_of("EventBus"),
    "FunctionName": ref(FUNCTION),
    "ScheduleGroupName": ref("ScheduleGroup"),
    "SchedulerRoleArn": arn_of("SchedulerRole"),
}


@pytest.mark.parametrize("output", sorted(OUTPUTS))
def test_output_is_present(template: dict[str, Any], output: str) -> None:
    assert template["Outputs"][output]["Value"] == OUTPUTS[output]


def test_every_reference_names_something_declared(template: dict[str, Any]) -> None:
    # A quick guard before the slower lint: Refs and GetAtts point at parameters, resources,
    # pseudo parameters or resources SAM generates.
    known = set(template["Parameters"]) | set(template["Resources"])
    known |= {f"{FUNCTION}{event}" for event in properties(template, FUNCTION)["Events"]}
    known |= {f"{FUNCTION}Role", f"{FUNCTION}EventInvokeConfig"}
    known |= {"WebhookFunctionUrl"}  # SAM's, from the webhook function's FunctionUrlConfig

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            if "Ref" in value and len(value) == 1:
                yield value["Ref"]
            elif "Fn::GetAtt" in value and len(value) == 1:
                yield value["Fn::GetAtt"][0]
            else:
                for item in value.values():
                    yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    unknown = {name for name in walk(template) if not name.startswith("AWS::")} - known
    assert unknown == set()


# -- samconfig.toml -------------------------------------------------------------------------


def test_samconfig_deploys_the_default_stack() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    assert config["default"]["global"]["parameters"]["stack_name"] == "batch-canceller"
    assert config["default"]["global"]["parameters"]["region"] == "us-east-1"
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True
    assert isinstance(deploy["parameter_overrides"], list)


def test_template_and_samconfig_are_where_sam_looks() -> None:
    assert Path(ROOT / "template.yaml").is_file()
    assert Path(ROOT / "samconfig.toml").is_file()
