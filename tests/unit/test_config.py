"""Settings.from_env: the contract's configuration table, validated loudly at cold start."""

from __future__ import annotations

import pytest

from batch_canceller.config import ConfigurationError, Settings

REQUIRED = {
    "BATCHES_TABLE_NAME": "batches",
    "EVENT_BUS_NAME": "bus",
    "CANCEL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/cancel",
    "OPENAI_API_KEY_SECRET_ID": "openai-key",
}


def env(**overrides: str) -> dict[str, str]:
    values = dict(REQUIRED)
    values.update(overrides)
    return values


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_missing_required_variable_is_an_error_naming_it(name: str) -> None:
    # GIVEN an environment without one required variable
    values = env()
    del values[name]

    # WHEN the settings are read THEN the error names the variable
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(values)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_blank_required_variable_counts_as_missing(name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env(**{name: "   "}))


def test_defaults_match_the_contract_table() -> None:
    # GIVEN only the required variables
    settings = Settings.from_env(env())

    # THEN every optional setting has the default the contract documents
    assert settings.batches_table_name == "batches"
    assert settings.event_bus_name == "bus"
    assert settings.cancel_queue_url == REQUIRED["CANCEL_QUEUE_URL"]
    assert settings.api_key_secret_id == "openai-key"
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert settings.openai_organization is None
    assert settings.openai_project is None
    assert settings.event_source == "batch-canceller"
    assert settings.poll_initial_delay_seconds == 60
    assert settings.poll_max_delay_seconds == 900
    assert settings.poll_timeout_seconds == 86400
    assert settings.max_in_flight == 32
    assert settings.adaptive_concurrency is True
    assert settings.schedule_group_name == "default"
    assert settings.scheduler_role_arn is None
    assert settings.api_style == "openai"
    assert settings.azure_api_version is None
    assert settings.receipt_grace_seconds == 60


def test_optional_variables_are_read_when_set() -> None:
    settings = Settings.from_env(
        env(
            OPENAI_ORGANIZATION="org-1",
            OPENAI_PROJECT="proj_1",
            EVENT_SOURCE="custom.source",
            POLL_INITIAL_DELAY_SECONDS="5",
            POLL_MAX_DELAY_SECONDS="30",
            POLL_TIMEOUT_SECONDS="600",
            MAX_IN_FLIGHT="4",
            SCHEDULE_GROUP_NAME="cancels",
            SCHEDULER_ROLE_ARN="arn:aws:iam::123456789012:role/scheduler",
            CANCEL_QUEUE_ARN="arn:aws:sqs:us-east-1:123456789012:cancel",
            OPENAI_API_STYLE="azure",
            AZURE_OPENAI_API_VERSION="2024-10-21",
            RECEIPT_GRACE_SECONDS="5",
        )
    )

    assert settings.openai_organization == "org-1"
    assert settings.openai_project == "proj_1"
    assert settings.event_source == "custom.source"
    assert settings.poll_initial_delay_seconds == 5
    assert settings.poll_max_delay_seconds == 30
    assert settings.poll_timeout_seconds == 600
    assert settings.max_in_flight == 4
    assert settings.schedule_group_name == "cancels"
    assert settings.scheduler_role_arn == "arn:aws:iam::123456789012:role/scheduler"
    assert settings.cancel_queue_arn == "arn:aws:sqs:us-east-1:123456789012:cancel"
    assert settings.api_style == "azure"
    assert settings.azure_api_version == "2024-10-21"
    assert settings.receipt_grace_seconds == 5


@pytest.mark.parametrize(
    "name",
    [
        "POLL_INITIAL_DELAY_SECONDS",
        "POLL_MAX_DELAY_SECONDS",
        "POLL_TIMEOUT_SECONDS",
        "MAX_IN_FLIGHT",
        "RECEIPT_GRACE_SECONDS",
        "WEBHOOK_FIRST_CHECK_DELAY_SECONDS",
    ],
)
@pytest.mark.parametrize("raw", ["ten", "1.5", "0x10", "9 9"])
def test_malformed_integer_is_an_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env(**{name: raw}))


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("POLL_INITIAL_DELAY_SECONDS", "-1"),
        ("POLL_INITIAL_DELAY_SECONDS", "901"),
        ("POLL_MAX_DELAY_SECONDS", "901"),
        ("POLL_TIMEOUT_SECONDS", "0"),
        ("MAX_IN_FLIGHT", "0"),
        ("MAX_IN_FLIGHT", "100000"),
        ("RECEIPT_GRACE_SECONDS", "-1"),
        ("RECEIPT_GRACE_SECONDS", "3601"),
        ("WEBHOOK_FIRST_CHECK_DELAY_SECONDS", "-1"),
        ("WEBHOOK_FIRST_CHECK_DELAY_SECONDS", "901"),  # one SQS delay at most
    ],
)
def test_out_of_range_integer_is_an_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env(**{name: raw}))


def test_poll_max_below_poll_initial_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="POLL_MAX_DELAY_SECONDS"):
        Settings.from_env(env(POLL_INITIAL_DELAY_SECONDS="120", POLL_MAX_DELAY_SECONDS="60"))


def test_poll_max_equal_to_poll_initial_is_accepted() -> None:
    settings = Settings.from_env(env(POLL_INITIAL_DELAY_SECONDS="60", POLL_MAX_DELAY_SECONDS="60"))
    assert settings.poll_max_delay_seconds == settings.poll_initial_delay_seconds == 60


