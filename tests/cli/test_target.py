"""Finding the stack: --local state files, --stack-name (CloudFormation outputs), the env
fallback, clear usage errors; invoking a deployed function."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from infra.cli import OperationFailed
from infra.cli.main import main
from infra.cli.sweep import SweepOptions
from infra.cli.sweep import run as run_sweep
from infra.cli.target import STACK_ENV, Target
from tests.cli import bare_state
from tests.support import client


def test_without_a_stack_the_cli_says_how_to_name_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(STACK_ENV, raising=False)

    assert main(["status", "batch_a"]) == 2
    err = capsys.readouterr().err
    assert "--stack-name" in err
    assert STACK_ENV in err
    assert "--local" in err


def test_local_reads_the_default_state_file_before_or_after_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOCAL_STACK_DIR", raising=False)
    (tmp_path / ".local-stack").mkdir()
    bare_state(tmp_path, "http://127.0.0.1:9").rename(tmp_path / ".local-stack" / "state.json")

    assert main(["--local", "status", "batch_a"]) == 2
    assert main(["status", "batch_a", "--local"]) == 2
    err = capsys.readouterr().err
    # Found and read: what is missing is the output the command needs.
    assert err.count("local stack (.local-stack/state.json) has no output 'BatchesTableName'") == 2


def test_local_finds_the_state_file_in_local_stack_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make local` exports LOCAL_STACK_DIR (absolute), so another directory finds its state."""
    elsewhere = tmp_path / "state-dir"
    elsewhere.mkdir()
    bare_state(elsewhere, "http://127.0.0.1:9").rename(elsewhere / "state.json")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOCAL_STACK_DIR", str(elsewhere))

    assert main(["--local", "status", "batch_a"]) == 2

    err = capsys.readouterr().err
    assert f"({elsewhere / 'state.json'}) has no output 'BatchesTableName'" in err


def test_missing_or_broken_state_files_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")

    assert main(["--local", str(tmp_path / "nope.json"), "status", "batch_a"]) == 2
    assert main(["--local", str(tmp_path / "broken.json"), "status", "batch_a"]) == 2
    assert main(["--local", "--stack-name", "s", "status", "batch_a"]) == 2
    err = capsys.readouterr().err
    assert "no local stack state at" in err
    assert "cannot read the local stack state" in err
    assert "give one" in err


def test_stack_name_reads_cloudformation_outputs_and_the_env_names_the_default(
    moto_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = f"cli-{tmp_path.name[-30:]}"
    client("dynamodb", moto_url).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "batch_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "batch_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)  # "real AWS", as boto3 resolves it
    # CloudFormation answers from a stub (moto's takes seconds to load); the rest is moto.
    answers = cloudformation_answers(monkeypatch)
    outputs = [{"OutputKey": "BatchesTableName", "OutputValue": table}]
    stack = {"StackName": "prod", "CreationTime": "2026-01-01T00:00:00Z",
             "StackStatus": "CREATE_COMPLETE", "Outputs": outputs}  # fmt: skip

    answers.append({"Stacks": [stack]})
    assert (
        main(["--stack-name", "prod", "--region", "us-east-1", "status", "batch_a", "--json"]) == 1
    )  # read from the stack's table; 1: batch_a has no record
    assert json.loads(capsys.readouterr().out) == [{"batch_id": "batch_a", "found": False}]

    monkeypatch.setenv(STACK_ENV, "prod")
    answers.append({"Stacks": [stack]})
    assert main(["status", "batch_a"]) == 1
    assert "not found" in capsys.readouterr().out

    answers.append({"Stacks": [stack]})
    assert main(["schedules"]) == 2
    assert "stack 'prod' (us-east-1) has no output 'ScheduleGroupName'" in capsys.readouterr().err

    answers.append("Stack with id nope does not exist")
    assert main(["--stack-name", "nope", "status", "batch_a"]) == 2
    assert "cannot read stack 'nope' in us-east-1: Stack with id nope does not exist" in (
        capsys.readouterr().err
    )
    assert answers == []


