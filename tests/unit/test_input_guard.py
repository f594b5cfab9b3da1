"""The one guard at the boundary: a parser that fails in any way but InvalidInput (a bug) gives
the message a reason instead of failing the whole SQS batch."""

from __future__ import annotations

from batch_canceller.commands import CancelCommand, InvalidInput
from batch_canceller.inbound import parse_guarded


def test_an_unexpected_parser_error_becomes_a_reason_naming_the_part_and_the_error() -> None:
    def broken() -> CancelCommand:
        raise TypeError("unhashable type: 'list'")

    message = parse_guarded("m1", "sqs", "{}", broken, "message body")

    assert message.request is None
    assert message.error == "could not parse the message body: TypeError"


def test_invalid_input_keeps_its_own_reason_and_a_parsed_request_passes() -> None:
    def invalid() -> CancelCommand:
        raise InvalidInput("'batch_ids[0]': invalid batch ID")

    assert parse_guarded("m1", "direct", "{}", invalid, "payload").error == (
        "'batch_ids[0]': invalid batch ID"
    )
    parsed = parse_guarded("m2", "sqs", "b", lambda: CancelCommand(("b",)), "message body")
    assert (parsed.request, parsed.error) == (CancelCommand(("b",)), None)
