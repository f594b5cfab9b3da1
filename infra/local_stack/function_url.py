"""A Lambda function URL on loopback: each HTTP request becomes a payload-2.0 event, the
handler is called in-process with it and a Lambda context, and its answer becomes the HTTP
response. Generic: any `handler(event, context)` callable."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, Self, cast

from infra.local_stack.function_url_event import FunctionUrl, http_answer, new_url_id, request_event
from infra.local_stack.lambda_context import LocalLambdaContext
from infra.servers import LOOPBACK, BackgroundHTTPServer, ManagedServer

logger = logging.getLogger("infra.local_stack")

Handler = Callable[[dict[str, Any], Any], Any]
# Lambda's synchronous invocation limit; a bigger request never reaches the function.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
_TOO_LARGE = (
    b'{"Message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}'
)
_FUNCTION_ERROR = b"Internal Server Error"


class _UrlHTTPServer(BackgroundHTTPServer):
    def __init__(self, address: tuple[str, int], owner: FunctionUrlServer) -> None:
        self.owner = owner
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("function URL connection from %s failed", client_address, exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "function-url-local/1.0"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._invoke()

    def do_POST(self) -> None:
        self._invoke()

    def do_PUT(self) -> None:
        self._invoke()

    def do_PATCH(self) -> None:
        self._invoke()

    def do_DELETE(self) -> None:
        self._invoke()

    def do_HEAD(self) -> None:
        self._invoke()

    def do_OPTIONS(self) -> None:
        self._invoke()

    def _invoke(self) -> None:
        owner = cast(_UrlHTTPServer, self.server).owner
        body = self._body()
        if body is None:
            self.close_connection = True  # the body is not read: the stream is unusable
            self._send(413, [("content-type", "application/json")], _TOO_LARGE)
            return
        event = request_event(
            owner.url, self.command, self.path, self.headers.items(), body, self.client_address[0]
        )
        status, headers, payload = owner.invoke(event)
        self._send(status, headers, payload)

    def _body(self) -> bytes | None:
        """The request body, by Content-Length or chunked (as AWS takes both); None when it is
        over the limit or its framing is broken."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked_body()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if not 0 <= length <= MAX_REQUEST_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _chunked_body(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(64).split(b";")[0].strip() or b"x", 16)
            except ValueError:
                return None
            if size < 0 or total + size > MAX_REQUEST_BYTES:
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, up to the empty line
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)  # the chunk's CRLF
            total += size

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-requestid", "local")
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the caller went away


class FunctionUrlServer(ManagedServer):
    """`handler` behind an HTTP URL; `invocations` and `errors` count its calls."""

    def __init__(
        self,
        handler: Handler,
        *,
        port: int = 0,
        host: str = LOOPBACK,
        function_name: str = "function-url-local",
        timeout_seconds: float = 3.0,
        region: str = "us-east-1",
    ) -> None:
        self.handler = handler
        self.url = FunctionUrl(new_url_id(), region)
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.invocations = 0
        self.errors = 0
        self._count_lock = threading.Lock()
        self._host, self._requested_port = host, port
        self._server: _UrlHTTPServer | None = None
        self._port: int | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("function URL already serving")
        server = _UrlHTTPServer((self._host, self._requested_port), self)
        self._port = server.port
        self._server = server.start(f"function-url:{self._port}")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("function URL not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def invoke(self, event: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Call the handler as Lambda would; a raised error or a malformed answer is a 502."""
        context = LocalLambdaContext(
            timeout_seconds=self.timeout_seconds, function_name=self.function_name
        )
        with self._count_lock:
            self.invocations += 1
        try:
            answer = http_answer(self.handler(event, context))
        except Exception:
            logger.exception("function URL handler %s failed", self.function_name)
            with self._count_lock:
                self.errors += 1
            return 502, [("content-type", "text/plain")], _FUNCTION_ERROR
        return answer.status, answer.headers, answer.body
