"""FaultProxy: an HTTP proxy in front of a real storage server that fails chosen requests.

Queued faults answer the first matching requests (an error status with a body, or a dropped
connection); everything else is forwarded, and every request is logged with its status, so a
test can count what retried where.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length"}


@dataclass
class Fault:
    status: int | None  # None: drop the connection without answering
    body: bytes = b""
    content_type: str = "application/xml"
    when: Callable[[str, str], bool] = lambda method, path: True


class FaultProxy:
    """Forwards HTTP to a real server, except that queued faults answer matching requests."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []  # method, path, status (0: dropped)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_any(self) -> None:
                proxy.handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def count(self, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for _, _, s in self.log if status is None or s == (status or 0))

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = self._read_body(request)
        method, path = request.command, request.path
        with self.lock:
            fault = next((f for f in self.faults if f.when(method, path)), None)
            if fault is not None:
                self.faults.remove(fault)
            self.log.append((method, path, 0 if fault is None else fault.status or 0))
        if fault is not None and fault.status is None:
            request.close_connection = True  # hang up: the client sees a dropped connection
            return
        if fault is not None and fault.status is not None:
            status, headers, data = fault.status, {"Content-Type": fault.content_type}, fault.body
        else:
            status, headers, data = self._forward(request, body)
            with self.lock:
                self.log[-1] = (method, path, status)
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        if "content-length" not in {k.lower() for k in headers}:
            request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(data)

    @staticmethod
    def _read_body(request: BaseHTTPRequestHandler) -> bytes:
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(request.rfile.readline().split(b";")[0], 16):
                parts.append(request.rfile.read(size))
                request.rfile.readline()
            request.rfile.readline()
            return b"".join(parts)
        return request.rfile.read(int(request.headers.get("Content-Length") or 0))

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            connection.request(request.command, request.path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            out = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
            if request.command == "HEAD" and response.getheader("Content-Length"):
                out["Content-Length"] = response.getheader("Content-Length") or "0"
            return response.status, out, data
        finally:
            connection.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def s3_error(code: str, status: int) -> Fault:
    return Fault(status, f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode())


def gcs_error(status: int) -> Fault:
    body = json.dumps({"error": {"code": status, "message": "injected"}}).encode()
    return Fault(status, body, "application/json")
