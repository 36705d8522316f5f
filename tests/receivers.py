"""A local HTTP receiver for alert tests: records every request, can play "down"."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """State shared with the handler: what arrived, and how to answer."""

    url: str = ""
    status: int = 200
    """Answer to every request while ``fail_next`` is 0."""
    fail_next: int = 0
    """Answer this many requests with 503 first."""
    echo: bool = False
    """Quote the request's path and query in a failure's body, as some servers do."""
    delay_s: float = 0.0
    """Wait this long before answering."""
    drip_s: float = 0.0
    """Send the answer's body a byte at a time, this long apart."""
    body: bytes | None = None
    """A failure's body, instead of the usual one."""
    answer_headers: dict[str, str] = field(default_factory=dict)
    """Headers added to every answer (``Retry-After``, say)."""
    requests: list[Received] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> list[Received]:
        """Requests that were answered with a 2xx (what counts as a delivery)."""
        with self.lock:
            return [
                r for r in self.requests if r.headers.get("x-test-answered", "").startswith("2")
            ]


@contextmanager
def receiver(status: int = 200, fail_next: int = 0, echo: bool = False) -> Iterator[Receiver]:
    """A receiver on a free loopback port, stopped at the end."""
    state = Receiver(status=status, fail_next=fail_next, echo=echo)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with state.lock:
                if state.fail_next > 0:
                    state.fail_next -= 1
                    code = 503
                    state.refused += 1
                else:
                    code = state.status
                headers = {k.lower(): v for k, v in self.headers.items()}
                headers["x-test-answered"] = str(code)
                state.requests.append(Received(path=self.path, headers=headers, body=body))
            time.sleep(state.delay_s)
            failure = f"no such hook: {self.path}" if state.echo else "unavailable"
            answer = b"ok" if code < 300 else (state.body or failure.encode())
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            for name, value in state.answer_headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not state.drip_s:
                self.wfile.write(answer)
                return
            for i in range(len(answer)):
                try:
                    self.wfile.write(answer[i : i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
                time.sleep(state.drip_s)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
