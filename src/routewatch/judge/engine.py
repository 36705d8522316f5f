"""Scoring an output by its eval set's criteria: the cache first, then the judge model.

The shell around ``prompt`` and ``verdict``: one call per criterion, structured output
when the judge supports it, a few tries for a parsable verdict, then a judge error that
is stored as such (never a zero). Verdicts are cached by everything that could change
them; a cached verdict costs nothing and is counted as a call saved.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from routewatch.clock import Clock
from routewatch.config import Judge
from routewatch.evalset import EvalSet, Item, Message
from routewatch.judge.prompt import JudgeRequest, render, template_source, verdict_schema
from routewatch.judge.verdict import VerdictError, parse_verdict
from routewatch.providers.base import ChatRequest
from routewatch.providers.openai import OpenAIClient
from routewatch.scoring import cost_usd
from routewatch.store.verdicts import (
    add_judge_spend,
    cached_verdict,
    judge_spend,
    store_verdict,
)

VERDICT_TRIES = 3
"""Calls made for one criterion before giving up on a parsable verdict."""

CANARY_TOLERANCE = 1
"""Grades a canary verdict may stray from its expectation before the judge is suspect:
a one-grade wobble is noise on a 1-5 scale, two grades is a different judge."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """One criterion's outcome for one output."""

    criterion: str
    score: float | None
    """Normalised 0..1; None when the judge gave no usable verdict."""
    raw_score: float | None
    reasoning: str
    error: str | None
    verdict_id: int | None
    cached: bool
    calls: int
    tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryCheck:
    """One canary criterion: what the judge was expected to say and what it said."""

    index: int
    criterion: str
    expected: float
    observed: float | None
    moved: bool
    """The verdict strayed past ``CANARY_TOLERANCE``, or there was none."""
    judgement: Judgement


