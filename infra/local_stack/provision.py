"""Creates the local stack's resources on moto by reading template.yaml: one source of truth.

Queues (attributes, redrive), the table (keys, indexes), the bus, its rules (each sends to a
queue, which moto delivers), the schedule group and schedules come from the template. Resources
moto cannot run or that only matter on AWS (IAM roles, alarms, log groups, queue and bus
policies) are named but not created; the provisioning report lists them. Queue ARNs are the ones
moto reports, as CloudFormation's `!GetAtt` passes SQS's; the others are built in the template's
partition (`AWS::Partition`).

The canceller is the one function without a `FunctionUrlConfig`; a function with one (the
webhook receiver) is described in `url_functions` for the stack to serve (`function_url.py`),
and gets a generated `whsec_` webhook secret in Secrets Manager (the template's
`OpenAIWebhookSecretArn` parameter, when it has one, names it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from infra.local_stack.url_functions import (
    FUNCTION_TYPE,
    UrlFunction,
    create_webhook_secret,
    url_function,
    url_function_ids,
    without_url_functions,
)
from infra.sam.template import Resolver, function_environment, load_template

ACCOUNT = "123456789012"
REGION = "us-east-1"
RULE_TYPE = "AWS::Events::Rule"
NOT_EMULATED = frozenset(
    {
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Alarm",
        "AWS::SNS::Topic",
        "AWS::SNS::Subscription",
        "AWS::SQS::QueuePolicy",
        "AWS::Events::EventBusPolicy",  # moto stores bus policies but enforces none
    }
)


@dataclass(frozen=True)
class SqsSource:
    """The function's SQS event source mapping."""

    queue_url: str
    batch_size: int
    batching_window_seconds: float


@dataclass
class ProvisionedStack:
    stack_name: str
    endpoint: str
    region: str
    outputs: dict[str, str]
    function_environment: dict[str, str]
    function_timeout_seconds: float
    sqs_sources: list[SqsSource]
    queue_urls_by_arn: dict[str, str]
    created: list[str] = field(default_factory=list)
    not_emulated: list[str] = field(default_factory=list)
    url_functions: list[UrlFunction] = field(default_factory=list)
    webhook_secret_arn: str | None = None
    # The generated secret itself: for the emulator to sign with; never in `state()`.
    webhook_secret: str | None = field(default=None, repr=False)

    def state(self, openai_base_url: str) -> dict[str, Any]:
        """What `make local` writes for the CLI and for people: endpoints and names."""
        return {
            "aws_endpoint": self.endpoint,
            "region": self.region,
            "openai_base_url": openai_base_url,
            "outputs": self.outputs,
            "function_environment": self.function_environment,
        }


def _served(template: dict[str, Any], function_urls: dict[str, str] | None) -> dict[str, Any]:
    return template if function_urls is not None else without_url_functions(template)


