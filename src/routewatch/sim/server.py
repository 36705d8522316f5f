"""Running an ASGI app on a real loopback socket, in a background thread.

Tests, benches and ``routewatch demo`` use this to talk to the simulator over
real HTTP (ASGI transports buffer whole responses, so streaming needs a socket).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from routewatch.errors import ListenError


@contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` until the block exits; yields its base URL, e.g. ``http://127.0.0.1:5123``.

    ``port=0`` picks a free port.

    Raises:
        ListenError: the address cannot be listened on (the port is taken, say).
        RuntimeError: the server did not start within 10 seconds.
    """
    # Bound here rather than by uvicorn, whose bind error ends its thread with a log line.
    sock = listen(host, port)
    # log_config=None: uvicorn's loggers go to the process's handlers (the daemon's JSON
    # lines) instead of a console handler of its own.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="routewatch-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on {host}:{port} did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a ``ListenError`` that says why not.

    It is made with ``IPPROTO_TCP`` explicitly (``socket.create_server`` leaves the
    protocol 0): asyncio sets ``TCP_NODELAY`` only on connections whose socket says
    TCP, and without it every answer on a reused connection waits about 40 ms for a
    delayed ACK (Nagle), which would swamp a simulated latency of a few milliseconds.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listener
