"""The `batch-canceller` command line: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from batch_canceller.commands import MAX_BATCH_IDS, NON_TERMINAL_STATUSES
from infra.cli import EXIT_FAILED, EXIT_USAGE, CliError, UsageError
from infra.cli import schedules as schedules_command
from infra.cli import send as send_command
from infra.cli import status as status_command
from infra.cli import sweep as sweep_command
from infra.cli import webhook as webhook_command
from infra.cli.output import PROG, print_error
from infra.cli.target import DEFAULT_STATE_FILE, STACK_ENV, Target, resolve_target
from infra.local_stack.paths import state_file

EXIT_INTERRUPTED = 130
REQUESTED_BY_HELP = (
    "who asked, stored on each record (default: the AWS caller identity's ARN on a deployed"
    " stack, $USER@$HOSTNAME on the local one; an empty WHO is that default too)"
)

DESCRIPTION = """\
Operate batch-canceller: queue cancels, read the records, manage scheduled cancellations,
run sweeps, send a signed test webhook. The stack is a deployed one (--stack-name, or $BATCH_CANCELLER_STACK) or the
local stack (--local). Exit codes: 0 ok, 1 an operation failed, 2 usage or configuration."""


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: `--loc send` must not slip past the `--local` handling below.
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, allow_abbrev=False)
    _target_options(parser, nested=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_send(commands)

    status = commands.add_parser(
        "status",
        allow_abbrev=False,
        help="show stored records",
        description="The stored record of each batch ID, or (--pending) of every batch still"
        " cancelling.",
    )
    status.add_argument("ids", nargs="*", metavar="ID", help="batch IDs")
    status.add_argument("--pending", action="store_true", help="every batch still 'cancelling'")
    _json_option(status)
    _target_options(status, nested=True)
    status.set_defaults(command_parser=status)

    schedules = commands.add_parser(
        "schedules",
        allow_abbrev=False,
        help="list or delete scheduled cancellations",
        description="One-time cancellation schedules (from commands with cancel_at / --at).",
    )
    _json_option(schedules)
    _target_options(schedules, nested=True)
    schedules.set_defaults(command_parser=schedules)
    schedule_commands = schedules.add_subparsers(dest="schedules_command", metavar="ACTION")
    listing = schedule_commands.add_parser(
        "list", help="list them (the default)", allow_abbrev=False
    )
    _json_option(listing, nested=True)
    _target_options(listing, nested=True)
    listing.set_defaults(command_parser=listing)
    delete = schedule_commands.add_parser(
        "delete", help="delete schedules by name or batch ID", allow_abbrev=False
    )
    delete.add_argument("names", nargs="*", metavar="NAME", help="schedule names")
    delete.add_argument(
        "--batch", dest="batch_ids", action="append", default=[], metavar="ID",
        help="delete the schedule of this batch; repeatable",
    )  # fmt: skip
    _json_option(delete, nested=True)
    _target_options(delete, nested=True)
    delete.set_defaults(command_parser=delete)

    sweep = commands.add_parser(
        "sweep",
        allow_abbrev=False,
        help="cancel every non-terminal batch matching filters",
        description="Have the function list the batches and cancel the non-terminal ones that"
        " match all the filters. A sweep without a filter that leaves out some batch needs"
        " --all (--older-than under 1m, or --status naming all four, leaves out none)."
        " Try --dry-run first.",
    )
    sweep.add_argument(
        "--older-than", metavar="AGE", help="created at least this long ago: 20h, 90m, 2d, minutes"
    )
    sweep.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE",
        help="metadata that must match; repeatable",
    )  # fmt: skip
    sweep.add_argument("--endpoint", help="e.g. /v1/chat/completions")
    sweep.add_argument("--model", help="model name")
    sweep.add_argument(
        "--status", dest="statuses", action="append", default=[],
        choices=sorted(NON_TERMINAL_STATUSES), help="only batches in this status; repeatable",
    )  # fmt: skip
    sweep.add_argument("--max-cancels", type=int, metavar="N", help="cancel at most N this run")
    sweep.add_argument("--dry-run", action="store_true", help="report only, cancel nothing")
    sweep.add_argument(
        "--all", action="store_true",
        help="allow a sweep without a filter (every running batch); on a terminal, asks first",
    )  # fmt: skip
    sweep.add_argument("--yes", action="store_true", help="with --all: do not ask (for scripts)")
    sweep.add_argument("--requested-by", metavar="WHO", help=REQUESTED_BY_HELP)
    _json_option(sweep)
    _target_options(sweep, nested=True)
    sweep.set_defaults(command_parser=sweep)
    _webhook_parser(commands)
    return parser


def _add_send(commands: Any) -> None:
    send = commands.add_parser(
        "send",
        allow_abbrev=False,
        help="queue cancel commands for batch IDs",
        description="Validate batch IDs, pack them into cancel commands, send them to the queue."
        " IDs come from arguments, --file, or stdin ('-'); one per line, '#' comments.",
    )
    send.add_argument("ids", nargs="*", metavar="ID", help="batch IDs; '-' reads them from stdin")
    send.add_argument(
        "-f", "--file", dest="files", action="append", default=[], metavar="FILE",
        help="read batch IDs from FILE ('-' for stdin); repeatable",
    )  # fmt: skip
    send.add_argument(
        "--per-message", type=int, default=send_command.DEFAULT_PER_MESSAGE, metavar="N",
        help=f"batch IDs per command (1-{MAX_BATCH_IDS}; default %(default)s)",
    )  # fmt: skip
    send.add_argument("--reason", help="why; stored with each record")
    send.add_argument("--requested-by", metavar="WHO", help=REQUESTED_BY_HELP)
    send.add_argument(
        "--at", metavar="TIME",
        help="cancel later: ISO-8601 with an offset (2026-01-01T06:00:00+00:00) or +2h, +30m, +1d",
    )  # fmt: skip
    send.add_argument(
        "--skip-invalid", action="store_true", help="send the valid IDs even if some are invalid"
    )
    send.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    _json_option(send)
    _target_options(send, nested=True)
    send.set_defaults(command_parser=send)


def _webhook_parser(commands: Any) -> None:
    webhook = commands.add_parser(
        "webhook",
        allow_abbrev=False,
        help="send a signed test webhook to the function URL",
        description="Webhook tools. `send` POSTs a delivery signed as OpenAI signs it.",
    )
    _target_options(webhook, nested=True)
    webhook.set_defaults(command_parser=webhook)
    actions = webhook.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)
    send = actions.add_parser(
        "send",
        allow_abbrev=False,
        help="POST one signed event and print the answer's status code",
        description="Sign an event for BATCH_ID with the webhook secret (the local stack's, or"
        f" --secret-id / ${webhook_command.SECRET_ID_ENV}) and POST it to the function URL"
        " (the local stack's, or --url). Exit 0 on a 2xx answer, 1 otherwise.",
    )
    send.add_argument("batch_id", metavar="BATCH_ID", help="the batch the event names")
    send.add_argument(
        "--type", dest="event_type", default=webhook_command.DEFAULT_TYPE, metavar="TYPE",
        help="event type (default %(default)s; batch.completed, batch.failed, batch.expired)",
    )  # fmt: skip
    send.add_argument("--url", help="where to POST (default: the local stack's function URL)")
    send.add_argument(
        "--secret-id", metavar="ID",
        help=f"Secrets Manager secret holding whsec_... (default: ${webhook_command.SECRET_ID_ENV})",
    )  # fmt: skip
    _json_option(send)
    _target_options(send, nested=True)
    send.set_defaults(command_parser=send)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _local_option_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(arguments)
        if unknown:
            # argparse would blame the top-level parser and print its usage; the user needs
            # the usage of the command they were typing.
            command_parser: argparse.ArgumentParser = getattr(args, "command_parser", parser)
            command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help (0), or a usage error argparse has already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _dispatch(args)
    except CliError as exc:
        print_error(str(exc))
        return exc.exit_code
    except NoCredentialsError:
        print_error("no AWS credentials found (set AWS_PROFILE or the AWS_* variables)")
        return EXIT_USAGE
    except (ClientError, BotoCoreError) as exc:
        print_error(f"AWS request failed: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, and keep Python's exit-time flush
        # of stdout from raising again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    target = _webhook_target(args) or _target(args)
    if args.command == "send":
        options = send_command.SendOptions(
            ids=args.ids,
            files=args.files,
            per_message=args.per_message,
            reason=args.reason,
            requested_by=args.requested_by,
            at=args.at,
            skip_invalid=args.skip_invalid,
            progress=args.progress,
            json=args.json,
        )
        return send_command.run(target, options)
    if args.command == "status":
        return status_command.run(
            target, status_command.StatusOptions(ids=args.ids, pending=args.pending, json=args.json)
        )
    if args.command == "schedules":
        if args.schedules_command == "delete":
            return schedules_command.run_delete(
                target, args.names, args.batch_ids, as_json=args.json
            )
        return schedules_command.run_list(target, as_json=args.json)
    if args.command == "webhook":
        return webhook_command.run(
            target,
            webhook_command.WebhookSendOptions(
                batch_id=args.batch_id,
                event_type=args.event_type,
                url=args.url,
                secret_id=args.secret_id,
                json=args.json,
            ),
        )
    options_sweep = sweep_command.SweepOptions(
        older_than=args.older_than,
        metadata=args.metadata,
        endpoint=args.endpoint,
        model=args.model,
        statuses=args.statuses,
        max_cancels=args.max_cancels,
        dry_run=args.dry_run,
        all=args.all,
        yes=args.yes,
        json=args.json,
        requested_by=args.requested_by,
    )
    return sweep_command.run(target, options_sweep)


def _webhook_target(args: argparse.Namespace) -> Target | None:
    """`webhook send --url ...` needs no stack: only AWS (for the secret) in the configured
    region."""
    if args.command != "webhook" or args.url is None:
        return None
    if args.local is not None or args.stack_name is not None or os.environ.get(STACK_ENV):
        return None
    region = args.region or boto3.session.Session().region_name or "us-east-1"
    return Target(region=region, aws_endpoint=None, outputs={}, description="AWS account")


def _target(args: argparse.Namespace) -> Target:
    if args.local is not None and args.stack_name is not None:
        raise UsageError("--local and --stack-name name different stacks; give one")
    return resolve_target(args.stack_name, args.region, args.local)


def _target_options(parser: argparse.ArgumentParser, *, nested: bool) -> None:
    """Accepted before and after the command; the nested copies leave values already set alone."""
    default = argparse.SUPPRESS if nested else None
    group = parser.add_argument_group("where the stack is")
    group.add_argument(
        "--stack-name", metavar="NAME", default=default,
        help=f"a deployed stack (default: ${STACK_ENV})",
    )  # fmt: skip
    group.add_argument(
        "--region", default=default, help="its region (default: the AWS configuration)"
    )
    group.add_argument(
        "--local", metavar="[STATE_FILE]", default=default,
        help=f"the local stack, from its state file (default {DEFAULT_STATE_FILE})",
    )  # fmt: skip


def _json_option(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if nested else False,
        help="print JSON for scripts instead of a table",
    )


def _local_option_values(arguments: list[str]) -> list[str]:
    """`--local` takes an optional path. argparse would swallow the next word (`--local send`),
    so a following word counts as the path only when it looks like a state file."""
    result: list[str] = []
    index = 0
    while index < len(arguments):
        word = arguments[index]
        if word == "--":
            result.extend(arguments[index:])
            break
        if word == "--local":
            following = arguments[index + 1] if index + 1 < len(arguments) else None
            if following is not None and _looks_like_state_file(following):
                result.append(f"--local={following}")
                index += 2
                continue
            result.append(f"--local={state_file()}")
        else:
            result.append(word)
        index += 1
    return result


def _looks_like_state_file(word: str) -> bool:
    # Only `.json` names: a command or a batch ID after `--local` must not be taken for a path.
    # Any other name works as `--local=PATH`.
    return not word.startswith("-") and word.endswith(".json")