class JudgeRunner:
    """Judges outputs for one eval set with one configured judge."""

    def __init__(
        self,
        name: str,
        judge: Judge,
        client: OpenAIClient,
        engine: Engine,
        evalset: EvalSet,
        clock: Clock,
    ) -> None:
        self.name = name
        self.judge = judge
        self.client = client
        self.engine = engine
        self.evalset = evalset
        self.clock = clock
        self.template = template_source()
        self.budget_reached = False
        """Set once a call was skipped for the daily budget: the run is partially judged."""
        self._calls = 0
        self._cost = 0.0
        self._reserved = 0.0
        self._template_id = hashlib.sha256(self.template.encode()).hexdigest()

    async def judge_output(self, item: Item, output: str) -> list[Judgement]:
        """Judge ``output`` on every criterion of the eval set, from the cache where it can."""
        return [
            await self._criterion(item.prompt, item.reference, output, name, text, use_cache=True)
            for name, text in self.evalset.criteria.items()
        ]

    async def judge_canaries(self) -> list[CanaryCheck]:
        """Judge every canary of the eval set afresh (never from the cache) and compare."""
        checks = []
        for index, canary in enumerate(self.evalset.canaries):
            for criterion, expected in canary.expect.items():
                judgement = await self._criterion(
                    canary.prompt,
                    canary.reference,
                    canary.output,
                    criterion,
                    self.evalset.criteria[criterion],
                    use_cache=False,
                )
                observed = judgement.raw_score
                checks.append(
                    CanaryCheck(
                        index=index,
                        criterion=criterion,
                        expected=expected,
                        observed=observed,
                        moved=observed is None or abs(observed - expected) > CANARY_TOLERANCE,
                        judgement=judgement,
                    )
                )
        return checks

    def _within_budget(self, chat: ChatRequest) -> float | None:
        """Reserve the estimated cost of one more call, or None if it would pass the budget.

        The estimate is the mean cost of this runner's calls so far, or before any, the
        prompt's size at about four characters a token plus a generous verdict. Calls in
        flight hold their estimate, so concurrent calls cannot all slip under the budget
        together (other processes can still overshoot by what they have in flight).
        """
        budget = self.judge.daily_budget_usd
        if budget is None:
            return 0.0
        if self._calls:
            estimate = self._cost / self._calls
        else:
            chars = sum(len(m["content"]) for m in chat.messages)
            price = self.judge.price
            estimate = cost_usd(chars // 4, 300, price.input_per_mtok, price.output_per_mtok)
        spent = judge_spend(self.engine, judge=self.name, day=self.clock.now().date())
        if spent + self._reserved + estimate > budget:
            self.budget_reached = True
            return None
        self._reserved += estimate
        return estimate

    def _spent(self, reserved: float, tokens_in: int, tokens_out: int) -> None:
        price = self.judge.price
        cost = cost_usd(tokens_in, tokens_out, price.input_per_mtok, price.output_per_mtok)
        self._reserved -= reserved
        self._calls += 1
        self._cost += cost
        add_judge_spend(
            self.engine, judge=self.name, day=self.clock.now().date(), cost_usd=cost, calls=1
        )

    def cache_key(
        self,
        prompt: tuple[Message, ...],
        reference: str | None,
        output: str,
        criterion: str,
        text: str,
    ) -> str:
        """The verdict cache key: a hash of everything a verdict depends on.

        Judge model and params, template, criterion, scale, structured mode, the item's
        prompt and reference, and the output.
        """
        material = {
            "model": self.judge.model,
            "params": self.judge.params,
            "structured": self.judge.structured_output,
            "template": self._template_id,
            "criterion": [criterion, text],
            "scale": list(self.evalset.scale),
            "messages": [[m.role, m.content] for m in prompt],
            "reference": reference,
            "output": output,
        }
        canonical = json.dumps(material, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    async def _criterion(
        self,
        prompt: tuple[Message, ...],
        reference: str | None,
        output: str,
        name: str,
        text: str,
        *,
        use_cache: bool,
    ) -> Judgement:
        key = self.cache_key(prompt, reference, output, name, text)
        hit = cached_verdict(self.engine, key) if use_cache else None
        if hit is not None:
            return Judgement(
                criterion=name,
                score=hit.score,
                raw_score=hit.raw_score,
                reasoning=hit.reasoning,
                error=None,
                verdict_id=hit.id,
                cached=True,
                calls=0,
                tokens=0,
                cost_usd=0.0,
            )
        scale = self.evalset.scale
        request = JudgeRequest(
            criterion=name,
            criterion_text=text,
            scale=scale,
            messages=prompt,
            reference=reference,
            output=output,
        )
        params: dict[str, Any] = dict(self.judge.params)
        if self.judge.structured_output:
            params["response_format"] = verdict_schema(scale)
        chat = ChatRequest(
            model=self.judge.model,
            messages=render(self.template, request, structured=self.judge.structured_output),
            params=params,
        )
        calls = tokens_in = tokens_out = 0
        error = "no attempt made"
        for _ in range(VERDICT_TRIES):
            reserved = self._within_budget(chat)
            if reserved is None:
                error = (
                    f"judge budget reached: {self.name} may spend "
                    f"${self.judge.daily_budget_usd:.2f} a day; judging resumes tomorrow (UTC)"
                )
                break
            result = await self.client.complete(chat)
            calls += 1
            tokens_in += result.tokens_in or 0
            tokens_out += result.tokens_out or 0
            self._spent(reserved, result.tokens_in or 0, result.tokens_out or 0)
            if not result.ok:
                error = f"judge call failed: {result.error_class}: {result.error_message}"
                break  # the client already retried what could pass
            try:
                verdict = parse_verdict(result.output or "", scale)
            except VerdictError as exc:
                error = str(exc)
                continue
            cost = cost_usd(
                tokens_in,
                tokens_out,
                self.judge.price.input_per_mtok,
                self.judge.price.output_per_mtok,
            )
            score = verdict.normalised(scale)
            verdict_id = None
            if use_cache:
                verdict_id = store_verdict(
                    self.engine,
                    cache_key=key,
                    judge=self.name,
                    model=self.judge.model,
                    criterion=name,
                    raw_score=verdict.score,
                    score=score,
                    reasoning=verdict.reasoning,
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                    cost_usd=cost,
                    now=self.clock.now(),
                )
            return Judgement(
                criterion=name,
                score=score,
                raw_score=verdict.score,
                reasoning=verdict.reasoning,
                error=None,
                verdict_id=verdict_id,
                cached=False,
                calls=calls,
                tokens=tokens_in + tokens_out,
                cost_usd=cost,
            )
        cost = cost_usd(
            tokens_in, tokens_out, self.judge.price.input_per_mtok, self.judge.price.output_per_mtok
        )
        return Judgement(
            criterion=name,
            score=None,
            raw_score=None,
            reasoning="",
            error=error,
            verdict_id=None,
            cached=False,
            calls=calls,
            tokens=tokens_in + tokens_out,
            cost_usd=cost,
        )
