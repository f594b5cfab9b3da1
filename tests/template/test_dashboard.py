"""The CloudWatch dashboard names only metrics that exist, and shows every metric the code emits.

The dashboard's body is a JSON string (`!Sub`) that CloudFormation does not check: a misspelt
metric draws an empty graph, silently. So its metric names are checked against the AST of
functions/ (tests/template/metric_names.py), and the AWS ones against the metrics AWS
documents; the alarms' metric names get the same checks.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.sam.template import load_template, properties, resources_of_type
from tests.template.metric_names import PACKAGE, emitted_metric_names, scan

DASHBOARD = "BatchCancellerDashboard"
FUNCTION = "BatchCancellerFunction"

# Metrics the code emits that the dashboard leaves out, each with the reason. Empty: every one
# is drawn. A new metric goes on the dashboard, or here with why not.
NOT_ON_DASHBOARD: dict[str, str] = {}

# The AWS metrics the dashboard and the alarms may name (Lambda and SQS documentation).
AWS_METRICS: dict[str, frozenset[str]] = {
    "AWS/Lambda": frozenset(
        {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"}
    ),
    "AWS/SQS": frozenset(
        {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateAgeOfOldestMessage",
        }
    ),
}
# The dimension each AWS namespace is drawn by, and the resource attribute that fills it.
AWS_DIMENSIONS = {"AWS/Lambda": "FunctionName", "AWS/SQS": "QueueName"}

_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def variables(template: dict[str, Any]) -> dict[str, Any]:
    return dict(properties(template, FUNCTION)["Environment"]["Variables"])


def substituted(text: str) -> tuple[str, list[str]]:
    """The body with each `${X}` replaced by the marker `<X>`, and the names it referred to."""
    names = _SUB.findall(text)
    return _SUB.sub(lambda match: f"<{match.group(1)}>", text), names


@pytest.fixture(scope="module")
def body(template: dict[str, Any]) -> dict[str, Any]:
    raw = properties(template, DASHBOARD)["DashboardBody"]["Fn::Sub"]
    assert isinstance(raw, str), "DashboardBody is one !Sub string"
    text, _ = substituted(raw)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


SEARCHED = re.compile(
    r"SEARCH\('\{(?P<namespace>[^,}]+)[^}]*\} MetricName=\"(?P<metric>\w+)\""
    r" service=\"(?P<service>[\w-]+)\"'"
)


def metric_rows(body: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) of every metric row, `"."` read as the row above."""
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        previous: list[Any] = []
        for row in widget["properties"]["metrics"]:
            fields = [item for item in row if not isinstance(item, dict)]
            if not fields:
                # A metric-math expression: its inputs are rows of their own, or a SEARCH
                # naming one metric of the namespace across all its dimension values.
                for item in row:
                    found = SEARCHED.search(str(item.get("expression", "")))
                    if found:
                        yield found["namespace"], found["metric"], {"service": found["service"]}
                continue
            fields = [
                previous[i] if item == "." and i < len(previous) else item
                for i, item in enumerate(fields)
            ]
            previous = fields
            namespace, metric, *pairs = fields
            yield namespace, metric, dict(zip(pairs[::2], pairs[1::2], strict=True))


def test_the_body_is_json_and_refers_only_to_the_stacks_resources(
    template: dict[str, Any],
) -> None:
    raw = properties(template, DASHBOARD)["DashboardBody"]["Fn::Sub"]
    _, names = substituted(raw)
    resources = template["Resources"]
    for name in names:
        if name.startswith("AWS::"):
            assert name in {"AWS::Region", "AWS::StackName"}, name
            continue
        logical_id, _, attribute = name.partition(".")
        assert logical_id in resources, name
        assert attribute in {"", "Arn", "QueueName"}, name


def test_the_scan_can_name_every_emission() -> None:
    assert scan().unresolved == []


def test_the_scan_refuses_an_emission_it_cannot_name(tmp_path: Path) -> None:
    # A count whose name is computed some new way must fail the check, not slip past it.
    (tmp_path / "new.py").write_text(
        "def f(tally, kind):\n    tally.count(kind.upper())\n    tally.count('Literal')\n"
    )
    result = scan(tmp_path)
    assert result.names == {"Literal"}
    assert result.unresolved == ["new.py:2: kind.upper()"]