def cloudformation_answers(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any] | str]:
    """Queued DescribeStacks answers (a string is a ValidationError) for the next sessions."""
    answers: list[dict[str, Any] | str] = []

    class Session(boto3.session.Session):
        def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
            made = super().client(service_name, *args, **kwargs)  # type: ignore[call-overload]
            if service_name == "cloudformation":
                stubber = Stubber(made)
                answer = answers.pop(0)
                if isinstance(answer, str):
                    stubber.add_client_error("describe_stacks", "ValidationError", answer, 400)
                else:
                    stubber.add_response("describe_stacks", answer)
                stubber.activate()
            return made

    monkeypatch.setattr(boto3.session, "Session", Session)
    return answers


def stubbed_lambda(monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any]) -> Stubber:
    lambda_client = boto3.session.Session(region_name="us-east-1").client(
        "lambda", endpoint_url="https://lambda.invalid"
    )
    stubber = Stubber(lambda_client)
    stubber.activate()
    monkeypatch.setattr(Target, "client", lambda self, service, config=None: lambda_client)
    stubber.add_response("invoke", answer)
    return stubber


def payload(value: Any) -> StreamingBody:
    raw = json.dumps(value).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def deployed() -> Target:
    return Target("us-east-1", None, {"FunctionName": "canceller-fn"}, "stack 'prod' (us-east-1)")


def test_a_deployed_function_is_invoked_synchronously(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {"status": "done", "dry_run": True, "listed": 2, "matched": 1, "queued": 0,
              "skipped_by_max_cancels": 0, "complete": True, "would_cancel": ["batch_a"]}  # fmt: skip
    stubber = stubbed_lambda(monkeypatch, {"StatusCode": 200, "Payload": payload(answer)})

    assert run_sweep(deployed(), SweepOptions(requested_by="ops", dry_run=True, json=True)) == 0

    assert json.loads(capsys.readouterr().out) == answer
    stubber.assert_no_pending_responses()


def test_a_failing_deployed_function_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    error = {"errorMessage": "request could not be handled: sweep failed", "errorType": "Error"}
    stubbed_lambda(
        monkeypatch,
        {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": payload(error)},
    )

    with pytest.raises(OperationFailed, match="canceller-fn failed: request could not be handled"):
        run_sweep(deployed(), SweepOptions(requested_by="ops", dry_run=True))


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed on leaving: nothing listens there


@pytest.mark.parametrize(
    "command",
    [
        ["status", "batch_a"],
        ["send", "batch_a"],
        ["schedules"],
        ["sweep", "--older-than", "20h", "--dry-run"],
    ],
)
def test_a_state_file_whose_stack_is_gone_says_so_and_how_to_start_it(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "aws_endpoint": endpoint,
                "region": "us-east-1",
                "outputs": {
                    "CancelQueueUrl": f"{endpoint}/123456789012/q",
                    "BatchesTableName": "t",
                    "ScheduleGroupName": "g",
                    "FunctionName": "f",
                },
                # A function to run in-process (sweep): it must not get as far as blaming its
                # configuration for a refused connection.
                "function_environment": {
                    "BATCHES_TABLE_NAME": "t",
                    "EVENT_BUS_NAME": "b",
                    "CANCEL_QUEUE_URL": f"{endpoint}/123456789012/q",
                    "OPENAI_API_KEY_SECRET_ID": "s",
                    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                },
            }
        ),
        encoding="utf-8",
    )

    code = main(["--local", str(state), *command])

    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert f"the local stack in {state} is not running" in captured.err
    assert "make local" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert "ConfigurationError" not in captured.err
    assert captured.err.count("\n") == 1  # one line, not a log dump


@pytest.mark.parametrize(("command", "usage"), [("send", "send"), ("sweep", "sweep")])
def test_an_unknown_flag_prints_the_usage_of_its_command(
    command: str, usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--frobnicate"]) == 2
    err = capsys.readouterr().err
    assert f"usage: batch-canceller {usage} " in err
    assert "unrecognized arguments: --frobnicate" in err
