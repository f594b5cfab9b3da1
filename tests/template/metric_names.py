"""The metric names the function emits, read from the AST of functions/batch_canceller/*.py.

Every emission site is one of: `<tally>.count(NAME, ...)`, `self.counts[NAME] += ...` (the
Tally itself), `<metrics>.add_metric(name=NAME, ...)`, `count_once(NAME, ...)` and
`single_metric(name=NAME, ...)`. NAME is a string literal, a loop
variable over a literal tuple (`for name, kind in (("A", ...), ...)`), or an expression listed
in DERIVED with the names it takes. A site whose name this scan cannot work out is returned as
unresolved, so that a new way of emitting fails the test instead of hiding a metric from it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from batch_canceller.commands import RECEIPTED_DETAIL_TYPES
from batch_canceller.webhook_intake import METRICS as WEBHOOK_METRICS
from infra.sam.template import ROOT

PACKAGE = ROOT / "functions" / "batch_canceller"

# Receivers of `.count(...)` that are the Tally (a `str.count` or `list.count` elsewhere is not).
TALLY_RECEIVERS = frozenset({"tally", "self.tally", "self._tally", "self", "self._observer"})
# `.sample(NAME, value)` on the same receivers: a sampled metric (InFlightLimit).

# (module, expression) -> the names it evaluates to, for names the code computes.
DERIVED: dict[tuple[str, str], frozenset[str]] = {
    # announcing counts each published outcome under its detail-type without spaces.
    ("announcing", "detail_type.replace(' ', '')"): frozenset(
        detail_type.replace(" ", "") for detail_type in RECEIPTED_DETAIL_TYPES
    ),
    # Tally.flush, _add_samples and count_once hand on the names counted elsewhere.
    ("observability", "name"): frozenset(),
    # The webhook receiver counts each answer under its outcome's metric.
    ("webhook_intake", "METRICS[answer.outcome]"): frozenset(WEBHOOK_METRICS.values()),
}

# Other ways to publish a metric (Powertools, boto3): none is used; if one appears, the scan
# must learn it.
OTHER_EMITTERS = frozenset({"single_metric", "put_metric_data", "EphemeralMetrics", "add_metric"})


@dataclass
class Scan:
    names: set[str] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)


def _loop_constants(tree: ast.AST, variable: str, site: ast.AST) -> set[str] | None:
    """The string constants a `for` target named `variable` takes, when it loops over a literal
    tuple or list and `site` is inside its body."""
    for loop in ast.walk(tree):
        if not isinstance(loop, ast.For) or not any(site is n for n in ast.walk(loop)):
            continue
        if not isinstance(loop.iter, ast.Tuple | ast.List):
            continue
        if isinstance(loop.target, ast.Name) and loop.target.id == variable:
            position = None
        elif isinstance(loop.target, ast.Tuple):
            ids = [t.id if isinstance(t, ast.Name) else None for t in loop.target.elts]
            if variable not in ids:
                continue
            position = ids.index(variable)
        else:
            continue
        found: set[str] = set()
        for element in loop.iter.elts:
            value = element if position is None else getattr(element, "elts", [None])[position]
            if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
                return None
            found.add(value.value)
        return found
    return None


def _emitted_name_nodes(tree: ast.AST) -> Iterator[tuple[ast.AST, ast.expr]]:
    """(site, name expression) for every emission in one module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = ast.unparse(node.func.value)
            if node.func.attr in ("count", "sample") and receiver in TALLY_RECEIVERS and node.args:
                yield node, node.args[0]
            elif node.func.attr in ("add_metric", "single_metric"):
                keyword = {k.arg: k.value for k in node.keywords}
                yield node, keyword.get("name", node.args[0] if node.args else node.func)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            # `count_once(NAME, ...)` (observability) and Powertools' `single_metric(name=...)`.
            if node.func.id == "count_once" and node.args:
                yield node, node.args[0]
            elif node.func.id == "_add_samples" and len(node.args) > 1:  # observability's
                yield node, node.args[1]
            elif node.func.id == "single_metric":
                yield node, {k.arg: k.value for k in node.keywords}.get("name", node.func)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "self.counts":
            yield node, node.slice


def scan(package: Path = PACKAGE) -> Scan:
    result = Scan()
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = path.stem
        for site, expression in _emitted_name_nodes(tree):
            if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
                result.names.add(expression.value)
                continue
            text = ast.unparse(expression)
            if (module, text) in DERIVED:
                result.names |= DERIVED[(module, text)]
                continue
            looped = (
                _loop_constants(tree, expression.id, site)
                if isinstance(expression, ast.Name)
                else None
            )
            if looped is None:
                result.unresolved.append(f"{module}.py:{getattr(site, 'lineno', 0)}: {text}")
            else:
                result.names |= looped
        for node in ast.walk(tree):
            named = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if named in OTHER_EMITTERS - {"add_metric", "single_metric"}:
                result.unresolved.append(f"{module}.py:{getattr(node, 'lineno', 0)}: {named}")
    return result


def emitted_metric_names(package: Path = PACKAGE) -> set[str]:
    return scan(package).names