def test_every_custom_metric_on_the_dashboard_is_emitted(
    body: dict[str, Any], variables: dict[str, Any]
) -> None:
    emitted = emitted_metric_names()
    namespace = variables["POWERTOOLS_METRICS_NAMESPACE"]
    custom = [row for row in metric_rows(body) if not row[0].startswith("AWS/")]
    assert custom
    for row_namespace, metric, dimensions in custom:
        assert row_namespace == namespace, metric
        # Powertools Metrics adds the service dimension to every metric, and only it.
        assert dimensions == {"service": variables["POWERTOOLS_SERVICE_NAME"]}, metric
    assert sorted({metric for _, metric, _ in custom} - emitted) == []


def test_every_emitted_metric_is_on_the_dashboard_or_excluded(body: dict[str, Any]) -> None:
    drawn = {
        metric for namespace, metric, _ in metric_rows(body) if not namespace.startswith("AWS/")
    }
    assert sorted(emitted_metric_names() - drawn - set(NOT_ON_DASHBOARD)) == []
    # An exclusion of a metric that is drawn, or no longer emitted, is stale.
    assert sorted(set(NOT_ON_DASHBOARD) & drawn) == []
    assert sorted(set(NOT_ON_DASHBOARD) - emitted_metric_names()) == []


def test_every_aws_metric_on_the_dashboard_exists_and_names_a_resource_of_the_stack(
    body: dict[str, Any],
) -> None:
    aws_rows = [row for row in metric_rows(body) if row[0].startswith("AWS/")]
    assert {namespace for namespace, _, _ in aws_rows} == set(AWS_METRICS)
    for namespace, metric, dimensions in aws_rows:
        assert metric in AWS_METRICS[namespace], (namespace, metric)
        (dimension,) = dimensions
        assert dimension == AWS_DIMENSIONS[namespace], (namespace, metric)
    queues = {d["QueueName"] for n, _, d in aws_rows if n == "AWS/SQS"}
    functions = {d["FunctionName"] for n, _, d in aws_rows if n == "AWS/Lambda"}
    assert functions == {f"<{FUNCTION}>"}
    assert queues <= {
        f"<{q}.QueueName>" for q in resources_of_type(load_template(), "AWS::SQS::Queue")
    }


def test_every_queue_of_the_stack_has_its_depth_on_the_dashboard(
    template: dict[str, Any], body: dict[str, Any]
) -> None:
    depth = {
        dimensions["QueueName"]
        for namespace, metric, dimensions in metric_rows(body)
        if (namespace, metric) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    }
    assert depth == {
        f"<{queue}.QueueName>" for queue in resources_of_type(template, "AWS::SQS::Queue")
    }
    ages = {
        dimensions["QueueName"]
        for namespace, metric, dimensions in metric_rows(body)
        if metric == "ApproximateAgeOfOldestMessage"
    }
    assert {"<CancelQueue.QueueName>", "<DeadLetterQueue.QueueName>"} <= ages


def test_the_alarm_widget_shows_every_alarm_of_the_stack(
    template: dict[str, Any], body: dict[str, Any]
) -> None:
    (widget,) = (w for w in body["widgets"] if w["type"] == "alarm")
    shown = widget["properties"]["alarms"]
    assert len(shown) == len(set(shown))
    expected = {f"<{alarm}.Arn>" for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm")}
    assert set(shown) == expected


def test_every_alarm_watches_a_metric_that_exists(
    template: dict[str, Any], variables: dict[str, Any]
) -> None:
    emitted = emitted_metric_names()
    for logical_id, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        namespace, metric = props["Namespace"], props["MetricName"]
        if namespace == variables["POWERTOOLS_METRICS_NAMESPACE"]:
            assert metric in emitted, logical_id
        else:
            assert metric in AWS_METRICS[namespace], logical_id


def _logged_messages() -> set[str]:
    messages: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and ast.unparse(node.func.value) == "logger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                messages.add(node.args[0].value)
    return messages


def test_the_log_widget_reads_the_functions_log_group_for_a_line_it_logs(
    body: dict[str, Any],
) -> None:
    (widget,) = (w for w in body["widgets"] if w["type"] == "log")
    query = widget["properties"]["query"]
    assert query.startswith("SOURCE '<BatchCancellerLogGroup>' |")
    filtered = re.findall(r'message = "([^"]+)"', query)
    assert filtered
    assert set(filtered) <= _logged_messages()


def test_the_dashboard_url_is_an_output(template: dict[str, Any]) -> None:
    url = template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "#dashboards:name=${BatchCancellerDashboard}" in url
    assert "region=${AWS::Region}" in url
