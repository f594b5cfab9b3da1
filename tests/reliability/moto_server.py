"""`python -m tests.reliability.moto_server`: moto in server mode on a free port, in its own process.

Its own process (not a thread of the runner) so AWS emulation gets a CPU of its own instead of
competing for the runner's GIL with the fault proxy. Prints one line with the URL, then serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from moto.server import ThreadedMotoServer

from infra.moto_patches import prepare_moto

READY_PREFIX = "moto listening on "


def main() -> int:
    prepare_moto()
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
