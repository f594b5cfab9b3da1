"""Everything the CLI writes: tables and JSON on stdout (what people and scripts read),
errors, warnings and progress on stderr (so a pipe only ever carries the answer)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from batch_canceller.json_values import plain

PROG = "batch-canceller"
MISSING = "-"
BAR_WIDTH = 30
# A redrawn bar on a terminal at most this often; the final frame is always drawn.
LIVE_REDRAW_SECONDS = 0.1
# Without a terminal (a forced bar into a log), one line per this many percent.
LOG_STEP_PERCENT = 10
FOLDED = "\n\r\t"  # folded to one space: the cell stays on one line
# Every other C0 and C1 control, and DEL, shown as `\xNN`: a record's texts are written by
# whoever may send to the queue or the bus, and ESC or BEL would drive the terminal (erase
# the row, retitle the window) instead of being read.
ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) not in FOLDED
}


def cell(value: object) -> str:
    """One table cell: plain text on one line, so columns stay aligned, and no control
    character reaches the terminal."""
    if value is None or value == "":
        return MISSING
    text = str(plain(value)).translate(ESCAPES)
    return " ".join(text.split()) if any(c in text for c in FOLDED) else text


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))

    def line(values: Sequence[str]) -> str:
        # The last column is not padded: no trailing blanks for `grep`/`awk` to trip over.
        return "  ".join(
            value.ljust(width) for value, width in zip(values, widths, strict=True)
        ).rstrip()

    return "\n".join([line([h.upper() for h in headers]), *(line(row) for row in cells)])


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    print(render_table(headers, rows), file=sys.stdout)


def print_pairs(pairs: Sequence[tuple[str, object]]) -> None:
    """A short summary as two aligned columns, label and value."""
    width = max((len(label) for label, _ in pairs), default=0)
    for label, value in pairs:
        print(f"{label.ljust(width)}  {cell(value)}", file=sys.stdout)


def print_lines(lines: Iterable[str]) -> None:
    for text in lines:
        print(text, file=sys.stdout)


def print_json(value: Any) -> None:
    # DynamoDB numbers (Decimal) become int/float and sets sorted lists, as scripts expect.
    print(json.dumps(plain(value), indent=2, ensure_ascii=False), file=sys.stdout)


def print_error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def print_warning(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def print_note(message: str) -> None:
    print(message, file=sys.stderr)


class ProgressBar:
    """A progress bar on stderr: redrawn in place on a terminal, one line per step elsewhere."""

    def __init__(
        self,
        total: int,
        unit: str,
        *,
        label: str = "",
        stream: TextIO | None = None,
        live: bool | None = None,
    ) -> None:
        self._total = total
        self._unit = unit
        self._label = label
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty() if live is None else live
        self._done = 0
        self._detail = ""
        self._drawn_at = 0.0
        self._logged_step = -1
        self._width = 0

    def update(self, done: int, detail: str = "") -> None:
        self._done = min(done, self._total)
        self._detail = detail
        if self._live:
            now = time.monotonic()
            if now - self._drawn_at >= LIVE_REDRAW_SECONDS or self._done == self._total:
                self._drawn_at = now
                self._draw_in_place()
        else:
            step = self.percent // LOG_STEP_PERCENT
            if step > self._logged_step:
                self._logged_step = step
                self._stream.write(self.frame() + "\n")
                self._stream.flush()

    def finish(self) -> None:
        """The last frame stays on screen (also when the work stopped short of 100%)."""
        if self._live:
            self._draw_in_place()
            self._stream.write("\n")
        elif self._logged_step < 0 or self.percent // LOG_STEP_PERCENT != self._logged_step:
            self._stream.write(self.frame() + "\n")
        self._stream.flush()

    @property
    def percent(self) -> int:
        return 100 if self._total == 0 else self._done * 100 // self._total

    def frame(self) -> str:
        filled = BAR_WIDTH if self._total == 0 else self._done * BAR_WIDTH // self._total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        text = f"[{bar}] {self._done}/{self._total} {self._unit} {self.percent:3d}%"
        if self._label:
            text = f"{self._label} {text}"
        return f"{text}  {self._detail}" if self._detail else text

    def _draw_in_place(self) -> None:
        text = self.frame()
        # Blank out what a longer previous frame left behind.
        self._stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self._stream.flush()