def provision(
    endpoint: str,
    *,
    api_key: str,
    parameter_overrides: dict[str, str] | None = None,
    stack_name: str = "batch-canceller-local",
    template: dict[str, Any] | None = None,
    function_urls: dict[str, str] | None = None,
) -> ProvisionedStack:
    """`function_urls`: the URL each URL function is served at (logical ID -> URL), for
    `!GetAtt <Function>Url.FunctionUrl` (the resource SAM adds for `FunctionUrlConfig`).
    Without them, nothing serves the URL functions: they are left out (webhooks off)."""
    template = _served(template if template is not None else load_template(), function_urls)
    session = boto3.session.Session(
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto accepts any credentials
    )

    def aws(service: Any) -> Any:
        return session.client(service, endpoint_url=endpoint)

    secret_arn = aws("secretsmanager").create_secret(
        Name=f"{stack_name}/openai", SecretString=json.dumps({"api_key": api_key})
    )["ARN"]
    parameters = {
        name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
    }
    parameters["OpenAIApiKeySecretArn"] = secret_arn
    webhook_secret, webhook_secret_arn = create_webhook_secret(
        aws("secretsmanager"), template, parameters, stack_name
    )
    parameters.update(parameter_overrides or {})
    resolver = Resolver(
        template,
        parameters=parameters,
        pseudo={"AWS::StackName": stack_name, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT},
    )
    resources: dict[str, dict[str, Any]] = template["Resources"]
    active = {
        logical_id: resource
        for logical_id, resource in resources.items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }
    _register_names(resolver, active, stack_name, endpoint)
    for logical_id, url in (function_urls or {}).items():
        _register(resolver, f"{logical_id}Url", url, {"FunctionUrl": url})
    stack = ProvisionedStack(
        stack_name=stack_name,
        endpoint=endpoint,
        region=REGION,
        outputs={},
        function_environment={},
        function_timeout_seconds=0,
        sqs_sources=[],
        queue_urls_by_arn={},
        webhook_secret_arn=webhook_secret_arn,
        webhook_secret=webhook_secret,
    )
    _create_queues(aws("sqs"), resolver, active, stack)
    for logical_id, resource in active.items():
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            _create_table(aws("dynamodb"), resolver, logical_id, resource)
        elif kind == "AWS::Events::EventBus":
            aws("events").create_event_bus(Name=resolver.refs[logical_id])
        elif kind == "AWS::Scheduler::ScheduleGroup":
            aws("scheduler").create_schedule_group(Name=resolver.refs[logical_id])
        elif kind in NOT_EMULATED:
            stack.not_emulated.append(f"{logical_id} ({kind})")
            continue
        elif kind in (FUNCTION_TYPE, "AWS::SQS::Queue", "AWS::Scheduler::Schedule", RULE_TYPE):
            continue  # below, once everything they point at exists
        else:
            stack.not_emulated.append(f"{logical_id} ({kind})")
            continue
        stack.created.append(f"{logical_id} ({kind})")
    for logical_id, resource in active.items():
        if resource["Type"] == "AWS::Scheduler::Schedule":
            _create_schedule(aws("scheduler"), resolver, logical_id, resource)
        elif resource["Type"] == RULE_TYPE:
            _create_queue_rule(aws("events"), resolver, logical_id, resource)
        else:
            continue
        stack.created.append(f"{logical_id} ({resource['Type']})")
    _wire_functions(resolver, template, active, stack)
    stack.outputs = _outputs(resolver, template)
    return stack


def _register_names(
    resolver: Resolver, resources: dict[str, dict[str, Any]], stack: str, endpoint: str
) -> None:
    """Physical names first (as CloudFormation would pick them), so references resolve. A
    queue's ARN is registered once moto has created the queue (`_create_queues`)."""

    def arn(service: str, resource: str, region: str = REGION) -> str:
        return f"arn:{resolver.pseudo['AWS::Partition']}:{service}:{region}:{ACCOUNT}:{resource}"

    for logical_id, resource in resources.items():
        kind = resource["Type"]
        name = f"{stack}-{logical_id}"
        if kind == "AWS::SQS::Queue":
            url = f"{endpoint}/{ACCOUNT}/{name}"
            _register(resolver, logical_id, url, {"QueueName": name, "QueueUrl": url})
        elif kind == "AWS::DynamoDB::Table":
            _register(resolver, logical_id, name, {"Arn": arn("dynamodb", f"table/{name}")})
        elif kind == "AWS::Scheduler::ScheduleGroup":
            group_arn = arn("scheduler", f"schedule-group/{name}")
            _register(resolver, logical_id, name, {"Arn": group_arn})
        elif kind == "AWS::IAM::Role":
            _register(resolver, logical_id, name, {"Arn": arn("iam", f"role/{name}", region="")})
        elif kind == FUNCTION_TYPE:
            _register(resolver, logical_id, name, {"Arn": arn("lambda", f"function:{name}")})
        elif kind == RULE_TYPE:
            _register(resolver, logical_id, name, {"Arn": arn("events", f"rule/{name}")})
        else:
            _register(resolver, logical_id, name, {"Arn": f"local:{name}"})
    # Buses name themselves; resolved after the others, as their Name may use !Sub.
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Events::EventBus":
            name = resolver.resolve(resource.get("Properties", {}).get("Name"))
            bus_arn = arn("events", f"event-bus/{name}")
            _register(resolver, logical_id, name, {"Arn": bus_arn, "Name": name})


def _register(resolver: Resolver, logical_id: str, ref: str, attributes: dict[str, str]) -> None:
    resolver.refs[logical_id] = ref
    for attribute, value in attributes.items():
        resolver.attributes[(logical_id, attribute)] = value


