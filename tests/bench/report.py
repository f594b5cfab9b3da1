"""Plain-text tables, goal verdicts, and the JSON written to .bench/results.json."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Cell = str | int | float | None


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Cell) -> None:
        self.rows.append(list(cells))

    def render(self) -> str:
        text = [[_cell(value) for value in row] for row in self.rows]
        widths = [len(name) for name in self.columns]
        for row in text:
            for index, value in enumerate(row):
                widths[index] = max(widths[index], len(value))
        numeric = [
            all(_is_number(row[i]) for row in self.rows if row[i] is not None)
            for i in range(len(self.columns))
        ]

        def line(values: Sequence[str]) -> str:
            cells = [
                value.rjust(widths[i]) if numeric[i] and i > 0 else value.ljust(widths[i])
                for i, value in enumerate(values)
            ]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * width for width in widths)
        out = [self.title, "=" * len(self.title), line(self.columns), rule]
        out.extend(line(row) for row in text)
        out.extend(f"  * {note}" for note in self.notes)
        return "\n".join(out)


@dataclass(frozen=True)
class Goal:
    """A ratio measured in this run against its target; a report line, never a gate."""

    name: str
    measured: float
    target: float
    direction: Literal["<=", ">="]
    reference: str

    @property
    def met(self) -> bool:
        if self.direction == "<=":
            return self.measured <= self.target
        return self.measured >= self.target

    @property
    def verdict(self) -> str:
        return "MET" if self.met else "NOT MET"

    def describe(self) -> str:
        return f"{self.measured:.2f} (goal {self.direction} {self.target:.2f}): {self.verdict}"


@dataclass
class Section:
    key: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def render(self) -> str:
        if self.error is not None:
            return f"{self.key}: HARNESS FAILED\n{self.error}"
        text = "\n\n".join(table.render() for table in self.tables)
        goals = [
            f"GOAL {goal.name}: {goal.describe()}  [reference: {goal.reference}]"
            for goal in self.goals
        ]
        return "\n".join([text, "", *goals]) if goals else text


def summary_table(sections: Sequence[Section]) -> Table:
    table = Table(
        "Summary: goals (ratios measured in this run; a report, not a gate)",
        ["goal", "measured", "target", "verdict", "reference (2-core machine)"],
    )
    for section in sections:
        if section.error is not None:
            table.add(section.key, None, None, "HARNESS FAILED", None)
        for goal in section.goals:
            table.add(
                goal.name,
                f"{goal.measured:.2f}",
                f"{goal.direction} {goal.target:.2f}",
                goal.verdict,
                goal.reference,
            )
    return table


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def section_json(section: Section) -> dict[str, Any]:
    return {
        "data": section.data,
        "goals": [{**asdict(goal), "met": goal.met} for goal in section.goals],
        "tables": [asdict(table) for table in section.tables],
        "error": section.error,
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _cell(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def _is_number(value: Cell) -> bool:
    if isinstance(value, int | float):
        return True
    if not isinstance(value, str):
        return False
    stripped = value.replace(",", "").replace("$", "").split(" ")[0].rstrip("%x")
    try:
        float(stripped)
    except ValueError:
        return False
    return True
