"""Functions behind a function URL (the webhook receiver): found in the template, described
for the local stack to serve in-process, and given a generated webhook secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.openai_emulator.webhook_events import new_secret
from infra.sam.template import Resolver, function_environment

FUNCTION_TYPE = "AWS::Serverless::Function"
WEBHOOK_SECRET_PARAMETER = "OpenAIWebhookSecretArn"  # noqa: S105 - a parameter's name


@dataclass(frozen=True)
class UrlFunction:
    """A function behind a function URL: what the local stack needs to serve it."""

    logical_id: str
    function_name: str
    handler: str  # dotted, as in the template: package.module.function
    environment: dict[str, str]
    timeout_seconds: float


def url_function_ids(template: dict[str, Any]) -> list[str]:
    """The functions the template puts behind a function URL."""
    return [
        logical_id
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == FUNCTION_TYPE
        and "FunctionUrlConfig" in resource.get("Properties", {})
    ]


def without_url_functions(template: dict[str, Any]) -> dict[str, Any]:
    """The template minus its URL functions: no webhook secret is made, so the parameter
    stays empty and the resources conditional on it (WebhooksOn) are not provisioned."""
    dropped = set(url_function_ids(template))
    resources = {k: v for k, v in template.get("Resources", {}).items() if k not in dropped}
    return {**template, "Resources": resources}


def create_webhook_secret(
    secretsmanager: Any, template: dict[str, Any], parameters: dict[str, str], stack_name: str
) -> tuple[str | None, str | None]:
    """With a URL function: a fresh `whsec_` secret stored in Secrets Manager, its ARN passed
    as the template's webhook secret parameter. (secret, ARN), or (None, None) without one."""
    if not url_function_ids(template):
        return None, None
    secret = new_secret()
    arn = str(
        secretsmanager.create_secret(Name=f"{stack_name}/openai-webhook", SecretString=secret)[
            "ARN"
        ]
    )
    if WEBHOOK_SECRET_PARAMETER in parameters:
        parameters[WEBHOOK_SECRET_PARAMETER] = arn
    return secret, arn


def url_function(resolver: Resolver, template: dict[str, Any], logical_id: str) -> UrlFunction:
    globals_ = template.get("Globals", {}).get("Function", {})
    props = {**globals_, **template["Resources"][logical_id].get("Properties", {})}
    return UrlFunction(
        logical_id=logical_id,
        function_name=resolver.refs[logical_id],
        handler=str(resolver.resolve(props["Handler"])),
        environment=function_environment(template, logical_id, resolver),
        timeout_seconds=float(resolver.resolve(props.get("Timeout", 3))),
    )
