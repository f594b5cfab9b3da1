"""Threaded HTTP/1.1 reverse proxy that counts AWS operations and injects faults."""

from __future__ import annotations

import http.client
import json
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import urlsplit

from infra.servers import BackgroundHTTPServer, ManagedServer

from .faults import (
    CannedResponse,
    Rule,
    RuleState,
    choose_failed,
    error_response,
    http_error_response,
    merge_put_events,
    throttle_response,
)
from .operations import Request, operation_of

logger = logging.getLogger("infra.fault_proxy")

# Per-hop headers (RFC 9110 7.6.1) describe one connection and must not be relayed.
# Content-Length is recomputed because put_events_partial rewrites bodies; Expect is
# dropped because the client's 100-continue was already answered by this proxy.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    }
)
_CHUNK = 64 * 1024
_UPSTREAM_TIMEOUT = 60.0
_CLIENT_IDLE_TIMEOUT = 120.0


class _UpstreamResponse:
    """An upstream answer: headers now, body streamed later (or already read)."""

    def __init__(self, response: http.client.HTTPResponse, body: bytes | None = None) -> None:
        self.response = response
        self.status = response.status
        self.headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        self.body = body


class _Server(BackgroundHTTPServer):
    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-response is routine under fault injection; not a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            logger.debug("client %s went away", client_address, exc_info=True)
        else:
            logger.exception("fault proxy failed serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so botocore reuses connections like on AWS
    timeout = _CLIENT_IDLE_TIMEOUT
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._release_upstream()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # discard trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        request = Request(
            method=self.command,
            path=self.path,
            headers=tuple(self.headers.items()),
            body=self._read_body(),
        )
        proxy = self.server.proxy
        operation = operation_of(request)
        state = proxy._select_rule(operation)
        if state is None:
            self._relay(request)
            return
        rule = state.rule
        logger.info("injecting %s into %s", rule.action, operation)
        if rule.action == "http_error":
            self._send_canned(http_error_response(request, rule))
        elif rule.action == "throttle":
            self._send_canned(throttle_response(request, rule))
        elif rule.action == "drop":
            self.close_connection = True  # no bytes written: the client sees EOF
        elif rule.action == "delay":
            time.sleep(rule.delay_seconds)
            self._relay(request)
        elif rule.action == "forward_then_drop":
            answer = proxy._forward(request)
            if answer is not None:
                answer.response.read()  # let the write finish before hanging up
            self.close_connection = True
        else:  # put_events_partial
            self._put_events_partial(request, state)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle  # noqa: N815

    def _relay(self, request: Request) -> None:
        answer = self.server.proxy._forward(request)
        if answer is None:
            self._send_canned(error_response(request, 502, "BadGateway", "upstream unreachable"))
        else:
            self._send_upstream(answer, request.method)

    def _send_head(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _send_canned(self, canned: CannedResponse) -> None:
        self._send_head(canned.status, list(canned.headers), len(canned.body))
        self.wfile.write(canned.body)

    def _send_upstream(self, answer: _UpstreamResponse, method: str) -> None:
        response = answer.response
        no_body = method == "HEAD" or answer.status in (204, 304) or answer.status < 200
        if answer.body is not None:
            self._send_head(answer.status, answer.headers, len(answer.body))
            self.wfile.write(answer.body)
        elif no_body:
            length = response.getheader("Content-Length")
            self._send_head(answer.status, answer.headers, None if length is None else int(length))
            response.read()
        elif response.length is not None:  # known length: stream it through
            self._send_head(answer.status, answer.headers, response.length)
            while chunk := response.read(_CHUNK):
                self.wfile.write(chunk)
        else:  # chunked or close-delimited upstream body: buffer to give a length
            body = response.read()
            self._send_head(answer.status, answer.headers, len(body))
            self.wfile.write(body)

    def _put_events_partial(self, request: Request, state: RuleState) -> None:
        proxy = self.server.proxy
        try:
            payload = json.loads(request.body)
            entries = list(payload["Entries"])
        except (ValueError, KeyError, TypeError):
            logger.warning("put_events_partial: unparsable PutEvents body, forwarding as is")
            self._relay(request)
            return
        failed = proxy._choose_failed(state, len(entries))
        kept = [entry for i, entry in enumerate(entries) if i not in failed]
        upstream_entries: list[dict[str, Any]] = []
        if kept:
            body = json.dumps({**payload, "Entries": kept}).encode()
            forwarded = Request(request.method, request.path, request.headers, body)
            answer = proxy._forward(forwarded)
            if answer is None:
                self._send_canned(error_response(request, 502, "BadGateway", "upstream down"))
                return
            raw = answer.response.read()
            if answer.status != 200:  # a real upstream error wins over the injected one
                answer.body = raw
                self._send_upstream(answer, request.method)
                return
            upstream_entries = list(json.loads(raw)["Entries"])
        result = merge_put_events(len(entries), failed, upstream_entries)
        headers = (
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        )
        self._send_canned(CannedResponse(200, headers, json.dumps(result).encode()))


class FaultProxy(ManagedServer):
    """Reverse proxy in front of a moto server; see the package docstring."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream!r}")
        self.upstream = upstream
        self._upstream_addr = (parts.hostname, parts.port or 80)
        self._address = (host, port)
        self._lock = threading.Lock()
        self._rules: list[RuleState] = []
        self._calls: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._local = threading.local()
        self._upstreams: set[http.client.HTTPConnection] = set()
        self._server: _Server | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = _Server(self._address, self).start("fault-proxy")
        logger.info("fault proxy %s -> %s", self.url, self.upstream)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        with self._lock:
            upstreams, self._upstreams = set(self._upstreams), set()
        for conn in upstreams:
            conn.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy is not running; call start() first")
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    # -- rules and counters --------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(RuleState(rule))
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def calls(self) -> Counter[str]:
        """Snapshot: operation -> requests seen, faulted ones included."""
        with self._lock:
            return Counter(self._calls)

    @property
    def faults_injected(self) -> Counter[str]:
        """Snapshot: ``"<operation>:<action>"`` -> times injected."""
        with self._lock:
            return Counter(self._faults)

    def reset_counts(self) -> None:
        with self._lock:
            self._calls.clear()
            self._faults.clear()

    def _select_rule(self, operation: str) -> RuleState | None:
        # Counting and rule selection share one lock so counts and `times` stay exact
        # under concurrent clients.
        with self._lock:
            self._calls[operation] += 1
            for state in self._rules:
                if state.try_fire(operation):
                    self._faults[f"{operation}:{state.rule.action}"] += 1
                    return state
        return None

    def _choose_failed(self, state: RuleState, count: int) -> set[int]:
        with self._lock:  # the rule's RNG is shared with concurrent probability draws
            return choose_failed(count, state.rule.fail_fraction, state.rng)

    # -- connections ---------------------------------------------------------------------

    def _release_upstream(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._upstreams.discard(conn)
            conn.close()

    def _upstream_conn(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's cached upstream connection, and whether it is being reused."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        conn = http.client.HTTPConnection(*self._upstream_addr, timeout=_UPSTREAM_TIMEOUT)
        self._local.conn = conn
        with self._lock:
            self._upstreams.add(conn)
        return conn, False

    def _forward(self, request: Request) -> _UpstreamResponse | None:
        """Send ``request`` upstream; the caller must consume the response body.

        A reused keep-alive connection the upstream already closed fails on first use,
        so that case is retried once on a fresh connection. None means unreachable.
        """
        for _attempt in range(2):
            conn, reused = self._upstream_conn()
            try:
                # putrequest/putheader keep header order, case and duplicates; Host is
                # passed through untouched (moto routes on Authorization/X-Amz-Target).
                conn.putrequest(
                    request.method, request.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in request.headers:
                    if name.lower() not in _HOP_BY_HOP:
                        conn.putheader(name, value)
                if request.header("Host") is None:
                    conn.putheader("Host", "{}:{}".format(*self._upstream_addr))
                if request.body or request.method in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(len(request.body)))
                conn.endheaders(request.body or None)
                return _UpstreamResponse(conn.getresponse())
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._release_upstream()
                if not reused:
                    logger.warning("upstream %s failed: %r", self.upstream, exc)
                    return None
        return None
