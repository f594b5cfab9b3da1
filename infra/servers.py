"""Starting and stopping the local servers the project runs for tests, the demo and the bench.

- `ManagedServer`: `start()` and `stop()`, and `with` for both.
- `BackgroundHTTPServer`: a threaded stdlib HTTP server served from a daemon thread, whose
  `stop()` also wakes handlers parked on idle keep-alive connections and releases the port.
- `moto_server()`: moto in server mode on loopback, for the length of a `with` block.
- `wait_until_answering()` and `stop_process()`: a server in a child process, ready once its
  URL gives any HTTP answer; stopped with SIGTERM, then SIGKILL if it lingers.
- `StopSignal`: a server's `__main__` serving until SIGINT, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from socketserver import BaseRequestHandler
from types import FrameType, TracebackType
from typing import Any, Self

from infra.moto_patches import prepare_moto

# How often serve_forever checks for shutdown: short, so stop() (and test teardown) is fast.
POLL_INTERVAL_SECONDS = 0.05
THREAD_JOIN_SECONDS = 5.0
LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """A server process exited, or did not answer, before it was ready."""


class ManagedServer(ABC):
    """A server (or a set of them) that `start()` starts and `stop()` stops; `with` does both."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class BackgroundHTTPServer(ThreadingHTTPServer):
    """A thread per connection, keep-alive, a deep accept backlog for bursts of clients;
    `start()` serves from a daemon thread, `stop()` ends it."""

    daemon_threads = True
    # stop() must not wait for handlers still busy (e.g. sleeping out an injected delay).
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self, thread_name: str) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{thread_name} already serving")
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_SECONDS},
            name=thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake handler threads parked on open connections, free the port."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self.shutdown()
        self.close_connections()
        self.server_close()
        thread.join(timeout=THREAD_JOIN_SECONDS)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)

    # Connections are tracked from accept until their handler is done with them.

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)


@contextlib.contextmanager
def moto_server(host: str = LOOPBACK, port: int = 0) -> Iterator[str]:
    """moto in server mode (port 0 picks a free one) while the block runs; yields its URL.
    Its DynamoDB writes are atomic, as the real service's are (see infra.moto_patches)."""
    from moto.server import ThreadedMotoServer

    prepare_moto()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        bound_host, bound_port = server.get_host_and_port()
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.stop()


def wait_until_answering(
    url: str, process: subprocess.Popen[Any], timeout: float, *, name: str
) -> None:
    """Poll `url` until any HTTP answer comes back (an error status too: the server is up).

    Raises ServerStartError if `process` exits first or nothing answers within `timeout`.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise ServerStartError(f"{name} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1.0):  # noqa: S310 - a local http URL
                return
        except urllib.error.HTTPError as answer:
            answer.close()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise ServerStartError(f"{name} did not answer within {timeout:.0f}s")


def stop_process(process: subprocess.Popen[Any], grace_seconds: float) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `grace_seconds`; reaped either way.
    Returns its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


# SIGHUP: the terminal it runs in was closed, which should stop it as cleanly as Ctrl-C
# (its default action ends the process at once, with nothing said or tidied).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopSignal:
    """From construction on, SIGINT, SIGTERM and SIGHUP no longer end the process: they end
    `wait()`."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def wait(self) -> None:
        # Short waits keep the main thread responsive to signals on every platform.
        while not self._stop.wait(0.5):
            pass
