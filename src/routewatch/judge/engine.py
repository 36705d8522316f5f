"""Scoring an output by its eval set's criteria: the cache first, then the judge model.

The shell around ``prompt`` and ``verdict``: ``judge_samples`` calls per criterion, all
of an output's criteria at once, structured output when the judge supports it, a few
tries for a parsable verdict, then a judge error that is stored as such (never a zero).
Verdicts are cached by everything that could change them; a cached verdict costs nothing
and is counted as a call saved. Past the daily budget no call is made, and the first
runner to find the budget spent raises ``judge.budget``. With ``logprobs`` on, each
sample's grade is its probability-weighted grade where the reply allows it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from routewatch.clock import Clock
from routewatch.config import MAX_TOP_LOGPROBS, Judge
from routewatch.evalset import EvalSet, Item, Message
from routewatch.judge.budget import DailyBudget, ask
from routewatch.judge.prompt import JudgeRequest, render, template_source, verdict_schema
from routewatch.judge.verdict import (
    Verdict,
    normalised,
    parse_verdict,
    weighted_grade,
)
from routewatch.providers.base import ChatRequest
from routewatch.providers.openai import OpenAIClient
from routewatch.scoring import cost_usd
from routewatch.store.verdicts import (
    cached_verdict,
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
    logprob_fallbacks: int = 0
    """Samples (``logprobs`` on) whose weighted grade could not be read from the reply,
    so their integer grade counted; the reasoning says why. 0 for a cached verdict."""
    stated_score: float | None = None
    """The mean of the integer grades the judge wrote (``raw_score`` without ``logprobs``
    weighting); set when judged afresh, None from the cache."""
    unreadable: bool = False
    """No verdict because the judge's reply could not be read (not a failed call)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryCheck:
    """One canary criterion: what the judge was expected to say and what it said."""

    index: int
    criterion: str
    expected: float
    observed: float | None
    moved: bool
    """The verdict strayed past ``CANARY_TOLERANCE``, or the reply held none that could be
    read; a call that failed (no reply) leaves it unmoved."""
    judgement: Judgement

    @property
    def error(self) -> str | None:
        """Why the judge gave no verdict, on one line; None when it gave one.

        The text stored for an item's judge error, which names the failure:
        ``judge call failed: timeout: ...`` (with the call's ``ErrorClass``; the client
        has blanked the API key out of what the provider said), ``judge budget reached:
        ...``, or for a reply with no readable verdict, ``judge reply unreadable: `` and
        why.
        """
        if self.observed is not None:
            return None
        return " ".join((self.judgement.error or "no verdict").split())


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
        alert_targets: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.judge = judge
        self.client = client
        self.engine = engine
        self.evalset = evalset
        self.clock = clock
        self.alert_targets = alert_targets
        """Where the ``judge.budget`` event goes (``Alerts.targets()``)."""
        self.template = evalset.judge_template_text or template_source()
        self.budget = DailyBudget(engine, name, judge, clock.now, alert_targets)
        self._template_id = hashlib.sha256(self.template.encode()).hexdigest()

    @property
    def budget_reached(self) -> bool:
        """Whether a call was skipped for the daily budget: the run is partially judged."""
        return self.budget.reached

    async def judge_output(self, item: Item, output: str) -> list[Judgement]:
        """Judge ``output`` on every criterion of the eval set, from the cache where it can.

        The criteria (and their samples) are judged concurrently, as far as the judge
        provider's concurrency and rate limits let them.
        """
        return list(
            await asyncio.gather(
                *(
                    self._criterion(item.prompt, item.reference, output, name, text, use_cache=True)
                    for name, text in self.evalset.criteria.items()
                )
            )
        )

    async def judge_canaries(self) -> list[CanaryCheck]:
        """Judge every canary of the eval set afresh (never from the cache) and compare.

        A canary is judged as outputs are, ``judge_samples`` times, and its observed
        grade is their mean.
        """
        asked = [
            (index, criterion, expected, canary)
            for index, canary in enumerate(self.evalset.canaries)
            for criterion, expected in canary.expect.items()
        ]
        judgements = await asyncio.gather(
            *(
                self._criterion(
                    canary.prompt,
                    canary.reference,
                    canary.output,
                    criterion,
                    self.evalset.criteria[criterion],
                    use_cache=False,
                )
                for _, criterion, _, canary in asked
            )
        )
        return [
            CanaryCheck(
                index=index,
                criterion=criterion,
                expected=expected,
                observed=judgement.raw_score,
                # On the grades the judge wrote: a logprob-weighted 3.93 for a written 4
                # is the same verdict, and one grade of wobble is within tolerance.
                # A reply with no readable verdict is a judge that changed; a call that
                # failed (a timeout, a 5xx, the budget) says nothing about the judge.
                moved=judgement.unreadable
                if judgement.stated_score is None
                else abs(judgement.stated_score - expected) > CANARY_TOLERANCE,
                judgement=judgement,
            )
            for (index, criterion, expected, _), judgement in zip(asked, judgements, strict=True)
        ]

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
        prompt and reference, the output, ``judge_samples`` (a mean of three
        verdicts is not one verdict) and ``logprobs`` (a weighted grade is not an integer).
        """
        material: dict[str, Any] = {
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
        if self.judge.judge_samples > 1:
            # Left out at 1, so verdicts cached before samples existed stay valid.
            material["judge_samples"] = self.judge.judge_samples
        if self.judge.logprobs:
            material["logprobs"] = True
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
        # The database is asked from a worker thread, as below: a route's calls are in
        # flight meanwhile, and a blocked event loop would add the wait to their latency.
        hit = await asyncio.to_thread(cached_verdict, self.engine, key) if use_cache else None
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
        if self.judge.logprobs:
            # One alternative per grade of the scale, unless params ask for fewer.
            top = min(scale[1] - scale[0] + 1, MAX_TOP_LOGPROBS)
            params = {"logprobs": True, "top_logprobs": top, **params}
        if self.judge.structured_output:
            params["response_format"] = verdict_schema(scale)
        chat = ChatRequest(
            model=self.judge.model,
            messages=render(self.template, request, structured=self.judge.structured_output),
            params=params,
        )
        samples = await asyncio.gather(
            *(self._sample(chat) for _ in range(self.judge.judge_samples))
        )
        calls = sum(s.calls for s in samples)
        tokens_in = sum(s.tokens_in for s in samples)
        tokens_out = sum(s.tokens_out for s in samples)
        price = self.judge.price
        cost = cost_usd(tokens_in, tokens_out, price.input_per_mtok, price.output_per_mtok)
        verdicts = [s.verdict for s in samples if s.verdict is not None]
        if len(verdicts) < len(samples):
            # A mean over fewer samples than configured is another measurement: no verdict.
            failed = next(s for s in samples if s.verdict is None)
            return Judgement(
                criterion=name,
                score=None,
                raw_score=None,
                reasoning="",
                error=failed.error,
                verdict_id=None,
                cached=False,
                calls=calls,
                tokens=tokens_in + tokens_out,
                cost_usd=cost,
                unreadable=failed.unreadable,
            )
        stated = sum(v.score for v in verdicts) / len(verdicts)
        grades = [s.grade for s in samples if s.grade is not None]
        raw_score = sum(grades) / len(grades)
        score = sum(normalised(g, scale) for g in grades) / len(grades)
        reasoning = _reasoning(samples)
        verdict_id = None
        if use_cache:
            verdict_id = await asyncio.to_thread(
                store_verdict,
                self.engine,
                cache_key=key,
                judge=self.name,
                model=self.judge.model,
                criterion=name,
                raw_score=raw_score,
                score=score,
                reasoning=reasoning,
                samples=grades,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost_usd=cost,
                now=self.clock.now(),
            )
        return Judgement(
            criterion=name,
            score=score,
            raw_score=raw_score,
            reasoning=reasoning,
            error=None,
            verdict_id=verdict_id,
            cached=False,
            calls=calls,
            tokens=tokens_in + tokens_out,
            cost_usd=cost,
            logprob_fallbacks=sum(s.fallback is not None for s in samples),
            stated_score=stated,
        )

    async def _sample(self, chat: ChatRequest) -> _Sample:
        """One verdict for ``chat``, asked for up to ``VERDICT_TRIES`` times."""
        scale = self.evalset.scale
        asked = await ask(
            self.client,
            self.budget,
            chat,
            lambda text: parse_verdict(text, scale),
            tries=VERDICT_TRIES,
            refused="judging resumes tomorrow (UTC)",
        )
        verdict, grade, fallback = asked.value, None, None
        if verdict is not None and asked.result is not None:
            grade = float(verdict.score)
            if self.judge.logprobs:
                weighted = weighted_grade(asked.result.logprobs, verdict, scale)
                grade, fallback = weighted.grade, weighted.fallback
        return _Sample(
            verdict=verdict,
            grade=grade,
            fallback=fallback,
            error=asked.error,
            calls=asked.calls,
            tokens_in=asked.tokens_in,
            tokens_out=asked.tokens_out,
            unreadable=asked.unreadable,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sample:
    """One of a criterion's ``judge_samples`` verdicts, or why there is none."""

    verdict: Verdict | None
    error: str | None
    calls: int
    tokens_in: int
    tokens_out: int
    grade: float | None = None
    """The grade that counts: the verdict's, or its probability-weighted one."""
    fallback: str | None = None
    """Why the weighted grade was asked for (``logprobs``) but the integer counted."""
    unreadable: bool = False
    """No verdict because the reply could not be read (not a failed call)."""


def _reasoning(samples: Sequence[_Sample]) -> str:
    """One verdict's reasoning, or every sample's, each after its grade; and any fallback."""
    verdicts = [s.verdict for s in samples if s.verdict is not None]
    if len(samples) == 1:
        text = verdicts[0].reasoning
    else:
        n = len(samples)
        text = "\n".join(
            f"[{i}/{n}: {v.score if s.grade is None else s.grade:.4g}] {v.reasoning}"
            for i, (s, v) in enumerate(zip(samples, verdicts, strict=True), 1)
        )
    fallbacks = {s.fallback: None for s in samples if s.fallback is not None}
    if fallbacks:
        count = sum(s.fallback is not None for s in samples)
        text += (
            f"\n[logprobs: the integer grade counted for {count} of {len(samples)} "
            f"sample(s): {'; '.join(fallbacks)}]"
        )
    return text
