"""Lambda entry point: SQS batches, EventBridge events and direct invokes."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch_canceller.app import Application
from batch_canceller.observability import logger, metrics

_application: Application | None = None


def get_application() -> Application:
    """Built on the first invocation of a container: configuration is validated at cold start."""
    global _application  # noqa: PLW0603 - one application per container, by design
    if _application is None:
        from batch_canceller.config import Settings
        from batch_canceller.service import build_application

        _application = build_application(Settings.from_env(os.environ))
    return _application


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    application = get_application()
    try:
        return application.handle(event, context)
    finally:
        application.tally.flush(metrics)
