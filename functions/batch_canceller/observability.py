"""Logger and Metrics, created once per container; a thread-safe tally that workers feed."""

from __future__ import annotations

import threading
from collections import Counter

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "batch-canceller"
NAMESPACE = "BatchCanceller"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# EMF allows 100 values per metric in one document.
MAX_LATENCY_SAMPLES = 100


class Tally:
    """Collects counts and API latencies from worker threads; flushed once per invocation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        # Values of a gauge as they change (InFlightLimit), flushed like the latencies.
        self.samples: dict[str, list[float]] = {}

    def count(self, name: str, value: int = 1) -> None:
        with self._lock:
            self.counts[name] += value

    def sample(self, name: str, value: float) -> None:
        with self._lock:
            self.samples.setdefault(name, []).append(value)

    def api_call(self, operation: str, status: int | None, seconds: float) -> None:
        with self._lock:
            self.counts["ApiCalls"] += 1
            if status == 429:
                self.counts["ApiRateLimited"] += 1
            self.latencies_ms.append(seconds * 1000.0)

    def api_retry(self, operation: str, reason: str) -> None:
        self.count("ApiRetries")
        logger.warning("retrying OpenAI API call", extra={"operation": operation, "why": reason})

    def flush(self, target: Metrics) -> None:
        with self._lock:
            counts, self.counts = self.counts, Counter()
            latencies, self.latencies_ms = self.latencies_ms, []
            samples, self.samples = self.samples, {}
        for name, value in sorted(counts.items()):
            target.add_metric(name=name, unit=MetricUnit.Count, value=value)
        _add_samples(target, "ApiLatency", MetricUnit.Milliseconds, latencies)
        for name, values in sorted(samples.items()):
            _add_samples(target, name, MetricUnit.Count, values)


def _add_samples(target: Metrics, name: str, unit: MetricUnit, values: list[float]) -> None:
    """At most MAX_LATENCY_SAMPLES of them, spread over the invocation (the last kept)."""
    step = max(1, len(values) // MAX_LATENCY_SAMPLES)
    kept = values[::step][: MAX_LATENCY_SAMPLES - 1]
    if values and (not kept or kept[-1] is not values[-1]):
        kept.append(values[-1])
    for sample in kept:
        target.add_metric(name=name, unit=unit, value=sample)


def count_once(name: str, reason: str | None = None) -> None:
    """One count in an EMF document of its own, with a `reason` dimension when given (the
    webhook receiver's answers). It shares no state with `metrics`, whose dimensions are
    process-wide: the local stack runs both functions in one process, at once."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        if reason is not None:
            metric.add_dimension(name="reason", value=reason)
