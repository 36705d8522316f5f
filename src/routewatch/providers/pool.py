"""One client per provider, shared by every route and judge that names it.

The runner opens a ``ProviderPool`` for a run and asks it for ``client(name)``; because
the client carries the provider's ``ProviderLimits``, routes and judges on one provider
share its concurrency and request rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Self

from routewatch.config import Provider
from routewatch.providers.openai import OpenAIClient


class ProviderPool:
    """Creates each provider's ``OpenAIClient`` on first use and closes them all.

    Args:
        providers: Provider configurations by name, as in ``Config.providers``.
        env: Where API keys are read, when a call is made.
    """

    def __init__(self, providers: Mapping[str, Provider], env: Mapping[str, str]) -> None:
        self._providers = providers
        self._env = env
        self._clients: dict[str, OpenAIClient] = {}
        self._closed = False

    def client(self, name: str) -> OpenAIClient:
        """The client of provider ``name``, the same one on every call.

        Raises:
            KeyError: no provider has that name.
            RuntimeError: the pool is closed.
        """
        if self._closed:
            raise RuntimeError("the provider pool is closed")
        client = self._clients.get(name)
        if client is None:
            if name not in self._providers:
                known = ", ".join(sorted(self._providers)) or "(none defined)"
                raise KeyError(f"unknown provider {name!r}; known: {known}")
            client = OpenAIClient(name, self._providers[name], self._env)
            self._clients[name] = client
        return client

    async def aclose(self) -> None:
        """Close every client created so far; the pool cannot be used afterwards."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
