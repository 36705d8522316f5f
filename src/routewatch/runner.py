"""Replays eval sets against routes and stores every result: the shell around scoring.

``plan_runs`` turns the command line into (route, eval set, slot) plans; ``execute``
claims each slot in the run ledger, replays only the (item, sample) pairs not yet
stored, writes results in small owned batches as they arrive, and summarises the
run from what is stored, so a run killed half-way resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from routewatch.checks import run_checks
from routewatch.clock import Clock
from routewatch.config import Config, Route
from routewatch.detect.baseline import ItemOutcome
from routewatch.errors import RoutewatchError, UsageError
from routewatch.evalset import EvalSet, Item
from routewatch.judge.engine import Judgement, JudgeRunner
from routewatch.project import Project
from routewatch.providers.base import CallResult, ChatRequest
from routewatch.providers.openai import OpenAIClient
from routewatch.providers.pool import ProviderPool
from routewatch.scoring import (
    ResultFacts,
    RunSummary,
    SampleOutcome,
    WeightedItem,
    cost_usd,
    item_score,
    passes,
    stored_sample_score,
    summarize,
)
from routewatch.store.runs import (
    ClaimOutcome,
    LostClaimError,
    ResultRecord,
    ScoreRecord,
    StoredResult,
    claim_run,
    ensure_eval_set,
    ensure_route_snapshot,
    find_unfinished_run,
    finish_run,
    new_owner,
    release_owner,
    run_results,
    touch_run,
    write_results,
)
from routewatch.store.tables import RunStatus
from routewatch.store.verdicts import CanaryRecord, store_canary_results

BATCH_SIZE = 64
"""Results per write transaction: small enough that a kill loses little (it is replayed),
large enough that a commit per result does not dominate the client's CPU."""
FLUSH_EVERY_S = 0.5
"""A partial batch is written at least this often, so slow routes still save as they go."""
REPLAY_GC_THRESHOLD = 20_000
"""Young-generation GC threshold while replaying (Python's default is 700)."""
HEARTBEAT_EVERY_S = 5.0
"""The owner proves it is alive this often, even while every call is waiting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """One (route, eval set, slot) to run."""

    route: str
    eval_set: str
    at: datetime
    slot_key: str
    resume_unfinished: bool = False
    """Prefer this route's interrupted run, if any, over starting a new slot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    """What happened to one plan."""

    route: str
    eval_set: str
    eval_set_version: str
    run_id: int
    outcome: ClaimOutcome
    slot_key: str
    at: datetime
    replayed: int = 0
    """Calls made in this process."""
    already_stored: int = 0
    """Results found from an earlier, interrupted attempt."""
    summary: RunSummary | None = None
    holder: str | None = None
    error: str | None = None
    judge_calls: int = 0
    """Judge calls made in this process (retries for a parsable verdict included)."""
    judge_calls_saved: int = 0
    """Criteria scored from the verdict cache instead of a call."""
    judge_tokens: int = 0
    judge_cost_usd: float = 0.0
    judge_suspect: bool = False
    """A canary verdict moved: this run's judged scores are not to be trusted."""
    partially_judged: bool = False
    """The judge's daily budget ran out during the run: some outputs were not judged."""
    call_errors: tuple[tuple[str, int], ...] = ()
    """Calls of this process that failed, per error class, the commonest first."""
    call_error_example: str | None = None
    """The message of the first failed call of the commonest class."""
    canary_error: str | None = None
    """Why the judge gave no verdict on any canary (it could not be reached, say)."""

    @property
    def every_call_failed(self) -> bool:
        """The run was replayed and no call got an answer: nothing was measured."""
        s = self.summary
        return s is not None and s.results_total > 0 and s.errors_total == s.results_total


def slot_key_for(at: datetime) -> str:
    """The slot key of a run at logical time ``at``: its ISO time in UTC, to the second."""
    return at.replace(microsecond=0).isoformat()


def plan_runs(
    config: Config, *, routes: Sequence[str], at: datetime | None, now: datetime
) -> list[RunPlan]:
    """Plans for the named routes (all when none are named), one per route x eval set.

    A route named twice is planned once: two plans of one slot would meet as "busy".

    With ``at`` the slot is that logical time, so repeating the command resumes or
    skips it; without, the slot is now, and an interrupted run is resumed first.

    Raises:
        UsageError: a named route is not in the config.
    """
    unknown = [r for r in routes if r not in config.routes]
    if unknown:
        known = ", ".join(sorted(config.routes)) or "(none)"
        raise UsageError(f"unknown route(s) {', '.join(unknown)}; known: {known}")
    when = (at or now).replace(microsecond=0)
    return [
        RunPlan(
            route=name,
            eval_set=set_name,
            at=when,
            slot_key=slot_key_for(when),
            resume_unfinished=at is None,
        )
        for name in dict.fromkeys(routes or config.routes)
        for set_name in config.routes[name].evals
    ]


