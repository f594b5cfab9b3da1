"""Function configuration, read from the environment once per container and validated."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

ApiStyle = Literal["openai", "azure"]

# arn:PARTITION:sqs:REGION:ACCOUNT:NAME, in any partition (aws, aws-cn, aws-us-gov, ...).
_QUEUE_ARN = re.compile(r"arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,80}(\.fifo)?")


class ConfigurationError(Exception):
    """A missing or malformed setting; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    batches_table_name: str
    event_bus_name: str
    cancel_queue_url: str
    api_key_secret_id: str
    dead_letter_queue_url: str | None = None
    cancel_queue_arn: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_organization: str | None = None
    openai_project: str | None = None
    event_source: str = "batch-canceller"
    poll_initial_delay_seconds: int = 60
    poll_max_delay_seconds: int = 900
    poll_timeout_seconds: int = 86400
    max_in_flight: int = 32
    # One rate-limit budget per invocation (api_pacing); False: a fixed MAX_IN_FLIGHT.
    adaptive_concurrency: bool = True
    schedule_group_name: str = "default"
    scheduler_role_arn: str | None = None
    api_style: ApiStyle = "openai"
    azure_api_version: str | None = None
    receipt_grace_seconds: int = 60
    webhooks_enabled: bool = False
    webhook_first_check_delay_seconds: int = 600

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        reader = _EnvReader(env)
        settings = cls(
            batches_table_name=reader.required("BATCHES_TABLE_NAME"),
            event_bus_name=reader.required("EVENT_BUS_NAME"),
            cancel_queue_url=reader.url("CANCEL_QUEUE_URL", required=True) or "",
            api_key_secret_id=reader.required("OPENAI_API_KEY_SECRET_ID"),
            dead_letter_queue_url=reader.url("DEAD_LETTER_QUEUE_URL", required=False),
            cancel_queue_arn=_queue_arn(reader.optional("CANCEL_QUEUE_ARN")),
            openai_base_url=_api_base_url(
                reader.optional("OPENAI_BASE_URL") or "https://api.openai.com/v1"
            ),
            openai_organization=reader.optional("OPENAI_ORGANIZATION"),
            openai_project=reader.optional("OPENAI_PROJECT"),
            event_source=reader.optional("EVENT_SOURCE") or "batch-canceller",
            poll_initial_delay_seconds=reader.integer("POLL_INITIAL_DELAY_SECONDS", 60, 0, 900),
            poll_max_delay_seconds=reader.integer("POLL_MAX_DELAY_SECONDS", 900, 0, 900),
            poll_timeout_seconds=reader.integer("POLL_TIMEOUT_SECONDS", 86400, 1, 14 * 86400),
            max_in_flight=reader.integer("MAX_IN_FLIGHT", 32, 1, 256),
            adaptive_concurrency=reader.boolean("ADAPTIVE_CONCURRENCY", default=True),
            schedule_group_name=reader.optional("SCHEDULE_GROUP_NAME") or "default",
            scheduler_role_arn=reader.optional("SCHEDULER_ROLE_ARN"),
            api_style=_api_style(reader.optional("OPENAI_API_STYLE") or "openai"),
            azure_api_version=reader.optional("AZURE_OPENAI_API_VERSION"),
            receipt_grace_seconds=reader.integer("RECEIPT_GRACE_SECONDS", 60, 0, 3600),
            webhooks_enabled=reader.boolean("WEBHOOKS_ENABLED", default=False),
            # One SQS delay (900 s at most), not a chain of them.
            webhook_first_check_delay_seconds=reader.integer(
                "WEBHOOK_FIRST_CHECK_DELAY_SECONDS", 600, 0, 900
            ),
        )
        if settings.scheduler_role_arn is not None and settings.cancel_queue_arn is None:
            # A one-time schedule targets the queue by ARN, which only the template knows.
            raise ConfigurationError("CANCEL_QUEUE_ARN is required when SCHEDULER_ROLE_ARN is set")
        if settings.poll_max_delay_seconds < settings.poll_initial_delay_seconds:
            raise ConfigurationError(
                "POLL_MAX_DELAY_SECONDS must not be below POLL_INITIAL_DELAY_SECONDS"
            )
        # The reconciler takes a chain with no step for twice the maximum delay for lost, so
        # the first check waits at most POLL_MAX_DELAY_SECONDS. Clamped, not refused: the
        # template cannot compare two parameters, and a deployable set must start.
        if settings.webhook_first_check_delay_seconds > settings.poll_max_delay_seconds:
            settings = replace(
                settings, webhook_first_check_delay_seconds=settings.poll_max_delay_seconds
            )
        return settings

    @property
    def first_check_delay_seconds(self) -> int | None:
        """The first status check's wait when webhooks end batches (polling is the safety net);
        None: the doubling from POLL_INITIAL_DELAY_SECONDS, as without webhooks."""
        return self.webhook_first_check_delay_seconds if self.webhooks_enabled else None


class _EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigurationError(f"{name} is required but not set")
        return value

    def url(self, name: str, *, required: bool) -> str | None:
        value = self.required(name) if required else self.optional(name)
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ConfigurationError(f"{name} must be an http(s) URL")
        return value

    def boolean(self, name: str, *, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ConfigurationError(f"{name} must be 'true' or 'false', got {raw!r}")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
        return value


def _api_style(raw: str) -> ApiStyle:
    if raw == "openai":
        return "openai"
    if raw == "azure":
        return "azure"
    raise ConfigurationError(f"OPENAI_API_STYLE must be 'openai' or 'azure', got {raw!r}")


def _queue_arn(raw: str | None) -> str | None:
    if raw is not None and not _QUEUE_ARN.fullmatch(raw):
        raise ConfigurationError(f"CANCEL_QUEUE_ARN must be an SQS queue ARN, got {raw!r}")
    return raw


def _api_base_url(raw: str) -> str:
    """The key travels to this host, so plain HTTP is allowed only to loopback."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("OPENAI_BASE_URL must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigurationError("OPENAI_BASE_URL must not carry a query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigurationError("OPENAI_BASE_URL must use https unless the host is loopback")
    return raw.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
