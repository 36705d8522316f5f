"""A judge's daily budget as one process sees it: reserve before a call, record after.

Shared by output judging (``engine``) and pairwise mode (``pairwise``), so both count
against ``judges.<name>.daily_budget_usd`` the same way. The day's spend is read and
written from worker threads: a route's calls are in flight meanwhile, and an event loop
blocked on the database would add the wait to their measured latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy import Engine

from routewatch.config import Judge
from routewatch.providers.base import CallResult, ChatRequest
from routewatch.providers.openai import OpenAIClient
from routewatch.scoring import cost_usd
from routewatch.store.verdicts import add_judge_spend, judge_spend, raise_budget_event

T = TypeVar("T")

ANSWER_TOKENS_GUESS = 300
"""Completion tokens assumed for the first call's estimate: a generous verdict."""


class DailyBudget:
    """Reserves and records one judge's spend for the UTC day of each call.

    Args:
        engine: Where the day's spend is kept (shared by every process).
        name: The judge's name in ``routewatch.yaml``.
        judge: Its configuration (price and ``daily_budget_usd``).
        now: The clock of the calls.
        alert_targets: Where the ``judge.budget`` event goes (``Alerts.targets()``).
    """

    def __init__(
        self,
        engine: Engine,
        name: str,
        judge: Judge,
        now: Callable[[], datetime],
        alert_targets: Sequence[str] = (),
    ) -> None:
        self.engine = engine
        self.name = name
        self.judge = judge
        self.now = now
        self.alert_targets = alert_targets
        self.reached = False
        """Set once a call was refused: what it was for is partially judged."""
        self._calls = 0
        self._cost = 0.0
        self._reserved = 0.0
        self._lock = asyncio.Lock()
        """Taken to check the budget and to release a reservation, so that every call's
        cost is, at each check, in the day's stored spend or still reserved (or both)."""

    async def reserve(self, chat: ChatRequest) -> float | None:
        """Reserve the estimated cost of one more call, or None if it would pass the budget.

        The estimate is the mean cost of the calls so far, or before any, the prompt's
        size at about four characters a token plus a generous answer. Calls in flight
        hold their estimate, so concurrent calls cannot all slip under the budget
        together (other processes can still overshoot by what they have in flight).
        The first refusal raises ``judge.budget``, once per UTC day and judge, whichever
        run or process gets there first.
        """
        budget = self.judge.daily_budget_usd
        if budget is None:
            return 0.0
        price = self.judge.price
        if self._calls:
            estimate = self._cost / self._calls
        else:
            chars = sum(len(m["content"]) for m in chat.messages)
            estimate = cost_usd(
                chars // 4, ANSWER_TOKENS_GUESS, price.input_per_mtok, price.output_per_mtok
            )
        now = self.now().astimezone(UTC)
        async with self._lock:
            spent = await asyncio.to_thread(
                judge_spend, self.engine, judge=self.name, day=now.date()
            )
            if spent + self._reserved + estimate > budget:
                if not self.reached:
                    await asyncio.to_thread(
                        raise_budget_event,
                        self.engine,
                        judge=self.name,
                        day=now.date(),
                        spent_usd=spent,
                        budget_usd=budget,
                        targets=self.alert_targets,
                        now=now,
                    )
                self.reached = True
                return None
            self._reserved += estimate
            return estimate

    async def record(self, reserved: float, tokens_in: int, tokens_out: int) -> float:
        """Add the call's actual cost to the day, then release its reservation; returns it.

        The reservation is held until the cost is stored: a check in between counts the
        call once too often, never once too few.
        """
        price = self.judge.price
        cost = cost_usd(tokens_in, tokens_out, price.input_per_mtok, price.output_per_mtok)
        self._calls += 1
        self._cost += cost
        day = self.now().astimezone(UTC).date()
        try:
            await asyncio.to_thread(
                add_judge_spend, self.engine, judge=self.name, day=day, cost_usd=cost, calls=1
            )
        finally:
            async with self._lock:
                self._reserved -= reserved
        return cost


@dataclass(frozen=True, slots=True, kw_only=True)
class Asked(Generic[T]):
    """What asking a judge up to a few times gave: a parsed answer, or why there is none."""

    value: T | None
    result: CallResult | None
    """The call the value was parsed from (its ``logprobs``, say); else the last one."""
    error: str | None
    calls: int
    tokens_in: int
    tokens_out: int
    unreadable: bool = False
    """The judge answered, but no answer could be read: not a failed call or the budget."""


async def ask(
    client: OpenAIClient,
    budget: DailyBudget,
    chat: ChatRequest,
    parse: Callable[[str], T],
    *,
    tries: int,
    refused: str,
) -> Asked[T]:
    """Ask ``chat`` until ``parse`` reads the answer, at most ``tries`` times, within budget.

    ``parse`` raises ``ValueError`` (``VerdictError``, ``PreferenceError``) for an answer it
    cannot read; that answer is asked again. A failed call is not: the client already
    retried what could pass. ``refused`` ends the error when the budget stops a call.
    """
    calls = tokens_in = tokens_out = 0
    error = "no attempt made"
    unreadable = False
    result: CallResult | None = None
    for _ in range(tries):
        reserved = await budget.reserve(chat)
        if reserved is None:
            error = (
                f"judge budget reached: {budget.name} may spend "
                f"${budget.judge.daily_budget_usd:.2f} a day; {refused}"
            )
            break
        result = await client.complete(chat)
        calls += 1
        tokens_in += result.tokens_in or 0
        tokens_out += result.tokens_out or 0
        await budget.record(reserved, result.tokens_in or 0, result.tokens_out or 0)
        if not result.ok:
            error = f"judge call failed: {result.error_class}: {result.error_message}"
            unreadable = False
            break
        try:
            value = parse(result.output or "")
        except ValueError as exc:
            # Labelled as failed calls and the budget are, wherever it is shown.
            error = f"judge reply unreadable: {exc}"
            unreadable = True
            continue
        return Asked(
            value=value,
            result=result,
            error=None,
            calls=calls,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
    return Asked(
        value=None,
        result=result,
        error=error,
        calls=calls,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        unreadable=unreadable,
    )