def _create_queues(
    sqs: Any, resolver: Resolver, resources: dict[str, dict[str, Any]], stack: ProvisionedStack
) -> None:
    queues = {lid: r for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    for logical_id in queues:
        name = resolver.get_att(logical_id, "QueueName")
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        resolver.refs[logical_id] = resolver.attributes[(logical_id, "QueueUrl")] = url
        resolver.attributes[(logical_id, "Arn")] = arn
        stack.queue_urls_by_arn[arn] = url
    # Attributes after creation: a redrive policy names a queue that must already exist.
    for logical_id, resource in queues.items():
        props = resolver.resolve(resource.get("Properties", {}))
        attributes = {
            key: str(props[key])
            for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds")
            if key in props
        }
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        if attributes:
            sqs.set_queue_attributes(QueueUrl=resolver.refs[logical_id], Attributes=attributes)
        stack.created.append(f"{logical_id} (AWS::SQS::Queue)")


def _create_table(
    dynamodb: Any, resolver: Resolver, logical_id: str, resource: dict[str, Any]
) -> None:
    props = resolver.resolve(resource["Properties"])
    request: dict[str, Any] = {
        "TableName": resolver.refs[logical_id],
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    dynamodb.create_table(**request)


def _create_schedule(
    scheduler: Any, resolver: Resolver, logical_id: str, resource: dict[str, Any]
) -> None:
    props = resolver.resolve(resource["Properties"])
    target = {
        key: props["Target"][key] for key in ("Arn", "RoleArn", "Input") if key in props["Target"]
    }
    request: dict[str, Any] = {
        "Name": props.get("Name") or resolver.refs[logical_id],
        "ScheduleExpression": props["ScheduleExpression"],
        "FlexibleTimeWindow": props["FlexibleTimeWindow"],
        "Target": target,
        "State": props.get("State", "ENABLED"),
    }
    for key in ("GroupName", "ScheduleExpressionTimezone", "Description"):
        if key in props:
            request[key] = props[key]
    scheduler.create_schedule(**request)


def _wire_functions(
    resolver: Resolver,
    template: dict[str, Any],
    active: dict[str, dict[str, Any]],
    stack: ProvisionedStack,
) -> None:
    with_url = set(url_function_ids(template))
    functions = [
        lid for lid, r in active.items() if r["Type"] == FUNCTION_TYPE and lid not in with_url
    ]
    if len(functions) != 1:
        raise ValueError(f"expected one function without a URL in the template, found {functions}")
    _wire_function(resolver, template, functions[0], active[functions[0]], stack)
    for logical_id in (lid for lid in active if lid in with_url):
        stack.url_functions.append(url_function(resolver, template, logical_id))
        stack.created.append(f"{logical_id} ({FUNCTION_TYPE}, function URL, run in-process)")


def _wire_function(
    resolver: Resolver,
    template: dict[str, Any],
    logical_id: str,
    resource: dict[str, Any],
    stack: ProvisionedStack,
) -> None:
    globals_ = template.get("Globals", {}).get("Function", {})
    props = {**globals_, **resource.get("Properties", {})}
    stack.function_environment = function_environment(template, logical_id, resolver)
    stack.function_timeout_seconds = float(resolver.resolve(props.get("Timeout", 3)))
    for event_name, event in props.get("Events", {}).items():
        event_props = resolver.resolve(event.get("Properties", {}))
        if event["Type"] == "SQS":
            stack.sqs_sources.append(
                SqsSource(
                    queue_url=stack.queue_urls_by_arn[event_props["Queue"]],
                    batch_size=int(event_props.get("BatchSize", 10)),
                    batching_window_seconds=float(
                        event_props.get("MaximumBatchingWindowInSeconds", 0)
                    ),
                )
            )
        else:
            # A rule invoking the function directly is not emulated: the template's rules send
            # to the queue.
            stack.not_emulated.append(f"{logical_id}.Events.{event_name} ({event['Type']})")
    stack.created.append(f"{logical_id} ({FUNCTION_TYPE}, run in-process)")


def _create_queue_rule(
    events: Any, resolver: Resolver, logical_id: str, resource: dict[str, Any]
) -> None:
    """A rule whose targets are queues (cancel requests, receipts): moto delivers to SQS."""
    props = resolver.resolve(resource["Properties"])
    bus = props.get("EventBusName", "default")
    name = resolver.refs[logical_id]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(props["EventPattern"]))
    targets = [{"Id": t["Id"], "Arn": t["Arn"]} for t in props.get("Targets", [])]
    if any(":sqs:" not in t["Arn"] for t in targets):
        raise ValueError(f"{logical_id}: only queue targets are emulated, got {targets}")
    events.put_targets(Rule=name, EventBusName=bus, Targets=targets)


def _outputs(resolver: Resolver, template: dict[str, Any]) -> dict[str, str]:
    outputs: dict[str, str] = {}
    for name, output in template.get("Outputs", {}).items():
        if "Condition" in output and not resolver.condition(output["Condition"]):
            continue
        outputs[name] = str(resolver.resolve(output["Value"]))
    return outputs
