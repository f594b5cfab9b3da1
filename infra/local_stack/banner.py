"""What `make local` prints: first a block of `export NAME=value` lines to paste or `eval`,
then commands that use only those names, so they run verbatim (the README's use the same).

`ENDPOINT_ARG` exists for AWS CLI v1: it sends SQS calls for us-east-1 (and most regions) to
the real endpoint whatever `AWS_ENDPOINT_URL` says, so the commands pass
`$ENDPOINT_ARG` (`--endpoint-url=URL`, one word, so bash and zsh expand it alike). For a
deployed stack it is unset and expands to nothing.

The block also puts the project's `.venv/bin` (absolute) first on `PATH`: the README's commands
call `batch-canceller` bare, and nothing else puts it there. The banner's own commands name it
by its absolute path, so they run from any directory.
"""

from __future__ import annotations

import shlex
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.local_stack.paths import STATE_DIR_VARIABLE

EXPORT_MARKER = "# the local stack: paste these lines, or eval them (bash, zsh)"
EXPORT_END = "# end of exports"
LOCAL_CREDENTIAL = "local"  # moto accepts any credentials
PATH_VARIABLE = "PATH"  # prepended to, not replaced: `export PATH=<bin>:"$PATH"`


def scripts_dir() -> Path:
    """Where `make venv` installed `batch-canceller` (and the venv's `aws`): the scripts
    directory of the interpreter running the stack (not resolved: a venv's python is a link)."""
    return Path(sysconfig.get_path("scripts")).absolute()


def cli() -> str:
    """The operator CLI by its absolute path, quoted for the shell."""
    return shlex.quote(str(scripts_dir() / "batch-canceller"))


def exports(state: Mapping[str, Any], openai_url: str, state_dir: Path) -> dict[str, str]:
    outputs: Mapping[str, str] = state["outputs"]
    endpoint = str(state["aws_endpoint"])
    webhook: dict[str, str] = {"WEBHOOK_URL": state["webhook"]["url"]} if "webhook" in state else {}
    return {
        "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIAL,
        "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIAL,
        "AWS_DEFAULT_REGION": str(state["region"]),
        "AWS_ENDPOINT_URL": endpoint,
        "ENDPOINT_ARG": f"--endpoint-url={endpoint}",
        "QUEUE_URL": outputs["CancelQueueUrl"],
        "QUEUE_ARN": outputs["CancelQueueArn"],
        "DLQ_URL": outputs["DeadLetterQueueUrl"],
        "DLQ_ARN": outputs["DeadLetterQueueArn"],
        "TABLE": outputs["BatchesTableName"],
        "BUS": outputs["EventBusName"],
        "FUNCTION": outputs.get("FunctionName", ""),
        "OPENAI_EMULATOR_URL": openai_url,
        **webhook,
        # Absolute: `batch-canceller --local` finds the state file from any directory.
        STATE_DIR_VARIABLE: str(state_dir),
        PATH_VARIABLE: str(scripts_dir()),
    }


def export_line(name: str, value: str) -> str:
    if name == PATH_VARIABLE:
        return f'export PATH={shlex.quote(value)}:"$PATH"'
    return f"export {name}={shlex.quote(value)}"


def export_block(variables: Mapping[str, str]) -> str:
    lines = [EXPORT_MARKER]
    lines += [export_line(name, value) for name, value in variables.items()]
    lines.append(EXPORT_END)
    return "\n".join(lines)


def commands(seeded: Sequence[str], *, webhook: bool = False) -> list[str]:
    """Commands to try; each runs verbatim once the exports are set."""
    first, second = seeded[0], seeded[1]
    signed = [f"{cli()} --local webhook send {seeded[-1]}"] if webhook else []
    detail = '{\\"batch_id\\": \\"' + second + '\\"}'
    return [
        f'aws $ENDPOINT_ARG sqs send-message --queue-url "$QUEUE_URL" --message-body {first}',
        f'aws $ENDPOINT_ARG events put-events --entries \'[{{"EventBusName": "\'"$BUS"\'",'
        f' "Source": "com.example.ops", "DetailType": "Batch Cancel Requested",'
        f' "Detail": "{detail}"}}]\'',
        f"{cli()} --local status {first} {second}",
        f"{cli()} --local sweep --older-than 20h --metadata project=evals --dry-run",
        'aws $ENDPOINT_ARG sqs receive-message --queue-url "$DLQ_URL" --message-attribute-names All'
        " --max-number-of-messages 10 --visibility-timeout 0",
        'curl -s -X POST "$OPENAI_EMULATOR_URL/_emulator/seed" -d \'{"count": 5}\'',
        *signed,
    ]


def banner(
    variables: Mapping[str, str], seeded: Sequence[str], state_dir: Path, aws_port_variable: str
) -> str:
    """`state_dir` absolute: the `source` line runs from any directory."""
    webhook = "WEBHOOK_URL" in variables
    try_lines = "\n".join(f"  {command}" for command in commands(seeded, webhook=webhook))
    webhook_line = (
        f"\n  webhook URL       {variables['WEBHOOK_URL']}   moves with LOCAL_WEBHOOK_PORT;"
        " the emulator sends its webhooks here"
        if webhook
        else ""
    )
    return f"""{export_block(variables)}

local stack running; state in {state_dir / "state.json"}, function logs in {state_dir / "function.log"}. Ctrl-C (or SIGTERM, or closing the terminal) stops it.
  AWS (moto)        {variables["AWS_ENDPOINT_URL"]}   moves with {aws_port_variable}
  OpenAI emulator   {variables["OPENAI_EMULATOR_URL"]}/v1   control routes under /_emulator/
  queue             {variables["QUEUE_URL"]}
  table             {variables["TABLE"]}
  bus               {variables["BUS"]}
  seeded batches    {" ".join(seeded)}{webhook_line}

in another shell, after the exports above (or: source {shlex.quote(str(state_dir))}/env.sh), try:
{try_lines}
"""


def read_exports(text: str) -> dict[str, str]:
    """The export block of `text` (what `make local` printed), as names and values."""
    lines = text.splitlines()
    start = lines.index(EXPORT_MARKER) + 1
    end = lines.index(EXPORT_END, start)
    variables: dict[str, str] = {}
    for line in lines[start:end]:
        words = shlex.split(line)
        name, _, value = words[1].partition("=")
        # PATH's line prepends to the shell's own: its value is the directory added.
        variables[name] = value.removesuffix(":$PATH") if name == PATH_VARIABLE else value
    return variables
