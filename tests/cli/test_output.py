"""Tables people read, and the progress bar on a terminal and in a log."""

from __future__ import annotations

import io

from infra.cli.output import ProgressBar, render_table


def test_tables_are_aligned_plain_text_without_trailing_blanks() -> None:
    text = render_table(
        ("batch_id", "status", "reason"),
        [["batch_a", "cancelled", None], ["batch_long_id", None, "two\nlines"]],
    )

    assert text.splitlines() == [
        "BATCH_ID       STATUS     REASON",
        "batch_a        cancelled  -",
        "batch_long_id  -          two lines",
    ]


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(4, "messages", label="sending", stream=stream, live=True)

    for done in range(1, 5):
        bar.update(done, f"{done * 100}/400 batch IDs")
    bar.finish()

    text = stream.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    frames = [frame.rstrip() for frame in text.strip("\n").split("\r") if frame]
    assert frames[-1] == "sending [" + "#" * 30 + "] 4/4 messages 100%  400/400 batch IDs"


def test_progress_into_a_log_writes_the_first_step_then_a_line_per_tenth() -> None:
    stream = io.StringIO()
    bar = ProgressBar(100, "messages", stream=stream, live=False)

    for done in range(1, 101):
        bar.update(done)
    bar.finish()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[0].endswith("1/100 messages   1%")
    assert lines[1].endswith("10/100 messages  10%")
    assert lines[-1].endswith("100/100 messages 100%")