@pytest.mark.parametrize(
    "url",
    [
        "http://api.openai.com/v1",
        "http://10.0.0.5:8080/v1",
        "http://localhost.example.com/v1",
        "http://localhost@api.example.com/v1",
        "http://127.0.0.1.nip.io/v1",
    ],
)
def test_plain_http_base_url_to_a_non_loopback_host_is_rejected(url: str) -> None:
    # GIVEN a base URL that would send the API key in clear text off the machine
    # WHEN the settings are read THEN they are rejected, naming the variable
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL"):
        Settings.from_env(env(OPENAI_BASE_URL=url))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1",
        "http://[::1]:8080/v1",
        "http://localhost:8080/v1",
        "https://example.openai.azure.com/openai/v1",
    ],
)
def test_https_or_loopback_http_base_url_is_accepted(url: str) -> None:
    assert Settings.from_env(env(OPENAI_BASE_URL=url)).openai_base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://api.openai.com/v1",
        "api.openai.com/v1",
        "https://",
        "https://api.openai.com/v1?x=1",
        "https://api.openai.com/v1#frag",
    ],
)
def test_malformed_base_url_is_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL"):
        Settings.from_env(env(OPENAI_BASE_URL=url))


def test_trailing_slash_of_base_url_is_stripped() -> None:
    settings = Settings.from_env(env(OPENAI_BASE_URL="https://api.example.com/v1/"))
    assert settings.openai_base_url == "https://api.example.com/v1"


@pytest.mark.parametrize("style", ["Azure", "OPENAI", "anthropic", "open ai"])
def test_unknown_api_style_is_rejected(style: str) -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_STYLE"):
        Settings.from_env(env(OPENAI_API_STYLE=style))


@pytest.mark.parametrize("style", ["openai", "azure"])
def test_known_api_styles_are_accepted(style: str) -> None:
    assert Settings.from_env(env(OPENAI_API_STYLE=style)).api_style == style


def test_cancel_queue_url_must_be_an_http_url() -> None:
    with pytest.raises(ConfigurationError, match="CANCEL_QUEUE_URL"):
        Settings.from_env(env(CANCEL_QUEUE_URL="cancel-queue"))


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sqs:us-east-1:123456789012:cancel",
        "arn:aws-cn:sqs:cn-north-1:123456789012:batch-canceller-CancelQueue-AbC123",
        "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:cancel_queue.fifo",
    ],
)
def test_cancel_queue_arn_is_taken_as_given_in_any_partition(arn: str) -> None:
    # The template passes the queue's ARN: nothing is rebuilt from the URL.
    assert Settings.from_env(env(CANCEL_QUEUE_ARN=arn)).cancel_queue_arn == arn


@pytest.mark.parametrize(
    "raw",
    ["cancel", "https://sqs.us-east-1.amazonaws.com/123456789012/cancel", "arn:aws:sns:x:1:y"],
)
def test_cancel_queue_arn_must_be_a_queue_arn(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="CANCEL_QUEUE_ARN"):
        Settings.from_env(env(CANCEL_QUEUE_ARN=raw))


def test_cancel_queue_arn_is_required_with_a_scheduler_role() -> None:
    # Schedules target the queue by ARN: without it cancel_at could not work, so say so now.
    role = "arn:aws:iam::123456789012:role/scheduler"
    with pytest.raises(ConfigurationError, match="CANCEL_QUEUE_ARN"):
        Settings.from_env(env(SCHEDULER_ROLE_ARN=role))
    assert Settings.from_env(env()).cancel_queue_arn is None


# -- webhooks: polling as the safety net ----------------------------------------------------


def test_webhooks_are_off_by_default_and_change_no_delay() -> None:
    settings = Settings.from_env(env())
    assert (settings.webhooks_enabled, settings.webhook_first_check_delay_seconds) == (False, 600)
    assert settings.first_check_delay_seconds is None
    off = Settings.from_env(env(WEBHOOKS_ENABLED="false", WEBHOOK_FIRST_CHECK_DELAY_SECONDS="5"))
    assert off.first_check_delay_seconds is None


@pytest.mark.parametrize(("raw", "enabled"), [("true", True), ("TRUE", True), ("False", False)])
def test_webhooks_enabled_reads_true_or_false(raw: str, enabled: bool) -> None:
    assert Settings.from_env(env(WEBHOOKS_ENABLED=raw)).webhooks_enabled is enabled


@pytest.mark.parametrize("raw", ["yes", "1", "on", "tru"])
def test_webhooks_enabled_that_is_not_true_or_false_is_an_error_naming_it(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="WEBHOOKS_ENABLED"):
        Settings.from_env(env(WEBHOOKS_ENABLED=raw))


def test_with_webhooks_the_first_check_waits_the_webhook_delay() -> None:
    settings = Settings.from_env(env(WEBHOOKS_ENABLED="true"))
    assert settings.first_check_delay_seconds == 600


def test_a_webhook_first_delay_above_the_poll_maximum_is_clamped_to_it() -> None:
    # The reconciler takes a chain without a step for twice POLL_MAX_DELAY_SECONDS for lost;
    # the template cannot compare two parameters, so a deployable set is clamped, not refused.
    too_long = env(WEBHOOKS_ENABLED="true", POLL_MAX_DELAY_SECONDS="300")
    assert Settings.from_env(too_long).first_check_delay_seconds == 300
    assert Settings.from_env({**too_long, "WEBHOOKS_ENABLED": "false"}).webhooks_enabled is False


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("FALSE", False), ("true", True)])
def test_adaptive_concurrency_is_true_or_false(raw: str, expected: bool) -> None:
    assert Settings.from_env(env(ADAPTIVE_CONCURRENCY=raw)).adaptive_concurrency is expected


@pytest.mark.parametrize("raw", ["yes", "0", "off"])
def test_adaptive_concurrency_other_than_true_or_false_is_rejected(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="ADAPTIVE_CONCURRENCY"):
        Settings.from_env(env(ADAPTIVE_CONCURRENCY=raw))
