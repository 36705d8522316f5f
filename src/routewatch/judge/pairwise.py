"""Pairwise mode: the judge says which of two outputs for one item is better, in both orders.

After a run's detection, ``compare_runs`` takes each item of an opted-in eval set
(``pairwise: true``) whose score fell below its baseline (``store.pairwise.fallen_items``)
and asks the set's judge twice: the baseline's output as A and today's as B, then the
other way round. A side chosen in both orders is the preference; anything else is a tie,
which cancels the judge's position bias. Both outputs are escaped and sit between tags
they cannot close, as in the judge prompt. Calls count against the judge's daily budget,
an answer that cannot be read is asked for again, and then it is stored as an error.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine

from routewatch.config import Config, Judge
from routewatch.evalset import EvalSet, Message
from routewatch.judge.budget import DailyBudget, ask
from routewatch.judge.prompt import compiled, template_source
from routewatch.judge.verdict import excerpt, reply_values
from routewatch.providers.base import ChatRequest
from routewatch.providers.openai import OpenAIClient
from routewatch.providers.pool import ProviderPool
from routewatch.scoring import cost_usd
from routewatch.store.pairwise import FallenItem, PreferenceRecord, fallen_items, store_preference
from routewatch.store.tables import PairwisePreference

log = logging.getLogger("routewatch.judge")

PAIRWISE_TEMPLATE = "pairwise.j2"
SYSTEM_PROMPT = "You are a strict, fair grader. You compare two answers to the same request."
PREFERENCE_TRIES = 3
"""Calls made for one order before giving up on a readable preference."""

Side = Literal["A", "B", "tie"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PairwiseRequest:
    """One comparison to ask for: the item, and the outputs shown as A and B."""

    criteria: Mapping[str, str]
    messages: tuple[Message, ...]
    reference: str | None
    output_a: str
    output_b: str


def render_pairwise(request: PairwiseRequest, *, structured: bool) -> list[dict[str, str]]:
    """The chat messages of a pairwise call, from the packaged ``pairwise.j2``."""
    # Compiled in the judge prompt's environment: every printed value is escaped by its
    # ``finalize``, so neither output can close its tag; sandboxed like any template.
    text = compiled(template_source(PAIRWISE_TEMPLATE)).render(
        criteria=dict(request.criteria),
        messages=[{"role": m.role, "content": m.content} for m in request.messages],
        reference=request.reference,
        output_a=request.output_a,
        output_b=request.output_b,
        structured=structured,
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def preference_schema() -> dict[str, Any]:
    """The ``response_format`` asking for a preference: reasoning first, then A, B or tie."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "preference",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "reasoning": {"type": "string"},
                    "preference": {"type": "string", "enum": ["A", "B", "tie"]},
                },
                "required": ["reasoning", "preference"],
                "additionalProperties": False,
            },
        },
    }