async def execute(
    project: Project,
    engine: Engine,
    plans: Sequence[RunPlan],
    *,
    env: Mapping[str, str],
    clock: Clock,
    on_result: Callable[[], None] | None = None,
) -> list[RunReport]:
    """Run every plan concurrently, sharing each provider's limits.

    Raises:
        RoutewatchError: the first error that stopped a run (e.g. a missing API key),
            after every other run has finished and the failed one is marked failed.
        Exception: an unexpected one (a database failover); its run is left ``running``
            under a released owner, so the next claim of the slot resumes it.
    """
    owner = new_owner()
    try:
        async with ProviderPool(project.config.providers, env) as pool:
            outcomes = await asyncio.gather(
                *(
                    _Run(project, engine, plan, pool, env, clock, owner, on_result).run()
                    for plan in plans
                ),
                return_exceptions=True,
            )
    finally:
        release_owner(owner)
    reports: list[RunReport] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        reports.append(outcome)
    return reports


@contextmanager
def replay_gc() -> Iterator[None]:
    """Spare the cyclic GC the long-lived config and eval sets during a replay.

    A replay allocates many short-lived objects per call; with the default young-
    generation threshold the collector also rescans everything loaded before it.
    Freezing those and collecting young objects less often saves about a tenth of
    the client's CPU per call (``bench/replay.py``). Settings are restored after.
    It changes process-wide state, so entry points use it around their one
    ``execute``, never concurrent callers.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(REPLAY_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


class _Run:
    """One plan from claim to summary."""

    def __init__(
        self,
        project: Project,
        engine: Engine,
        plan: RunPlan,
        pool: ProviderPool,
        env: Mapping[str, str],
        clock: Clock,
        owner: str,
        on_result: Callable[[], None] | None,
    ) -> None:
        self.engine = engine
        self.plan = plan
        self.route: Route = project.config.routes[plan.route]
        self.evalset: EvalSet = project.eval_sets[plan.eval_set]
        self.client: OpenAIClient = pool.client(self.route.provider)
        self.clock = clock
        self.owner = owner
        self.on_result = on_result
        self.pending: list[ResultRecord] = []
        self.write_lock = asyncio.Lock()
        self.last_flush = time.monotonic()
        self.last_write = 0.0
        """When a batch was last sent to the database (it sets the run's heartbeat too)."""
        self.run_id = 0
        self.at_header = plan.at.isoformat()
        self.item_ids: Mapping[str, int] = {}
        self.results: list[StoredResult] = []
        self.judge = _judge_for(project, engine, self.evalset, pool, clock)
        self.judge_calls = self.judge_saved = self.judge_tokens = 0
        self.judge_cost = 0.0
        self.call_errors: Counter[str] = Counter()
        self.call_error_examples: dict[str, str] = {}
        self.canary_error: str | None = None

    async def run(self) -> RunReport:
        stored = ensure_eval_set(self.engine, self.evalset)
        snapshot = ensure_route_snapshot(self.engine, self.plan.route, self.route)
        slot_key = self.plan.slot_key
        if self.plan.resume_unfinished:
            slot_key = (
                find_unfinished_run(
                    self.engine,
                    route=self.plan.route,
                    eval_set=stored,
                    eval_set_name=self.evalset.name,
                    route_snapshot_id=snapshot,
                    now=self.clock.now(),
                )
                or slot_key
            )
        claim = claim_run(
            self.engine,
            route=self.plan.route,
            route_snapshot_id=snapshot,
            eval_set=stored,
            eval_set_name=self.evalset.name,
            slot_key=slot_key,
            at=self.plan.at,
            owner=self.owner,
            now=self.clock.now(),
        )
        report = RunReport(
            route=self.plan.route,
            eval_set=self.evalset.name,
            eval_set_version=self.evalset.version,
            run_id=claim.run_id,
            outcome=claim.outcome,
            slot_key=slot_key,
            at=claim.at,
            holder=claim.holder,
        )
        if not claim.owned:
            return report
        self.run_id = claim.run_id
        self.at_header = claim.at.isoformat()
        self.item_ids = stored.item_ids
        # What an earlier, interrupted attempt stored; the summary adds this process's own.
        self.results = run_results(self.engine, claim.run_id)
        done = {(r.item_id, r.sample) for r in self.results}
        todo = [
            (item, sample)
            for item in self.evalset.items
            for sample in range(self.route.samples)
            if (item.id, sample) not in done
        ]
        try:
            suspect = await self._judge_canaries(stored.id)
            await self._replay(todo)
            summary, outcomes = score_run(self.evalset, self.results)
            async with self.write_lock:
                # The results not yet written go in finish_run's transaction: one
                # transaction fewer, and no thread hop, at the end of every run.
                batch, self.pending = self.pending, []
                finish_run(
                    self.engine,
                    items=outcomes,
                    records=batch,
                    run_id=claim.run_id,
                    owner=self.owner,
                    now=self.clock.now(),
                    status=RunStatus.completed,
                    totals={
                        **run_totals(summary),
                        "judge_calls": self.judge_calls,
                        "judge_calls_saved": self.judge_saved,
                        "judge_tokens": self.judge_tokens,
                        "judge_cost_usd": self.judge_cost,
                        "judge_suspect": suspect,
                        "partially_judged": self.judge is not None and self.judge.budget_reached,
                    },
                )
        except LostClaimError as exc:
            return replace(report, outcome=ClaimOutcome.busy, error=str(exc))
        except RoutewatchError as exc:
            await self._flush()
            finish_run(
                self.engine,
                run_id=claim.run_id,
                owner=self.owner,
                now=self.clock.now(),
                status=RunStatus.failed,
                totals={},
                error_message=str(exc),
            )
            raise
        return replace(
            report,
            replayed=len(todo),
            already_stored=len(done),
            summary=summary,
            judge_calls=self.judge_calls,
            judge_calls_saved=self.judge_saved,
            judge_tokens=self.judge_tokens,
            judge_cost_usd=self.judge_cost,
            judge_suspect=suspect,
            call_errors=tuple(self.call_errors.most_common()),
            call_error_example=(
                self.call_error_examples.get(self.call_errors.most_common(1)[0][0])
                if self.call_errors
                else None
            ),
            canary_error=self.canary_error,
            partially_judged=self.judge is not None and self.judge.budget_reached,
        )

    async def _judge_canaries(self, eval_set_id: int) -> bool:
        """Judge the eval set's canaries; True when any verdict moved (judge suspect)."""
        if self.judge is None or not self.evalset.canaries:
            return False
        checks = await self.judge.judge_canaries()
        for check in checks:
            self.judge_calls += check.judgement.calls
            self.judge_tokens += check.judgement.tokens
            self.judge_cost += check.judgement.cost_usd
        store_canary_results(
            self.engine,
            run_id=self.run_id,
            eval_set_id=eval_set_id,
            records=[
                CanaryRecord(
                    canary_index=c.index,
                    criterion=c.criterion,
                    expected=c.expected,
                    observed=c.observed,
                    error=c.error,
                )
                for c in checks
            ],
            now=self.clock.now(),
        )
        # A canary whose call failed says nothing about the judge; with none answered,
        # nothing vouches for it, so the run's judged scores are suspect all the same.
        unanswered = [
            c.judgement.error or "no verdict"
            for c in checks
            if c.judgement.stated_score is None and not c.judgement.unreadable
        ]
        if checks and len(unanswered) == len(checks):
            self.canary_error = unanswered[0]
            return True
        return any(c.moved for c in checks)

    async def _replay(self, todo: Sequence[tuple[Item, int]]) -> None:
        """Make every call; the first error (a missing key, a lost claim) cancels the rest.

        The last results may still be pending: ``run`` writes them as the run finishes.
        """
        try:
            async with asyncio.TaskGroup() as group:
                heartbeat = group.create_task(self._heartbeat())
                calls = [group.create_task(self._one(item, sample)) for item, sample in todo]
                await asyncio.gather(*calls)
                async with self.write_lock:  # so the heartbeat is not cancelled mid-write
                    heartbeat.cancel()
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None

    async def _heartbeat(self) -> None:
        """Prove the owner alive while calls wait.

        A batch written within the interval was proof enough (``write_results`` sets the
        heartbeat too). The statement runs in a worker thread, under the write lock, like
        the batches: on the event loop, its round trip (a distant PostgreSQL, a SQLite
        file another thread is writing) would be added to every call in flight.
        """
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            async with self.write_lock:
                if time.monotonic() - self.last_write < HEARTBEAT_EVERY_S:
                    continue
                await asyncio.to_thread(
                    touch_run,
                    self.engine,
                    run_id=self.run_id,
                    owner=self.owner,
                    now=self.clock.now(),
                )

    async def _one(self, item: Item, sample: int) -> None:
        request = ChatRequest(
            model=self.route.model,
            # Built here, not up front: the first calls go out at once, and the rest
            # are built while the loop waits for their answers.
            messages=[{"role": m.role, "content": m.content} for m in item.prompt],
            params=self.route.params,
            stream=self.route.stream,
            headers={"X-Routewatch-At": self.at_header, "X-Routewatch-Sample": str(sample)},
        )
        result = await self.client.complete(request)
        # The call's slot is free now: let the call waiting for it go out before this
        # one is scored, so scoring never stands between an answer and the next request.
        await asyncio.sleep(0)
        if result.error_class is not None:
            self.call_errors[result.error_class] += 1
            self.call_error_examples.setdefault(result.error_class, result.error_message or "")
        fallback = served_by_fallback(self.route.model, result)
        judgements: list[Judgement] = []
        if self.judge is not None and result.ok and not fallback:
            judgements = await self.judge.judge_output(item, result.output or "")
            for j in judgements:
                self.judge_calls += j.calls
                self.judge_saved += j.cached
                self.judge_tokens += j.tokens
                self.judge_cost += j.cost_usd
        record = self._record(item, sample, result, fallback, judgements)
        self.pending.append(record)
        self.results.append(record.facts())
        if self.on_result is not None:
            self.on_result()
        if len(self.pending) >= BATCH_SIZE or time.monotonic() - self.last_flush > FLUSH_EVERY_S:
            await self._flush()

    async def _flush(self) -> None:
        """Write what is pending, in a worker thread so calls keep flowing meanwhile.

        The lock keeps batches in order and one at a time; the database driver
        releases the GIL while it works.
        """
        async with self.write_lock:
            # Taken under the lock: a flush cancelled while waiting leaves its batch pending.
            batch, self.pending = self.pending, []
            self.last_flush = time.monotonic()
            if not batch:
                return
            self.last_write = time.monotonic()
            await asyncio.to_thread(
                write_results,
                self.engine,
                run_id=self.run_id,
                owner=self.owner,
                now=self.clock.now(),
                records=batch,
            )

    def _record(
        self,
        item: Item,
        sample: int,
        result: CallResult,
        fallback: bool,
        judgements: Sequence[Judgement],
    ) -> ResultRecord:
        price = self.route.price
        scores: list[ScoreRecord] = [
            ScoreRecord(
                scorer=f"judge:{j.criterion}",
                value=j.score,
                passed=None,
                detail=(
                    {"error": j.error}
                    if j.error is not None
                    else {"raw_score": j.raw_score, "reasoning": j.reasoning, "cached": j.cached}
                ),
                judge_verdict_id=j.verdict_id,
            )
            for j in judgements
        ]
        if result.ok and not fallback:
            for check in run_checks(item.checks, result.output or ""):
                scores.append(
                    ScoreRecord(
                        scorer=check.scorer,
                        value=1.0 if check.passed else 0.0,
                        passed=check.passed,
                        detail={"detail": check.detail} if check.detail else None,
                    )
                )
        values: dict[str, Any] = {
            "eval_item_id": self.item_ids[item.id],
            "item_id": item.id,
            "sample": sample,
            "output": result.output,
            "finish_reason": result.finish_reason,
            "tokens_in": result.tokens_in,
            "tokens_out": result.tokens_out,
            "cost_usd": cost_usd(
                result.tokens_in or 0,
                result.tokens_out or 0,
                price.input_per_mtok,
                price.output_per_mtok,
            ),
            "latency_ms": result.latency_ms,
            "ttft_ms": result.ttft_ms,
            "attempts": result.attempts,
            "error_class": result.error_class,
            "error_message": result.error_message,
            "served_model": result.served_model,
            "served_by_fallback": fallback,
            "response_meta": result.response_meta or None,
        }
        return ResultRecord(values=values, scores=scores)


_VERSION_SUFFIX = re.compile(r"(?:[-@:](?:\d{4}-\d{2}-\d{2}|\d{4,8}|latest))+$")
"""Snapshot tags providers add to a model name: ``-2024-08-06``, ``-0613``, ``-20241022``,
``-latest``. Short numbers (``gpt-4``) and sizes (``-mini``, ``-32b``) are part of the name."""


def same_model(requested: str, served: str) -> bool:
    """Whether ``served`` names the requested model, up to a provider prefix and snapshot tag.

    ``openai/gpt-4o`` and ``gpt-4o-2024-08-06`` name ``gpt-4o``; ``gpt-4o-mini`` does not.
    """

    def base(name: str) -> str:
        return _VERSION_SUFFIX.sub("", name.strip().lower().rsplit("/", 1)[-1])

    return base(requested) == base(served)


def served_by_fallback(requested: str, result: CallResult) -> bool:
    """Whether a gateway answered from another model than the route's own.

    A LiteLLM ``x-litellm-attempted-fallbacks`` above zero says so outright; otherwise
    the body's ``model`` must name the requested model (``same_model``).
    """
    attempted = result.response_meta.get("x-litellm-attempted-fallbacks", "0").strip()
    if attempted.isdigit() and int(attempted) > 0:
        return True
    return bool(result.served_model) and not same_model(requested, result.served_model or "")


def _judge_for(
    project: Project, engine: Engine, evalset: EvalSet, pool: ProviderPool, clock: Clock
) -> JudgeRunner | None:
    """The judge of an eval set with criteria (its ``judge:``, else ``default``), if any."""
    if not evalset.criteria:
        return None
    name = evalset.judge or "default"
    judge = project.config.judges.get(name)
    if judge is None:  # load_project refuses this; a Project built by hand may not
        raise UsageError(f"eval set {evalset.name} needs judge {name!r}, which is not configured")
    return JudgeRunner(
        name,
        judge,
        pool.client(judge.provider),
        engine,
        evalset,
        clock,
        alert_targets=project.config.alerts.targets(),
    )


def _samples_by_item(results: Sequence[StoredResult]) -> dict[str, list[SampleOutcome]]:
    by_item: dict[str, list[SampleOutcome]] = {}
    for r in results:
        by_item.setdefault(r.item_id, []).append(
            SampleOutcome(
                score=stored_sample_score(r.scores), errored=r.errored, fallback=r.fallback
            )
        )
    return by_item


def score_run(
    evalset: EvalSet, results: Sequence[StoredResult]
) -> tuple[RunSummary, list[ItemOutcome]]:
    """A run's summary and each item's outcome, from its stored results in one pass.

    The summary covers checks and judge scores alike; the outcomes are what detection
    compares with each item's history.
    """
    by_item = _samples_by_item(results)
    threshold = evalset.pass_threshold
    weighted: list[WeightedItem] = []
    outcomes: list[ItemOutcome] = []
    for item in evalset.items:
        samples = by_item.get(item.id, [])
        summary = item_score(item.id, samples, threshold)
        weighted.append(WeightedItem(item=summary, weight=item.weight))
        scored = [s.score for s in samples if not (s.errored or s.fallback) and s.score is not None]
        outcomes.append(
            ItemOutcome(
                item_hash=evalset.history_key(item),
                item_id=item.id,
                weight=item.weight,
                critical=item.critical,
                score=summary.score,
                passed=summary.passed,
                samples_scored=len(scored),
                samples_passed=sum(1 for v in scored if passes(v, threshold)),
                samples_errored=summary.samples_errored,
            )
        )
    facts = [
        ResultFacts(
            latency_ms=r.latency_ms,
            tokens_in=r.tokens_in or 0,
            tokens_out=r.tokens_out or 0,
            cost_usd=r.cost_usd or 0.0,
            errored=r.errored,
            fallback=r.fallback,
            ttft_ms=r.ttft_ms,
        )
        for r in results
    ]
    return summarize(weighted, facts), outcomes


def run_totals(summary: RunSummary) -> dict[str, Any]:
    """The ``runs`` columns that hold a summary."""
    return {
        "items_total": summary.items_total,
        "results_total": summary.results_total,
        "errors_total": summary.errors_total,
        "fallback_total": summary.fallback_total,
        "score": summary.score,
        "pass_rate": summary.pass_rate,
        "error_rate": summary.error_rate,
        "p50_latency_ms": summary.p50_latency_ms,
        "p95_latency_ms": summary.p95_latency_ms,
        "p50_ttft_ms": summary.p50_ttft_ms,
        "p95_ttft_ms": summary.p95_ttft_ms,
        "cost_usd": summary.cost_usd,
        "tokens_in": summary.tokens_in,
        "tokens_out": summary.tokens_out,
    }
