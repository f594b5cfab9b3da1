"""Lambda entry point of the webhook receiver (template.yaml's WebhookFunction, behind a
function URL): payload-2.0 events in, HTTP answers out. It verifies, answers, and hands batch
events to the canceller's queue; it reads nothing else and stores nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_canceller.aws_deadline import invocation_deadline
from batch_canceller.config import ConfigurationError
from batch_canceller.deadline import Deadline
from batch_canceller.observability import count_once, logger
from batch_canceller.webhook_intake import Answer, WebhookIntake, record

if TYPE_CHECKING:
    import boto3

# A healthy SQS or Secrets Manager answers in milliseconds; with the function's 10 s timeout
# these keep a stalled attempt, and answering after it, inside the invocation (aws_deadline).
CONNECT_SECONDS = 1
READ_SECONDS = 2
MAX_ATTEMPTS = 3

_intake: WebhookIntake | None = None


def build_intake(env: Mapping[str, str], session: boto3.Session | None = None) -> WebhookIntake:
    from urllib.parse import urlsplit

    import boto3
    from botocore.config import Config

    from batch_canceller.aws_deadline import bound_by_deadline
    from batch_canceller.webhook_secret import VARIABLE, WebhookSecrets

    secret_id = env.get(VARIABLE, "").strip()
    queue_url = env.get("CANCEL_QUEUE_URL", "").strip()
    for name, value in ((VARIABLE, secret_id), ("CANCEL_QUEUE_URL", queue_url)):
        if not value:
            raise ConfigurationError(f"{name} is required but not set")
    if urlsplit(queue_url).scheme not in ("http", "https"):
        raise ConfigurationError("CANCEL_QUEUE_URL must be an http(s) URL")
    session = session or boto3.Session()
    config = Config(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        connect_timeout=CONNECT_SECONDS,
        read_timeout=READ_SECONDS,
    )
    sqs = bound_by_deadline(session.client("sqs", config=config))
    secrets = WebhookSecrets(
        secret_id, lambda: bound_by_deadline(session.client("secretsmanager", config=config))
    )

    def send(body: str) -> object:
        return sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    return WebhookIntake(secrets, send)


def get_intake() -> WebhookIntake:
    """Built on the first invocation of a container, from its environment."""
    global _intake  # noqa: PLW0603 - one receiver per container, by design
    if _intake is None:
        _intake = build_intake(os.environ)
    return _intake


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with invocation_deadline(Deadline.from_context(context)):
        try:
            return get_intake().handle(event).response()
        except ConfigurationError as exc:
            # Answered 503, so that OpenAI delivers again once the configuration is fixed.
            count_once("ConfigurationErrors")
            answer = Answer(503, "failed", "configuration", facts={"error": str(exc)})
        except Exception:
            logger.exception("webhook receiver failed")
            answer = Answer(500, "failed", "unexpected_error")
        record(answer)
        return answer.response()
