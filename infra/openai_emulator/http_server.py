"""Socket-level HTTP/1.1: parse requests, wait, then answer or abort. No emulator logic."""

from __future__ import annotations

import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from infra.openai_emulator.errors import openai_error
from infra.openai_emulator.wire import Reply, Request, Response
from infra.servers import BackgroundHTTPServer

logger = logging.getLogger("infra.openai_emulator")

MAX_BODY_BYTES = 16 * 1024 * 1024

Responder = Callable[[Request], Reply]


class EmulatorHTTPServer(BackgroundHTTPServer):
    """Answers every request with what `responder` makes of it."""

    def __init__(self, address: tuple[str, int], responder: Responder) -> None:
        self.responder = responder
        super().__init__(address, EmulatorHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients timing out or vanishing mid-answer is expected here, not a server fault.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-emulator/1.0"
    # Headers and body go out in two writes; Nagle plus delayed ACK would add ~40 ms.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _emulator_server(self) -> EmulatorHTTPServer:
        return cast(EmulatorHTTPServer, self.server)

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError as error:
            self.close_connection = True  # the stream position is unknown now
            self._send(openai_error(400, str(error)).response())
            return
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, url.path, query, headers, body)
        try:
            reply = self._emulator_server().responder(request)
        except Exception:
            logger.exception("emulator failed on %s %s", self.command, url.path)
            reply = Reply(openai_error(500, "Emulator error.", type_="server_error").response())
        if reply.delay_seconds > 0:
            time.sleep(reply.delay_seconds)  # per thread, never under the state lock
        if reply.abort == "reset":
            self._reset()
        elif reply.abort == "drop" or reply.response is None:
            self.close_connection = True  # closed with a FIN and no answer at all
        else:
            self._send(reply.response)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        text = self.headers.get("Content-Length")
        if not text:
            return b""
        try:
            length = int(text)
        except ValueError:
            raise ValueError("Invalid Content-Length header.") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ValueError("Request body too large.")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        size_total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError("Invalid chunked body.") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, then the blank line
                    pass
                return b"".join(parts)
            size_total += size
            if size_total > MAX_BODY_BYTES:
                raise ValueError("Request body too large.")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after each chunk

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            if response.content_type is not None:
                self.send_header("Content-Type", response.content_type)
            if response.status != 204:
                self.send_header("Content-Length", str(len(response.body)))
            self.send_header("x-request-id", "req_" + secrets.token_hex(16))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if response.body:
                self.wfile.write(response.body)
        except OSError:
            # The client gave up (e.g. its read timeout fired during an injected delay).
            self.close_connection = True

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST, so the client sees ECONNRESET."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # rfile holds a reference to the socket; the fd only closes once both let go.
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass
