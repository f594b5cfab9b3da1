"""One cold start, in a fresh interpreter: import a handler module, invoke it once, report.

`python tests/bench/cold_child.py MODULE EVENT_JSON RESULT_JSON`. Only the standard library is
imported before the clock starts, so the two variants are timed from the same point.
"""

import importlib
import json
import os
import resource
import sys
import time


class _Context:
    """What Lambda passes as `context` (the attributes Powertools reads)."""

    function_name = "batch-canceller-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:batch-canceller-bench"
    log_group_name = "/aws/lambda/batch-canceller-bench"
    log_stream_name = "bench"

    def __init__(self, timeout_seconds: float) -> None:
        self.aws_request_id = os.urandom(16).hex()  # not uuid: the function imports that itself
        self._ends = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def main() -> int:
    module_name, event_path, result_path = sys.argv[1:4]
    with open(event_path) as source:
        event = json.load(source)
    context = _Context(120.0)
    started = time.perf_counter()
    module = importlib.import_module(module_name)
    imported = time.perf_counter()
    answer = module.lambda_handler(event, context)
    invoked = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "module": module_name,
        "import_seconds": imported - started,
        "invoke_seconds": invoked - imported,
        "total_seconds": invoked - started,
        "peak_rss_kib": usage.ru_maxrss,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "modules_loaded": len(sys.modules),
        "answer": answer,
    }
    with open(result_path, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
