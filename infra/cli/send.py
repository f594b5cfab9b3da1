"""`send`: validate batch IDs, pack them into cancel commands, put them on the cancel queue."""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from batch_canceller.commands import MAX_BATCH_IDS, MAX_TEXT_FIELD, InvalidInput, validate_batch_id
from batch_canceller.scheduling import MAX_SCHEDULE_AHEAD
from infra.cli import EXIT_FAILED, EXIT_OK, OperationFailed, UsageError
from infra.cli.flags import check_payload
from infra.cli.output import (
    ProgressBar,
    print_error,
    print_json,
    print_note,
    print_pairs,
    print_warning,
    shorten,
)
from infra.cli.requester import requester
from infra.cli.target import Target

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DEFAULT_PER_MESSAGE = 100
ENTRIES_PER_CALL = 10  # SendMessageBatch's limit
# SQS's classic message and batch size limit: safe on every account, whatever its quota.
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_RETRIES = 3
RETRY_BASE_SECONDS = 0.5
MAX_LISTED_INVALID = 20
# The queue, the credentials or the permissions are wrong: no later call can succeed.
ABORT_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAddress",
        "InvalidSecurity",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "KMS.AccessDeniedException",
    }
)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "AWS.SimpleQueueService.RequestThrottled",
    }
)
_RELATIVE = re.compile(r"\+((?:\d+[smhd])+)")
_RELATIVE_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class SendOptions:
    ids: Sequence[str] = ()
    files: Sequence[str] = ()
    per_message: int = DEFAULT_PER_MESSAGE
    reason: str | None = None
    requested_by: str | None = None
    at: str | None = None
    skip_invalid: bool = False
    progress: bool = False
    json: bool = False


@dataclass(frozen=True)
class Message:
    body: str
    batch_ids: tuple[str, ...]


@dataclass
class SendResult:
    sent: list[Message] = field(default_factory=list)
    failed: list[Message] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        if text not in self.errors:
            self.errors.append(text)


@dataclass(frozen=True)
class _Invalid:
    where: str
    value: str


def run(target: Target, options: SendOptions, stdin: TextIO | None = None) -> int:
    # Everything is checked before anything is sent: a bad option or file sends nothing.
    if not 1 <= options.per_message <= MAX_BATCH_IDS:
        raise UsageError(f"--per-message must be between 1 and {MAX_BATCH_IDS}")
    command = {
        "reason": _text_option("--reason", options.reason),
        "requested_by": _text_option("--requested-by", requester(target, options.requested_by)),
        "cancel_at": parse_at(options.at) if options.at else None,
    }
    # The function's own parser on one message of these options (e.g. --requested-by).
    check_payload("send", {"batch_id": "batch_x", **{k: v for k, v in command.items() if v}})
    candidates = _collect(options, stdin or sys.stdin)
    valid, invalid = _validate(candidates)
    if invalid and not options.skip_invalid:
        _report_invalid(invalid)
        raise UsageError(
            f"{len(invalid)} invalid batch ID(s); nothing was sent"
            " (--skip-invalid sends the valid ones)"
        )
    unique = list(dict.fromkeys(valid))
    if not unique:
        raise UsageError("no batch IDs to send")
    messages = pack(unique, options.per_message, command)
    queue_url = target.output("CancelQueueUrl")

    bar = None
    if options.progress or sys.stderr.isatty():
        bar = ProgressBar(len(messages), "messages", label="sending")
    total_ids = len(unique)

    def progress(sent_messages: int, sent_ids: int) -> None:
        if bar is not None:
            bar.update(sent_messages, f"{sent_ids}/{total_ids} batch IDs")

    result = QueueSender(target.sqs(), queue_url).send(messages, progress)
    if bar is not None:
        bar.finish()
    if invalid:
        _report_invalid(invalid, skipped=True)
    _print_summary(options, queue_url, messages, result, len(valid) - total_ids, invalid, command)
    # Errors that retries got past are worth a warning, not an error, when all was sent.
    report = print_error if result.failed else print_warning
    for text in result.errors:
        report(text)
    if result.failed:
        failed_ids = sum(len(message.batch_ids) for message in result.failed)
        print_error(f"{len(result.failed)} message(s) with {failed_ids} batch ID(s) were not sent")
        return EXIT_FAILED
    return EXIT_OK


