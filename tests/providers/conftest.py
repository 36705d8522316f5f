"""Fixtures for the provider tests: an event loop backend and fakes served on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from provider_fakes import FakeProvider
from starlette.types import Receive, Scope, Send

from routewatch.sim.server import serve_in_thread


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class _Switchboard:
    """One server for the session, answering as whichever fake the running test set."""

    fake: FakeProvider | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.fake is not None
        await self.fake.app(scope, receive, send)


@pytest.fixture(scope="session")
def _switchboard() -> Iterator[tuple[_Switchboard, str]]:
    board = _Switchboard()
    with serve_in_thread(board) as url:
        yield board, url + "/v1"


@pytest.fixture
def serve(_switchboard: tuple[_Switchboard, str]) -> Iterator[Callable[[FakeProvider], str]]:
    """Answer as ``fake`` for this test; returns the base URL (up to ``/v1``)."""
    board, url = _switchboard

    def use(fake: FakeProvider) -> str:
        board.fake = fake
        return url

    yield use
    board.fake = None
