"""The deployment defends itself (issue 11): only the function publishes as EVENT_SOURCE, cancel
requests from the bus take the queue's bounded path, the function's own failure metrics and the
sweep schedule's failed deliveries are alarmed, and ARNs come from the template."""

from __future__ import annotations

from typing import Any

import pytest

from batch_canceller.commands import CANCEL_REQUESTED, RECEIPTED_DETAIL_TYPES
from infra.sam.template import ROOT, load_template, properties, resources_of_type
from tests.template.metric_names import emitted_metric_names

FUNCTION = "BatchCancellerFunction"


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def arn_of(logical_id: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def variables(template: dict[str, Any]) -> dict[str, Any]:
    return dict(properties(template, FUNCTION)["Environment"]["Variables"])


# -- only the function publishes as EVENT_SOURCE ------------------------------------------------


def test_only_the_functions_role_may_put_events_with_its_source(
    template: dict[str, Any], variables: dict[str, Any]
) -> None:
    # A forged receipt (an event with the function's source) could mark an unpublished event
    # announced: the bus refuses that source to every principal but the function's role.
    (policy,) = resources_of_type(template, "AWS::Events::EventBusPolicy").values()
    props = policy["Properties"]
    assert props["EventBusName"] == ref("EventBus")
    statement = props["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == arn_of("EventBus")
    condition = statement["Condition"]
    # PutEvents with several entries has several sources: deny if any of them is ours.
    assert condition["ForAnyValue:StringEquals"] == {"events:source": variables["EVENT_SOURCE"]}
    assert condition["ArnNotEquals"] == {"aws:PrincipalArn": arn_of("BatchCancellerFunctionRole")}


def test_the_bus_the_function_publishes_on_is_the_one_the_policy_guards(
    template: dict[str, Any], variables: dict[str, Any]
) -> None:
    # The stack owns the bus (no parameter names an existing one), so its policy is the stack's.
    assert variables["EVENT_BUS_NAME"] == ref("EventBus")
    assert template["Resources"]["EventBus"]["Type"] == "AWS::Events::EventBus"
    receipts = properties(template, "PublicationReceiptsRule")
    assert receipts["EventBusName"] == ref("EventBus")
    assert receipts["EventPattern"]["source"] == [variables["EVENT_SOURCE"]]


# -- Batch Cancel Requested goes through the queue ------------------------------------------------


def test_cancel_requests_on_the_bus_are_sent_to_the_queue(template: dict[str, Any]) -> None:
    rule = properties(template, "CancelRequestedRule")
    assert template["Resources"]["CancelRequestedRule"]["Type"] == "AWS::Events::Rule"
    assert rule["EventBusName"] == ref("EventBus")
    assert rule["EventPattern"] == {"detail-type": [CANCEL_REQUESTED]}
    (target,) = rule["Targets"]
    assert target["Arn"] == arn_of("CancelQueue")
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] >= 60
    assert target["DeadLetterConfig"] == {"Arn": arn_of("EventDeadLetterQueue")}


def test_no_rule_invokes_the_function_directly(template: dict[str, Any]) -> None:
    # One bounded path: the SQS event source's MaximumConcurrency, not an invocation per event.
    events = properties(template, FUNCTION)["Events"]
    assert {name: event["Type"] for name, event in events.items()} == {"CancelQueueMessages": "SQS"}
    for logical_id, rule in resources_of_type(template, "AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            assert target["Arn"] == arn_of("CancelQueue"), logical_id
    assert resources_of_type(template, "AWS::Lambda::Permission") == {}


def test_the_queue_accepts_events_from_the_projects_rules_only(template: dict[str, Any]) -> None:
    statements = properties(template, "QueuesPolicy")["PolicyDocument"]["Statement"]
    (allow,) = (s for s in statements if s["Effect"] == "Allow")
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == arn_of("CancelQueue")
    assert as_list(allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == [
        arn_of("PublicationReceiptsRule"),
        arn_of("CancelRequestedRule"),
    ]


def test_receipts_and_cancel_requests_do_not_overlap(template: dict[str, Any]) -> None:
    # A message on the queue is one or the other: the two rules match disjoint detail-types.
    receipts = properties(template, "PublicationReceiptsRule")["EventPattern"]["detail-type"]
    assert CANCEL_REQUESTED not in receipts
    assert set(receipts) == RECEIPTED_DETAIL_TYPES


# -- alarms on the function's own failure metrics -------------------------------------------------


def test_the_metric_scan_sees_the_functions_counts() -> None:
    names = emitted_metric_names()
    assert {"ConfigurationErrors", "EventPublishFailures", "UnexpectedErrors"} <= names
    assert "BatchCancelStalled" in names


FAILURE_ALARMS = {
    "ConfigurationErrorsAlarm": "ConfigurationErrors",
    "EventPublishFailuresAlarm": "EventPublishFailures",
    "UnexpectedErrorsAlarm": "UnexpectedErrors",
}


@pytest.mark.parametrize("alarm", sorted(FAILURE_ALARMS))
def test_the_functions_failure_metrics_are_alarmed(
    template: dict[str, Any], variables: dict[str, Any], alarm: str
) -> None:
    props = properties(template, alarm)
    assert template["Resources"][alarm]["Type"] == "AWS::CloudWatch::Alarm"
    assert props["MetricName"] == FAILURE_ALARMS[alarm]
    assert props["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"]
    assert props["Dimensions"] == [
        {"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}
    ]
    assert props["Statistic"] == "Sum"
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert props["TreatMissingData"] == "notBreaching"


def test_every_alarm_on_the_functions_namespace_watches_a_metric_it_emits(
    template: dict[str, Any], variables: dict[str, Any]
) -> None:
    # A renamed count would leave its alarm watching a metric nobody publishes, silently.
    emitted = emitted_metric_names()
    namespace = variables["POWERTOOLS_METRICS_NAMESPACE"]
    watched = {
        logical_id: alarm["Properties"]["MetricName"]
        for logical_id, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("Namespace") == namespace
    }
    assert set(FAILURE_ALARMS) <= set(watched)
    assert {k: v for k, v in watched.items() if v not in emitted} == {}


# -- the sweep schedule's failed deliveries -----------------------------------------------------


def test_the_sweep_schedule_dead_letters_to_a_queue_it_may_send_to(
    template: dict[str, Any],
) -> None:
    target = properties(template, "SweepSchedule")["Target"]
    assert target["DeadLetterConfig"] == {"Arn": arn_of("ScheduleDeadLetterQueue")}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    dlq = template["Resources"]["ScheduleDeadLetterQueue"]
    assert dlq["Type"] == "AWS::SQS::Queue"
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    # Scheduler writes to the DLQ with the schedule's execution role.
    statements = [
        s
        for p in properties(template, "SchedulerRole")["Policies"]
        for s in p["PolicyDocument"]["Statement"]
    ]
    sends_to = {
        r["Fn::GetAtt"][0]
        for s in statements
        if s["Action"] == "sqs:SendMessage"
        for r in as_list(s["Resource"])
    }
    assert sends_to == {"CancelQueue", "ScheduleDeadLetterQueue"}


def test_the_schedule_dlq_is_alarmed(template: dict[str, Any]) -> None:
    props = properties(template, "ScheduleDeadLetterQueueNotEmptyAlarm")
    assert (props["Namespace"], props["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert props["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "QueueName"]}}
    ]


# -- ARNs from the template -----------------------------------------------------------------------


def test_the_queue_arn_comes_from_the_template(variables: dict[str, Any]) -> None:
    assert variables["CANCEL_QUEUE_ARN"] == arn_of("CancelQueue")


@pytest.mark.parametrize("folder", ["functions", "infra"])
def test_no_code_builds_an_arn_in_the_aws_partition(folder: str) -> None:
    # `arn:aws:` is wrong in aws-cn and aws-us-gov: ARNs come from the template, the service,
    # or the partition. Allowed: placeholders that name no real resource.
    allowed = {
        ROOT / "infra" / "sam" / "template.py",  # the resolver's placeholder AWS::StackId
        ROOT / "infra" / "local_stack" / "lambda_context.py",  # a local context's own ARN
    }
    offending = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path not in allowed
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "arn:aws:" in line
    ]
    assert offending == []
