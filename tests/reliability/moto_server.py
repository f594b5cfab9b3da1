"""`python -m tests.reliability.moto_server`: moto in server mode on a free port, in its own process.

Its own process (not a thread of the runner) so AWS emulation gets a CPU of its own instead of
competing for the runner's GIL with the fault proxy. Prints one line with the URL, then serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import datetime
import functools
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from moto.server import ThreadedMotoServer

READY_PREFIX = "moto listening on "


def _speed_up_moto() -> None:
    """Per-request costs of moto's server that would dominate a long run. Each replacement
    returns exactly what the original does, so they change nothing but speed."""
    import jsonpath_ng.ext
    import moto.backends
    import moto.sqs.models

    # Patched modules, typed loosely: these are their internals, not their interfaces.
    jsonpath: Any = jsonpath_ng.ext
    backends: Any = moto.backends
    sqs_models: Any = moto.sqs.models
    # A JSONPath parser (yacc tables) is built for every path of every event delivered to a
    # target: ~40 ms per event.
    jsonpath.parse = functools.lru_cache(maxsize=256)(jsonpath.parse)
    # Every request lists moto's package directory and stats each entry to route itself.
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    # SQS scans the whole queue (twice per message) on every send and receive, asking the
    # clock for each message through datetime arithmetic; the plain clock is ~10x cheaper.
    slow_seconds = sqs_models.unix_time

    def unix_time(dt: datetime.datetime | None = None) -> float:
        return time.time() if dt is None else float(slow_seconds(dt))

    def unix_time_millis(dt: datetime.datetime | None = None) -> float:
        return unix_time(dt) * 1000.0

    sqs_models.unix_time = unix_time
    sqs_models.unix_time_millis = unix_time_millis


def main() -> int:
    _speed_up_moto()
    # werkzeug logs every request; thousands a second would only slow the run down.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
        while not stop.wait(0.5):  # short waits keep signal handling prompt
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