def parse_at(text: str, now: datetime | None = None) -> str:
    """`+2h`, `+1h30m`, `+45m`, `+1d` (from now) or ISO-8601 with an offset -> UTC ISO-8601."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        seconds = sum(
            int(amount) * _UNIT_SECONDS[unit]
            for amount, unit in _RELATIVE_PART.findall(relative.group(1))
        )
        moment = now + timedelta(seconds=seconds)
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(
                f"--at {text!r}: expected ISO-8601 with an offset"
                " (2026-01-01T06:00:00+00:00) or a relative time (+2h, +30m, +1d)"
            ) from None
        if moment.tzinfo is None:
            raise UsageError(f"--at {text!r} needs a UTC offset, e.g. {text}+00:00")
    moment = moment.astimezone(UTC).replace(microsecond=0)
    if moment <= now:
        raise UsageError(f"--at {text!r} is not in the future ({moment.isoformat()})")
    if moment - now > MAX_SCHEDULE_AHEAD:
        raise UsageError(f"--at {text!r} is more than {MAX_SCHEDULE_AHEAD.days} days ahead")
    return moment.isoformat()


def pack(
    batch_ids: Sequence[str], per_message: int, command: dict[str, str | None]
) -> list[Message]:
    """Commands of up to `per_message` IDs each. Even 1,000 IDs of 256 characters plus the
    longest reason fit in one SQS message; SendMessageBatch calls are sized in `_calls`."""
    extra = {key: value for key, value in command.items() if value is not None}
    messages = []
    for start in range(0, len(batch_ids), per_message):
        ids = tuple(batch_ids[start : start + per_message])
        body = json.dumps({"batch_ids": list(ids), **extra}, separators=(",", ":"))
        messages.append(Message(body, ids))
    return messages


class QueueSender:
    """SendMessageBatch, ten entries per call; failed entries retried up to MAX_RETRIES times."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._sleep = sleep

    def send(
        self, messages: Sequence[Message], progress: Callable[[int, int], None] | None = None
    ) -> SendResult:
        result = SendResult()
        pending = list(messages)
        for attempt in range(MAX_RETRIES + 1):
            if not pending:
                break
            if attempt:
                # Exponential backoff with jitter, so a throttled queue gets room to recover.
                self._sleep(RETRY_BASE_SECONDS * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311
            retry: list[Message] = []
            calls = _calls(pending)
            for index, chunk in enumerate(calls):
                try:
                    failed, retriable = self._send_call(chunk, result)
                except OperationFailed as exc:
                    # Nothing later can succeed: everything not yet sent has failed.
                    result.error(str(exc))
                    rest = [m for c in calls[index:] for m in c]
                    result.failed.extend(rest + retry)
                    return result
                result.failed.extend(failed)
                retry.extend(retriable)
                if progress is not None:
                    progress(len(result.sent), sum(len(m.batch_ids) for m in result.sent))
            pending = retry
        result.failed.extend(pending)
        return result

    def _send_call(
        self, chunk: Sequence[Message], result: SendResult
    ) -> tuple[list[Message], list[Message]]:
        """Send one call; returns (failed for good, worth retrying)."""
        entries: list[Any] = [
            {"Id": str(index), "MessageBody": message.body} for index, message in enumerate(chunk)
        ]
        try:
            answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
        except NoCredentialsError:
            raise OperationFailed("no AWS credentials found") from None
        except EndpointConnectionError as exc:
            # botocore has already retried the connection: the endpoint is wrong or down.
            raise OperationFailed(f"cannot reach SQS: {exc}") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = str(error.get("Message", "")) or code
            if code in ABORT_CODES:
                if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                    raise OperationFailed(
                        f"the queue does not exist: {self._url} ({code})"
                    ) from None
                raise OperationFailed(f"cannot send to {self._url}: {code}: {message}") from None
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            result.error(f"SendMessageBatch failed: {code}: {message}")
            if status >= 500 or code in THROTTLING_CODES:
                return [], list(chunk)
            return list(chunk), []
        except BotoCoreError as exc:
            result.error(f"SendMessageBatch failed: {exc}")
            return [], list(chunk)
        for sent in answer.get("Successful", []):
            result.sent.append(chunk[int(sent["Id"])])
        failed: list[Message] = []
        retriable: list[Message] = []
        for entry in answer.get("Failed", []):
            message_obj = chunk[int(entry["Id"])]
            result.error(f"SQS refused a message: {entry.get('Code')}: {entry.get('Message', '')}")
            # SenderFault: the message itself is wrong, sending it again cannot help.
            (failed if entry.get("SenderFault") else retriable).append(message_obj)
        return failed, retriable


def _calls(messages: Sequence[Message]) -> list[list[Message]]:
    """Messages grouped into SendMessageBatch calls: 10 entries, 256 KiB at most."""
    calls: list[list[Message]] = []
    current: list[Message] = []
    size = 0
    for message in messages:
        length = len(message.body.encode("utf-8"))
        if current and (len(current) == ENTRIES_PER_CALL or size + length > MAX_PAYLOAD_BYTES):
            calls.append(current)
            current, size = [], 0
        current.append(message)
        size += length
    if current:
        calls.append(current)
    return calls


def _collect(options: SendOptions, stdin: TextIO) -> list[tuple[str, str]]:
    """(where it came from, the text) for every candidate ID, in order."""
    found: list[tuple[str, str]] = []
    read_stdin = False
    for position, value in enumerate(options.ids, start=1):
        if value == "-":
            read_stdin = True
        else:
            found.append((f"argument {position}", value))
    for name in options.files:
        if name == "-":
            read_stdin = True
            continue
        try:
            with open(name, encoding="utf-8") as handle:
                found.extend(_ids_in_lines(name, handle))
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{name} is not UTF-8 text") from None
    if read_stdin:
        found.extend(_ids_in_lines("stdin", stdin))
    return found


def _ids_in_lines(source: str, lines: Iterable[str]) -> list[tuple[str, str]]:
    """One ID per line; blank lines are skipped and `#` starts a comment. A line is never split:
    with --skip-invalid, half of a mangled line must not be sent as an ID of its own."""
    found: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            found.append((f"{source}:{number}", text))
    return found


def _validate(candidates: Sequence[tuple[str, str]]) -> tuple[list[str], list[_Invalid]]:
    valid: list[str] = []
    invalid: list[_Invalid] = []
    for where, value in candidates:
        try:
            valid.append(validate_batch_id(value))
        except InvalidInput:
            invalid.append(_Invalid(where, value))
    return valid, invalid


def _report_invalid(invalid: Sequence[_Invalid], *, skipped: bool = False) -> None:
    verb = "skipped" if skipped else "invalid"
    for entry in invalid[:MAX_LISTED_INVALID]:
        print_note(f"{verb}: {entry.where}: {shorten(ascii(entry.value), 60)}")
    if len(invalid) > MAX_LISTED_INVALID:
        print_note(f"... and {len(invalid) - MAX_LISTED_INVALID} more")
    if not skipped:
        print_note("batch IDs are 1 to 256 characters of A-Z a-z 0-9 _ -")


def _text_option(flag: str, value: str | None) -> str | None:
    if value is not None and len(value) > MAX_TEXT_FIELD:
        raise UsageError(f"{flag} is longer than {MAX_TEXT_FIELD} characters")
    return value


def _print_summary(
    options: SendOptions,
    queue_url: str,
    messages: Sequence[Message],
    result: SendResult,
    duplicates: int,
    invalid: Sequence[_Invalid],
    command: dict[str, str | None],
) -> None:
    sent_ids = sum(len(message.batch_ids) for message in result.sent)
    failed_ids = [batch_id for message in result.failed for batch_id in message.batch_ids]
    total_ids = sum(len(message.batch_ids) for message in messages)
    if options.json:
        print_json(
            {
                "queue_url": queue_url,
                "messages_total": len(messages),
                "messages_sent": len(result.sent),
                "messages_failed": len(result.failed),
                "batch_ids_total": total_ids,
                "batch_ids_sent": sent_ids,
                "failed_batch_ids": failed_ids,
                "duplicates_skipped": duplicates,
                "invalid_skipped": [entry.value for entry in invalid],
                "reason": command["reason"],
                "requested_by": command["requested_by"],
                "cancel_at": command["cancel_at"],
                "errors": result.errors,
            }
        )
        return
    pairs: list[tuple[str, object]] = [
        ("queue", queue_url),
        ("messages sent", f"{len(result.sent)}/{len(messages)}"),
        ("batch IDs sent", f"{sent_ids}/{total_ids}"),
        ("failed", f"{len(result.failed)} messages, {len(failed_ids)} batch IDs"),
    ]
    if duplicates:
        pairs.append(("duplicates skipped", duplicates))
    if invalid:
        pairs.append(("invalid skipped", len(invalid)))
    if command["cancel_at"]:
        pairs.append(("cancel at", command["cancel_at"]))
    print_pairs(pairs)
