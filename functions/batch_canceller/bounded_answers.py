"""Connections whose answers, head and body, must arrive by a set time.

urllib3's read timeout bounds each wait for bytes, not the answer: a gateway that sends its
status line and headers a byte at a time, each inside the timeout, holds `pool.request` for as
long as it likes, before any code of ours runs again. Here every read of an answer waits at
most until the time the calling thread set with `answer_by`, so the whole answer is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_limit = threading.local()


@contextlib.contextmanager
def answer_by(seconds: float) -> Iterator[None]:
    """Answers read by this thread inside the block must be complete within `seconds`."""
    _limit.until = time.monotonic() + seconds
    try:
        yield
    finally:
        _limit.until = None


class _BoundedReader(io.RawIOBase):
    """Reads the socket, each read waiting no longer than the time left for the answer."""

    def __init__(self, sock: socket.socket, until: float) -> None:
        super().__init__()
        self._sock = sock
        self._until = until
        self._timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._until - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer did not arrive in time")
        self._sock.settimeout(left if self._timeout is None else min(self._timeout, left))
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self._timeout)


class _BoundedResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        until = getattr(_limit, "until", None)
        if until is not None:
            self.fp.close()  # only this response's file object; the socket stays open
            self.fp = io.BufferedReader(_BoundedReader(sock, until))


class _BoundedHTTPConnection(HTTPConnection):
    response_class = _BoundedResponse


class _BoundedHTTPSConnection(HTTPSConnection):
    response_class = _BoundedResponse


class _BoundedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _BoundedHTTPConnection


class _BoundedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _BoundedHTTPSConnection


def bounded_pool_manager(**kwargs: Any) -> urllib3.PoolManager:
    """A PoolManager whose connections honour `answer_by`."""
    pool = urllib3.PoolManager(**kwargs)
    pool.pool_classes_by_scheme = {"http": _BoundedHTTPPool, "https": _BoundedHTTPSPool}
    return pool


def read_body(raw: urllib3.BaseHTTPResponse, until: float, max_bytes: int) -> bytes:
    """The whole body, or an error once it passes `max_bytes` or `until` (perf_counter): the
    check that still bounds an answer read through a pool that does not honour `answer_by`."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := raw.read1(65536):
            chunks.append(chunk)
            size += len(chunk)
            _check_progress(size, max_bytes, until)
    except BaseException:
        raw.close()  # what is left unread must not reach the next request on this connection
        raise
    finally:
        raw.release_conn()
    return b"".join(chunks)


def _check_progress(size: int, max_bytes: int, until: float) -> None:
    if size > max_bytes:
        raise urllib3.exceptions.ProtocolError(f"answer larger than {max_bytes} bytes")
    if time.perf_counter() > until:
        raise urllib3.exceptions.ReadTimeoutError(None, "", "answer too slow")  # type: ignore[arg-type]


def parse_json(data: bytes) -> Any:
    """Floats become Decimal so they reach DynamoDB and back exactly as the API wrote them."""

    def reject_constant(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    if not data:
        raise ValueError("empty body")
    try:
        return json.loads(data, parse_float=Decimal, parse_constant=reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def describe_network_error(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    inner = type(reason).__name__ if isinstance(reason, Exception) else None
    return f"{type(exc).__name__}" + (f" ({inner})" if inner else "")