class PreferenceError(ValueError):
    """The judge's reply holds no usable preference."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """The side a judge preferred in one order, and why."""

    side: Side
    reasoning: str


PREFERENCE_PATTERN = re.compile(
    r"\bpreference\b\W{0,5}(?:answer|output)?[\s_]*(a|b|tie)\b", re.IGNORECASE
)
"""A ``preference: A`` written outside any parsable JSON; the last one counts."""

_TIE_WORDS = frozenset({"tie", "equal", "same", "neither", "both", "draw", "none"})


def parse_preference(text: str) -> Choice:
    """The preference in a judge's reply.

    Tries the whole reply as JSON (also in a fenced block), then the last JSON object in
    the text that has a ``preference``, then the last ``preference: A``. ``"Answer A"``,
    ``"b"`` and ``"equal"`` are read as ``A``, ``B`` and ``tie``.

    Raises:
        PreferenceError: no preference, or one that names no side.
    """
    stripped, candidates = reply_values(text)
    for value in candidates:
        if isinstance(value, dict) and "preference" in value:
            return Choice(
                side=_side(value["preference"]), reasoning=str(value.get("reasoning", ""))[:2000]
            )
    found = PREFERENCE_PATTERN.findall(stripped)
    if found:
        return Choice(side=_side(found[-1]), reasoning=stripped[:2000])
    raise PreferenceError(f"no preference in the judge's reply: {excerpt(text)!r}")


def _side(value: Any) -> Side:
    words = re.sub(r"[\W_]+", " ", str(value)).casefold().split()
    if words[:1] in (["answer"], ["output"], ["response"]):
        words = words[1:]
    if words == ["a"]:
        return "A"
    if words == ["b"]:
        return "B"
    if len(words) == 1 and words[0] in _TIE_WORDS:
        return "tie"
    raise PreferenceError(f"preference {value!r} is not A, B or tie")


def combine(
    baseline_first: PairwisePreference | None, today_first: PairwisePreference | None
) -> PairwisePreference | None:
    """The preference over both orders: a side chosen both times, else a tie.

    None when either order gave no answer: one order alone cannot cancel position bias.
    """
    if baseline_first is None or today_first is None:
        return None
    return baseline_first if baseline_first == today_first else PairwisePreference.tie


@dataclass(frozen=True, slots=True, kw_only=True)
class _Order:
    """One order's outcome: what the judge said, or why it said nothing usable."""

    preferred: PairwisePreference | None
    answer: str | None
    reasoning: str
    error: str | None
    calls: int
    tokens_in: int
    tokens_out: int


