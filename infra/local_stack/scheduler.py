"""EventBridge Scheduler, emulated: moto stores schedules but never fires them; this does.

Supports `at(...)` one-time schedules (sent once when due, deleted afterwards when their
ActionAfterCompletion is DELETE) and `rate(N unit)` recurring ones (every N units from the time
the local stack first saw them). Targets must be SQS queues, as in template.yaml.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_AT = re.compile(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)")
_RATE = re.compile(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class FiredSchedule:
    name: str
    group: str
    at: datetime
    body: str


@dataclass
class LocalScheduler:
    scheduler: Any
    sqs: Any
    queue_urls_by_arn: dict[str, str]
    clock: Callable[[], float] = time.time
    fired: list[FiredSchedule] = field(default_factory=list)
    _last_fired: dict[str, float] = field(default_factory=dict)

    def tick(self) -> list[FiredSchedule]:
        """Fire every schedule that is due now; returns what fired."""
        now = self.clock()
        fired: list[FiredSchedule] = []
        for group in self._groups():
            for summary in self._schedules(group):
                if summary.get("State") == "DISABLED":
                    continue
                schedule = self.scheduler.get_schedule(Name=summary["Name"], GroupName=group)
                if schedule["Target"]["Arn"] not in self.queue_urls_by_arn:
                    continue  # another stack's (moto's state is per process, not per server)
                if self._due(schedule, now):
                    fired.append(self._fire(schedule, group, now))
        self.fired.extend(fired)
        return fired

    def _groups(self) -> list[str]:
        groups = self.scheduler.list_schedule_groups().get("ScheduleGroups", [])
        names = [g["Name"] for g in groups]
        return names if "default" in names else ["default", *names]

    def _schedules(self, group: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"GroupName": group}
            if token:
                kwargs["NextToken"] = token
            page = self.scheduler.list_schedules(**kwargs)
            found.extend(page.get("Schedules", []))
            token = page.get("NextToken")
            if not token:
                return found

    def _due(self, schedule: dict[str, Any], now: float) -> bool:
        expression = schedule["ScheduleExpression"]
        key = f"{schedule.get('GroupName', 'default')}/{schedule['Name']}"
        at = _AT.fullmatch(expression)
        if at:
            # Scheduler's at() is wall-clock time in the schedule's timezone; ours are UTC.
            when = datetime.fromisoformat(at.group(1)).replace(tzinfo=UTC).timestamp()
            return now >= when and key not in self._last_fired
        rate = _RATE.fullmatch(expression)
        if rate:
            period = int(rate.group(1)) * _UNIT_SECONDS[rate.group(2).rstrip("s")]
            last = self._last_fired.setdefault(key, now)
            return now - last >= period
        return False  # cron() is not emulated locally

    def _fire(self, schedule: dict[str, Any], group: str, now: float) -> FiredSchedule:
        target = schedule["Target"]
        body = target.get("Input") or "{}"
        self.sqs.send_message(QueueUrl=self.queue_urls_by_arn[target["Arn"]], MessageBody=body)
        self._last_fired[f"{group}/{schedule['Name']}"] = now
        if schedule.get("ActionAfterCompletion") == "DELETE" and _AT.fullmatch(
            schedule["ScheduleExpression"]
        ):
            self.scheduler.delete_schedule(Name=schedule["Name"], GroupName=group)
        return FiredSchedule(schedule["Name"], group, datetime.fromtimestamp(now, UTC), body)
