"""`sam build` produces an artifact that carries its own dependencies and whose handler answers
an SQS event, imported by a bare Python 3.13 that sees nothing but the artifact."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from infra.sam import tools
from infra.sam.template import ROOT, Resolver, function_environment, load_template, loads

FUNCTION = "BatchCancellerFunction"

# The first run installs the SAM CLI into .sam-venv (about a minute); the build takes ~20 s.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(tools.INSTALL_TIMEOUT_SECONDS + tools.BUILD_TIMEOUT_SECONDS),
]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("sam-build")
    result = tools.build(work / "build", cwd=work, check=False)
    assert result.ok, result.output
    return work / "build"


@pytest.fixture(scope="module")
def artifact(build_dir: Path) -> Path:
    path = build_dir / FUNCTION
    assert path.is_dir(), sorted(p.name for p in build_dir.iterdir())
    return path


@pytest.fixture(scope="module")
def python313() -> str:
    interpreter = tools.runtime_python()
    assert interpreter is not None, "no Python 3.13 on this machine (the function's runtime)"
    return interpreter


def run_in_artifact(python: str, artifact: Path, script: str, env: dict[str, str]) -> str:
    """Runs `script` with `-I -S`: no site-packages, no user site, no PYTHON* variables; the
    artifact is the only place imports can come from besides the standard library."""
    prelude = f"import sys; sys.path[:0] = [{str(artifact)!r}]\n"
    completed = subprocess.run(
        [python, "-I", "-S", "-c", prelude + textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=artifact.parent,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def result_line(stdout: str) -> Any:
    (line,) = (line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_built_template_points_at_the_artifact(build_dir: Path) -> None:
    built = loads((build_dir / "template.yaml").read_text())
    props = built["Resources"][FUNCTION]["Properties"]
    assert props["CodeUri"] == FUNCTION
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]


def test_artifact_carries_its_own_dependencies(python313: str, artifact: Path) -> None:
    stdout = run_in_artifact(
        python313,
        artifact,
        """
        import json, sys
        import batch_canceller.handler, aws_lambda_powertools, urllib3, boto3, botocore
        modules = [batch_canceller.handler, aws_lambda_powertools, urllib3, boto3, botocore]
        print("RESULT " + json.dumps({
            "version": list(sys.version_info[:2]),
            "files": {m.__name__: m.__file__ for m in modules},
        }))
        """,
        env={"PATH": os.environ.get("PATH", "")},
    )
    found = result_line(stdout)
    assert found["version"] == [3, 13]
    for name, file in found["files"].items():
        assert Path(file).resolve().is_relative_to(artifact.resolve()), (name, file)


def test_artifact_holds_no_dev_tools(artifact: Path) -> None:
    names = {path.name for path in artifact.iterdir()}
    assert not names & {"pytest", "moto", "hypothesis", "mypy", "ruff", "tests", "infra"}


def invalid_sqs_event() -> tuple[dict[str, Any], str]:
    """events/sqs-command.json reduced to its permanently invalid record (`../files`)."""
    event = json.loads((ROOT / "events" / "sqs-command.json").read_text())
    records = [r for r in event["Records"] if r["body"] == "../files"]
    assert len(records) == 1
    return {"Records": records}, records[0]["messageId"]


def test_handler_fails_back_an_invalid_sqs_message_without_any_network(
    python313: str, artifact: Path
) -> None:
    # GIVEN the environment the template gives the function, with no DLQ URL (so the invalid
    # message goes back to SQS, whose redrive moves it to the DLQ), and every socket blocked
    template = load_template()
    account = "123456789012"
    env = function_environment(
        template,
        FUNCTION,
        Resolver(
            template,
            parameters={
                "OpenAIApiKeySecretArn": (
                    f"arn:aws:secretsmanager:us-east-1:{account}:secret:batch-canceller/openai-AbCdEf"
                )
            },
            refs={
                "BatchesTable": "batches",
                "EventBus": "bus",
                "CancelQueue": f"https://sqs.us-east-1.amazonaws.com/{account}/cancel",
                "DeadLetterQueue": f"https://sqs.us-east-1.amazonaws.com/{account}/dlq",
                "ScheduleGroup": "group",
            },
            attributes={
                ("SchedulerRole", "Arn"): f"arn:aws:iam::{account}:role/scheduler",
                ("CancelQueue", "Arn"): f"arn:aws:sqs:us-east-1:{account}:cancel",
            },
        ),
    )
    env.pop("DEAD_LETTER_QUEUE_URL")
    env.update(
        {
            "PATH": os.environ.get("PATH", ""),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    event, message_id = invalid_sqs_event()
    # WHEN the built handler is invoked with it
    stdout = run_in_artifact(
        python313,
        artifact,
        f"""
        import json, socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(repr(args[1:] or args))
            raise OSError("network is not allowed in this test")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.getaddrinfo = refuse

        class Context:
            function_name = "batch-canceller"
            function_version = "$LATEST"
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:batch-canceller"
            memory_limit_in_mb = 512
            aws_request_id = "00000000-0000-4000-8000-000000000000"
            log_group_name = "/aws/lambda/batch-canceller"
            log_stream_name = "test"
            def get_remaining_time_in_millis(self):
                return 120_000

        from batch_canceller.handler import lambda_handler
        answer = lambda_handler(json.loads({json.dumps(event)!r}), Context())
        print("RESULT " + json.dumps({{"answer": answer, "attempts": attempts}}))
        """,
        env=env,
    )
    # THEN it reports the message as failed, for SQS to redeliver, and touched no network
    found = result_line(stdout)
    assert found["answer"] == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert found["attempts"] == []
    # and its logs name the reason and carry the EMF metric
    assert "invalid message sent to the DLQ" in stdout
    assert '"InvalidMessages"' in stdout
