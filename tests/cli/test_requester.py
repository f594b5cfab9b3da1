"""Who ran the CLI is what its commands record as `requested_by`: `--requested-by`, else the
AWS caller identity on a deployed stack, else `$USER@$HOSTNAME` (the local stack)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli.requester import requester
from infra.cli.target import Target
from infra.openai_emulator import OpenAIEmulator
from tests.cli import cli, write_state
from tests.support import Stack


@pytest.fixture
def alice(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("HOSTNAME", "ops-box")
    return "alice@ops-box"


def test_a_cli_sweep_records_who_ran_it_or_who_it_names(
    stack: Stack,
    emulator: OpenAIEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    alice: str,
) -> None:
    """GIVEN two running batches of project evals
    WHEN `sweep` queues their cancels, once as alice on the local stack, once --requested-by
    THEN the queued cancels carry that name, not `batch-canceller sweep`."""
    for batch_id in ("batch_e1", "batch_e2"):
        emulator.seed(batch_id, metadata={"project": "evals"})
    state = write_state(stack, emulator, tmp_path)
    policy = ["--metadata", "project=evals", "--json"]

    assert cli(state, "sweep", *policy) == 0
    assert json.loads(capsys.readouterr().out)["requested_by"] == alice
    assert {body["requested_by"] for body in stack.drain_queue()} == {alice}

    assert cli(state, "sweep", *policy, "--requested-by", "oncall@example.com") == 0
    capsys.readouterr()
    assert {body["requested_by"] for body in stack.drain_queue()} == {"oncall@example.com"}


def test_a_deployed_stack_names_the_aws_caller_identity(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, alice: str
) -> None:
    # A deployed target: no endpoint of its own (the SDK's AWS_ENDPOINT_URL leads to moto).
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    deployed = Target("us-east-1", None, {}, "stack batch-canceller")

    assert requester(deployed, None).startswith("arn:aws:")
    assert requester(deployed, "bob") == "bob"

    # STS not answering: the user and host instead, not a failed command.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert requester(Target("us-east-1", None, {}, "stack batch-canceller"), None) == alice


def test_an_empty_requested_by_is_not_given_for_send_and_sweep_alike(
    stack: Stack,
    emulator: OpenAIEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    alice: str,
) -> None:
    """GIVEN `--requested-by ""` (an empty shell variable, say)
    WHEN `send` and `sweep` run with it
    THEN both record the default, the user and host: neither stores an empty name."""
    emulator.seed("batch_e1", metadata={"project": "evals"})
    state = write_state(stack, emulator, tmp_path)

    assert cli(state, "send", "batch_e1", "--requested-by", "") == 0
    assert {body["requested_by"] for body in stack.drain_queue()} == {alice}
    capsys.readouterr()
    assert cli(state, "sweep", "--metadata", "project=evals", "--requested-by", "", "--json") == 0
    assert json.loads(capsys.readouterr().out)["requested_by"] == alice
    assert {body["requested_by"] for body in stack.drain_queue()} == {alice}
