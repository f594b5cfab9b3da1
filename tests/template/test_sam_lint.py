"""`sam validate --lint` and cfn-lint pass on template.yaml, and fail on a broken reference
inside a SAM resource (which proves the SAM transform is expanded before linting)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.sam import tools
from infra.sam.template import TEMPLATE, load_template

# The first run installs the SAM CLI into .sam-venv (about a minute); later runs reuse it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(tools.INSTALL_TIMEOUT_SECONDS + 600)]


@pytest.fixture(scope="module")
def sam_bin() -> Path:
    return tools.ensure_sam_venv()


def test_the_pinned_tools_are_installed(sam_bin: Path) -> None:
    # cfn-lint 1.54+ skips SAM resources: the negative tests below depend on 1.53.x.
    versions = tools.installed_versions()
    assert versions["aws-sam-cli"] == tools.AWS_SAM_CLI_VERSION
    assert versions["cfn-lint"] == tools.CFN_LINT_VERSION
    assert re.fullmatch(r"1\.53\.\d+", versions["cfn-lint"])


def test_ensure_sam_venv_is_idempotent_and_fast(sam_bin: Path) -> None:
    import time

    started = time.monotonic()
    assert tools.ensure_sam_venv() == sam_bin
    assert time.monotonic() - started < 1.0


def test_sam_validate_lint_passes(sam_bin: Path) -> None:
    result = tools.validate(check=False)
    assert result.ok, result.output
    assert "is a valid SAM Template" in result.output


def test_cfn_lint_passes_with_informational_rules(sam_bin: Path) -> None:
    result = tools.lint(check=False)
    assert result.ok, result.output


BROKEN = {
    # A broken Ref in the function's environment: only visible once SAM expands the function.
    "environment": (
        "          EVENT_SOURCE: batch-canceller\n",
        "          EVENT_SOURCE: !Ref NoSuchResource\n",
    ),
    # The same inside the webhook receiver, a conditional function (WebhooksOn).
    "webhook environment": (
        "          OPENAI_WEBHOOK_SECRET_ID: !Ref OpenAIWebhookSecretArn\n",
        "          OPENAI_WEBHOOK_SECRET_ID: !Ref NoSuchResource\n",
    ),
    # A broken GetAtt in an event source, which SAM turns into an EventSourceMapping.
    "event source": (
        "            Queue: !GetAtt CancelQueue.Arn\n",
        "            Queue: !GetAtt NoSuchResource.Arn\n",
    ),
}


@pytest.fixture(scope="module")
def broken_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """template.yaml with one reference broken, per case; each still valid YAML."""
    text = TEMPLATE.read_text()
    paths: dict[str, Path] = {}
    for case, (original, broken) in BROKEN.items():
        assert text.count(original) == 1, f"template.yaml no longer has {original.strip()!r}"
        path = tmp_path_factory.mktemp("broken") / "template.yaml"
        path.write_text(text.replace(original, broken))
        load_template(path)
        paths[case] = path
    return paths


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_sam_validate_lint_fails_on_a_broken_reference_inside_the_function(
    sam_bin: Path, broken_templates: dict[str, Path], case: str
) -> None:
    result = tools.validate(broken_templates[case], check=False)
    assert not result.ok, result.output
    assert "NoSuchResource" in result.output


def test_cfn_lint_fails_on_each_broken_reference_inside_the_function(
    sam_bin: Path, broken_templates: dict[str, Path]
) -> None:
    # One cfn-lint run over every broken copy: each must be reported, by its own path.
    result = tools.lint(list(broken_templates.values()), check=False)
    assert not result.ok, result.output
    for path in broken_templates.values():
        findings = [line for line in result.output.splitlines() if str(path) in line]
        assert findings, result.output
    assert result.output.count("NoSuchResource") >= len(broken_templates)


def test_samconfig_overrides_are_template_parameters_as_sam_reads_them(sam_bin: Path) -> None:
    # SAM splits an unquoted value at spaces: read the overrides with SAM's own parser.
    overrides = tools.deploy_parameter_overrides()
    parameters = load_template()["Parameters"]
    assert set(overrides) <= set(parameters)
    assert overrides["SweepScheduleExpression"] == "rate(15 minutes)"
    assert overrides["SweepPolicyJson"] == '{"older_than_minutes": 1200}'
    for name, value in overrides.items():
        declared = parameters[name]
        if "AllowedValues" in declared:
            assert value in [str(v) for v in declared["AllowedValues"]], name
        pattern = declared.get("AllowedPattern")
        matches = pattern is None or re.fullmatch(pattern, value) is not None
        # The secret's placeholder must fail its pattern, so a deploy stops before creating
        # anything; every other value must be deployable as it is.
        assert matches is (name != "OpenAIApiKeySecretArn"), (name, value)
