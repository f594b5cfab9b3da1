"""What a chaos run asks of the function: batches to seed, commands to send, invalid inputs."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

# Permanently invalid inputs, one message each; every one must end up in the DLQ exactly once.
# (A bare word such as `42` or `null` is a valid batch ID, so none of those appear here.)
INVALID_INPUTS: tuple[str, ...] = (
    "../x",
    "a/b",
    "batch id with spaces",
    " ",
    "{not json",
    "[1, 2, 3]",
    '"../files"',
    '{"batch_ids": []}',
    '{"batch_ids": "batch_abc"}',
    '{"batch_ids": [42]}',
    '{"batch_ids": ["batch_never_seeded_1", "../etc/passwd"]}',
    '{"batch_id": ""}',
    '{"batch_id": null}',
    json.dumps({"batch_id": "x" * 257}),
    json.dumps({"batch_ids": [f"batch_too_many_{i}" for i in range(1001)]}),
    '{"batch_id": "batch_a", "batch_ids": ["batch_b"]}',
    '{"batch_id": "batch_a", "colour": "red"}',
    '{"batch_id": "batch_a", "cancel_at": "tomorrow"}',
    '{"check": {"batch_id": "batch_a"}}',
    '{"sweep": {"older_than_minutes": -5}}',
)
REASON = "chaos run"
REQUESTED_BY = "chaos@example.com"


@dataclass(frozen=True)
class Message:
    body: str
    valid: bool
    batches: int  # batch IDs it asks to cancel (0 for an invalid input)


@dataclass(frozen=True)
class Workload:
    cancel_ids: tuple[str, ...]  # seeded in_progress: each must end `Batch Cancelled`
    finished_ids: tuple[str, ...]  # seeded completed: `Batch Finished Before Cancel`
    missing_ids: tuple[str, ...]  # never seeded (404): `Batch Cancel Failed`
    commands: tuple[str, ...]  # valid message bodies
    command_sizes: tuple[int, ...]  # batch IDs in each command
    invalid: tuple[str, ...]  # invalid message bodies

    @property
    def requested_ids(self) -> tuple[str, ...]:
        return self.cancel_ids + self.finished_ids + self.missing_ids

    def messages(self, rng: random.Random) -> list[Message]:
        """Every message to send, shuffled."""
        messages = [
            Message(body, True, size)
            for body, size in zip(self.commands, self.command_sizes, strict=True)
        ]
        messages += [Message(body, False, 0) for body in self.invalid]
        rng.shuffle(messages)
        return messages


def build_workload(
    batches: int,
    finished: int,
    missing: int,
    rng: random.Random,
    *,
    max_ids_per_command: int = 10,
    asked_twice_fraction: float = 0.02,
) -> Workload:
    cancel_ids = tuple(f"batch_chaos_{i:05d}" for i in range(batches))
    finished_ids = tuple(f"batch_done_{i:04d}" for i in range(finished))
    missing_ids = tuple(f"batch_unknown_{i:04d}" for i in range(missing))
    ids = list(cancel_ids + finished_ids + missing_ids)
    rng.shuffle(ids)
    # Someone asks again for a few batches, in a separate command: still one event each.
    ids += rng.sample(ids, int(len(ids) * asked_twice_fraction))
    commands: list[str] = []
    sizes: list[int] = []
    start = 0
    while start < len(ids):
        chunk = ids[start : start + rng.randint(1, max_ids_per_command)]
        start += len(chunk)
        commands.append(_command(chunk, rng))
        sizes.append(len(chunk))
    return Workload(
        cancel_ids, finished_ids, missing_ids, tuple(commands), tuple(sizes), INVALID_INPUTS
    )


def _command(ids: list[str], rng: random.Random) -> str:
    """Every accepted shape: bare ID, JSON string, `batch_id`, and `batch_ids` lists."""
    if len(ids) == 1:
        shape = rng.choice(("bare", "string", "batch_id", "list"))
        if shape == "bare":
            return ids[0]
        if shape == "string":
            return json.dumps(ids[0])
        if shape == "batch_id":
            return json.dumps({"batch_id": ids[0], "reason": REASON})
    return json.dumps({"batch_ids": ids, "reason": REASON, "requested_by": REQUESTED_BY})
