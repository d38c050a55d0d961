"""A local http server for weights downloads that injects one fault per URL path (tests only).

The first path segment picks the behaviour; the rest is free (it names the file):

    /good/...           the file (PAYLOAD), with its Content-Length
    /truncate/...       the full Content-Length, then TRUNCATED_BYTES bytes and a closed connection
    /truncate-once/...  truncated on the first request for the path, the file afterwards
    /unsized-short/...  TRUNCATED_BYTES bytes and no Content-Length: a cut only a pin can see
    /corrupt/...        as many bytes as the file, the first one changed
    /corrupt-once/...   corrupted on the first request, the file afterwards
    /fail-once/...      503 on the first request, the file afterwards
    /busy/...           503 every time
    /reset-once/...     the connection reset (TCP RST) before any response, the first time
    /stall-once/...     silent for STALL_S on the first request (a client timeout), then the file
    /forbidden/...      403
    anything else       404
"""

import contextlib
import http.server
import socket
import struct
import threading
import time
from collections.abc import Iterator

PAYLOAD = b"not really a checkpoint, but bytes all the same" * 1000
CORRUPTED = bytes([PAYLOAD[0] ^ 0xFF]) + PAYLOAD[1:]  # same length, one byte different
TRUNCATED_BYTES = 100
STALL_S = 1.0


class FaultyHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD or a fault, by path; every request path is appended to ``requests``."""

    requests: list[str]  # set per server by WeightsServer

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.requests.append(self.path)
        first = self.requests.count(self.path) == 1
        mode = self.path.split("/")[1]
        if mode == "good" or (mode.endswith("-once") and not first):
            self.send_body(PAYLOAD)
        elif mode in ("truncate", "truncate-once"):
            self.send_body(PAYLOAD[:TRUNCATED_BYTES], length=len(PAYLOAD))
            self.close_connection = True  # the server goes away mid-file
        elif mode == "unsized-short":
            self.send_body(PAYLOAD[:TRUNCATED_BYTES], length=None)
            self.close_connection = True  # without a length, the close is the end of the body
        elif mode in ("corrupt", "corrupt-once"):
            self.send_body(CORRUPTED)
        elif mode in ("fail-once", "busy"):
            self.send_error(503)
        elif mode == "reset-once":
            # linger 0: closing sends a TCP reset instead of an orderly shutdown
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif mode == "stall-once":
            time.sleep(STALL_S)  # the client has given up by now; nothing more to send
            self.close_connection = True
        elif mode == "forbidden":
            self.send_error(403)
        else:
            self.send_error(404)

    def send_body(self, body: bytes, *, length: int | None = -1) -> None:
        """A 200 with ``body``; Content-Length is ``length`` (-1: the body's, None: no header)."""
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(len(body) if length == -1 else length))
        self.end_headers()
        self.wfile.write(body)

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the reset and stall modes closed the socket
            super().finish()

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


class WeightsServer:
    """A threaded FaultyHandler server on 127.0.0.1 (a free port); ``url`` is its base URL."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        handler = type("Handler", (FaultyHandler,), {"requests": self.requests})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True  # a stalled handler must not hold up the test run
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        """Stop serving and close the port: later connections are refused."""
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)


@contextlib.contextmanager
def serving() -> Iterator[WeightsServer]:
    """A running WeightsServer, stopped on exit."""
    server = WeightsServer()
    try:
        yield server
    finally:
        server.stop()
