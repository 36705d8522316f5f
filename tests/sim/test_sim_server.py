"""The listening socket under ``serve_in_thread`` and ``routewatch sim serve``."""

import json
import socket
import time

import pytest

from routewatch.errors import ListenError
from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import listen, serve_in_thread


def test_the_listening_socket_is_tcp_so_asyncio_turns_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on IPPROTO_TCP sockets; else each answer waits ~40 ms."""
    with listen("127.0.0.1", 0) as listener:
        assert listener.proto == socket.IPPROTO_TCP
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_taken_port_is_a_listen_error_naming_the_address() -> None:
    with listen("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: "):
            listen("127.0.0.1", port)


def test_answers_on_a_reused_connection_take_the_simulated_latency() -> None:
    """A simulator served in a thread answers a 2 ms model in a few milliseconds on a
    kept-alive connection too; with Nagle on, each answer after the first took 44 ms."""
    scenario = parse_scenario({"defaults": {"latency_ms": {"fixed": 2}}, "models": {"m": {}}})
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with serve_in_thread(create_app(scenario)) as url:
        host, port = url.removeprefix("http://").split(":")
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        took = []
        with socket.create_connection((host, int(port))) as conn, conn.makefile("rb") as reader:
            # As HTTP clients do (aiohttp, httpx): this side never waits on Nagle.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(10):
                started = time.perf_counter()
                # Head and body in two writes, as HTTP clients send them.
                conn.sendall(request)
                conn.sendall(body)
                assert reader.readline().startswith(b"HTTP/1.1 200")
                length = 0
                while (line := reader.readline()) != b"\r\n":
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                assert json.loads(reader.read(length))["choices"]
                took.append((time.perf_counter() - started) * 1000)
    took.sort()
    assert took[len(took) // 2] < 25, took