class PairwiseJudge:
    """Compares outputs with one configured judge, within its daily budget."""

    def __init__(
        self,
        name: str,
        judge: Judge,
        client: OpenAIClient,
        engine: Engine,
        *,
        now: datetime,
        alert_targets: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.judge = judge
        self.client = client
        self.engine = engine
        self.now = now
        self.alert_targets = alert_targets
        self.budget = DailyBudget(engine, name, judge, lambda: now, alert_targets)

    async def compare_run(
        self, run_id: int, criteria: Mapping[str, str], fallen: Sequence[FallenItem]
    ) -> list[PreferenceRecord]:
        """Compare each fallen item of ``run_id`` and store what the judge preferred."""
        records = await asyncio.gather(*(self.compare(run_id, criteria, f) for f in fallen))
        return [r for r in records if store_preference(self.engine, r, now=self.now)]

    async def compare(
        self, run_id: int, criteria: Mapping[str, str], fallen: FallenItem
    ) -> PreferenceRecord:
        """Ask for one item's preference in both orders and combine them."""
        item = fallen.item

        def request(a: str, b: str) -> PairwiseRequest:
            return PairwiseRequest(
                criteria=criteria,
                messages=item.prompt,
                reference=item.reference,
                output_a=a,
                output_b=b,
            )

        baseline_first, today_first = await asyncio.gather(
            self._order(request(fallen.baseline_output, fallen.today_output), baseline_is_a=True),
            self._order(request(fallen.today_output, fallen.baseline_output), baseline_is_a=False),
        )
        orders = (baseline_first, today_first)
        tokens_in = sum(o.tokens_in for o in orders)
        tokens_out = sum(o.tokens_out for o in orders)
        price = self.judge.price
        errors = [
            f"{label}: {o.error}"
            for label, o in zip(("baseline first", "today first"), orders, strict=True)
            if o.error is not None
        ]
        return PreferenceRecord(
            run_id=run_id,
            item_hash=fallen.item_hash,
            item_id=item.id,
            baseline_run_id=fallen.baseline_run_id,
            today_score=fallen.today_score,
            baseline_score=fallen.baseline_score,
            judge=self.name,
            model=self.judge.model,
            preference=combine(baseline_first.preferred, today_first.preferred),
            baseline_first=baseline_first.preferred,
            today_first=today_first.preferred,
            baseline_first_answer=baseline_first.answer,
            today_first_answer=today_first.answer,
            reasoning="\n".join(
                f"[{label}] {o.reasoning}"
                for label, o in zip(("baseline first", "today first"), orders, strict=True)
                if o.reasoning
            )
            or None,
            calls=sum(o.calls for o in orders),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost_usd(tokens_in, tokens_out, price.input_per_mtok, price.output_per_mtok),
            error="; ".join(errors) or None,
        )

    async def _order(self, request: PairwiseRequest, *, baseline_is_a: bool) -> _Order:
        """One order's preference, asked for up to ``PREFERENCE_TRIES`` times."""
        structured = self.judge.structured_output
        params: dict[str, Any] = dict(self.judge.params)
        if structured:
            params["response_format"] = preference_schema()
        chat = ChatRequest(
            model=self.judge.model,
            messages=render_pairwise(request, structured=structured),
            params=params,
        )
        asked = await ask(
            self.client,
            self.budget,
            chat,
            parse_preference,
            tries=PREFERENCE_TRIES,
            refused="not compared",
        )
        last = asked.result
        choice = asked.value
        return _Order(
            preferred=None
            if choice is None
            else _meaning(choice.side, baseline_is_a=baseline_is_a),
            answer=(last.output or "") if last is not None and last.ok else None,
            reasoning="" if choice is None else choice.reasoning,
            error=asked.error,
            calls=asked.calls,
            tokens_in=asked.tokens_in,
            tokens_out=asked.tokens_out,
        )


def _meaning(side: Side, *, baseline_is_a: bool) -> PairwisePreference:
    """Which output the side names, in the order it was shown."""
    if side == "tie":
        return PairwisePreference.tie
    shown_first = PairwisePreference.baseline if baseline_is_a else PairwisePreference.today
    shown_second = PairwisePreference.today if baseline_is_a else PairwisePreference.baseline
    return shown_first if side == "A" else shown_second


@dataclass(frozen=True, slots=True, kw_only=True)
class PairwiseTarget:
    """A run to compare, and its eval set as loaded now (for ``pairwise`` and ``criteria``)."""

    run_id: int
    evalset: EvalSet


def compare_runs(
    engine: Engine,
    config: Config,
    targets: Sequence[PairwiseTarget],
    *,
    env: Mapping[str, str],
    now: datetime,
) -> list[PreferenceRecord]:
    """Pairwise mode for ``targets`` whose eval set asks for it; returns what was stored.

    Items a run already has a preference for (an earlier, interrupted attempt, or
    another process) are not compared again. Runs in the event loop of its own, so call
    it from synchronous code (the daemon calls detection in a worker thread).
    """
    wanted = [t for t in targets if t.evalset.pairwise and t.evalset.criteria]
    if not wanted:
        return []
    return asyncio.run(_compare(engine, config, wanted, env=env, now=now))


async def _compare(
    engine: Engine,
    config: Config,
    targets: Sequence[PairwiseTarget],
    *,
    env: Mapping[str, str],
    now: datetime,
) -> list[PreferenceRecord]:
    stored: list[PreferenceRecord] = []
    async with ProviderPool(config.providers, env) as pool:
        # One per judge, so runs of one cycle share its budget reservations.
        judges: dict[str, PairwiseJudge] = {}
        for target in targets:
            name = target.evalset.judge or "default"
            judge = config.judges.get(name)
            if judge is None:  # load_project refuses this; eval files may change in between
                log.warning(
                    "pairwise mode skipped for run %d: judge %r is not configured",
                    target.run_id,
                    name,
                )
                continue
            if name not in judges:
                judges[name] = PairwiseJudge(
                    name,
                    judge,
                    pool.client(judge.provider),
                    engine,
                    now=now,
                    alert_targets=config.alerts.targets(),
                )
            fallen = fallen_items(
                engine, run_id=target.run_id, limit=target.evalset.pairwise_max_items
            )
            stored += await judges[name].compare_run(target.run_id, target.evalset.criteria, fallen)
    return stored
