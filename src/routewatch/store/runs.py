"""The run ledger and result writes: each slot runs once, and nothing is written twice.

``claim_run`` inserts the run row for a (route, eval set, slot) or, when it exists,
resumes it if its owner is gone. Results are written in small batches, each in a
transaction that first re-checks ownership, so a process that lost its claim can
never add a row, and ``UNIQUE(run, item, sample)`` guards the rest.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from routewatch.config import Route
from routewatch.detect.baseline import ItemOutcome
from routewatch.evalset import EvalSet, content_hash
from routewatch.store.tables import Base, RunStatus

# Core tables, not the ORM classes: a statement on a mapped class configures every
# mapper on first use (tens of milliseconds before a replay's first call) and takes
# the ORM's slower path on each execution; nothing here loads objects.
_eval_sets = Base.metadata.tables["eval_sets"]
_eval_items = Base.metadata.tables["eval_items"]
_route_snapshots = Base.metadata.tables["route_snapshots"]
_runs = Base.metadata.tables["runs"]
_item_outcomes = Base.metadata.tables["item_outcomes"]
_eval_set_sources = Base.metadata.tables["eval_set_sources"]
_results = Base.metadata.tables["results"]
_scores = Base.metadata.tables["scores"]

STALE_AFTER = timedelta(seconds=90)
"""A run whose owner on another host has not heartbeated for this long may be taken over.
Owners heartbeat every few seconds; on the same host a dead pid is noticed at once."""


def item_outcome_rows(run_id: int, items: Sequence[ItemOutcome]) -> list[dict[str, Any]]:
    """``item_outcomes`` rows for one run."""
    return [
        {
            "run_id": run_id,
            "item_hash": i.item_hash,
            "item_id": i.item_id,
            "weight": i.weight,
            "critical": i.critical,
            "score": i.score,
            "passed": i.passed,
            "samples_scored": i.samples_scored,
            "samples_passed": i.samples_passed,
            "samples_errored": i.samples_errored,
        }
        for i in items
    ]


class LostClaimError(Exception):
    """This process no longer owns the run it is writing (another process took it over)."""


@cache
def _host_id() -> str:
    """This host, boot and PID namespace: ``hostname@pidns@boot``.

    Containers may share a hostname but not their PID namespace; machines cloned from one
    image may share a hostname and the initial namespace's number, but not a boot id.
    """
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = "-"
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8] or "-"
    except OSError:
        boot = "-"
    return f"{socket.gethostname()}@{namespace}@{boot}"


_LIVE_OWNERS: set[str] = set()
"""Owner tokens this process is still working under; see ``release_owner``."""


def new_owner() -> str:
    """An owner token naming this process, ``host@pidns:pid:random``, live until released."""
    owner = f"{_host_id()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _LIVE_OWNERS.add(owner)
    return owner


def release_owner(owner: str) -> None:
    """Say that nothing in this process works under ``owner`` any more.

    A run its owner left ``running`` (an unexpected error, say a database failover,
    ended the replay) is then orphaned at once, and a long-lived process such as the
    daemon resumes it instead of waiting for its own pid to die.
    """
    _LIVE_OWNERS.discard(owner)


def abandon_runs(engine: Engine) -> int:
    """Hand every run this process left ``running`` to whoever resumes it next, at once.

    A stopping daemon leaves a run it cut short ``running``; while its pid still exists
    (exiting, or a zombie not yet reaped) another daemon on this host would take the run
    for live and wait for its next catch-up, a minute later. Clearing the owner and the
    heartbeat says it is gone. Call it only once nothing in this process replays any
    more. Returns how many runs were handed over.
    """
    mine = f"{_host_id()}:{os.getpid()}:"
    with engine.begin() as conn:
        handed = conn.execute(
            update(_runs)
            .where(_runs.c.owner.startswith(mine, autoescape=True))
            .where(_runs.c.status == RunStatus.running)
            # Without an owner a late write of this process (a worker thread the stop could
            # not cancel) fails its owner check instead of reviving the heartbeat.
            .values(owner=None, heartbeat_at=None)
        ).rowcount
    return int(handed)


def owner_alive(owner: str | None, heartbeat_at: datetime | None, now: datetime) -> bool:
    """Whether the process named by ``owner`` may still be working on its run.

    In this process, a released owner is gone; in this host's PID namespace a dead pid
    settles it at once; elsewhere only a heartbeat older than ``STALE_AFTER`` does.
    """
    if owner is None or heartbeat_at is None:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host == _host_id() and pid_text == str(os.getpid()):
        return owner in _LIVE_OWNERS
    if host == _host_id() and pid_text.isdigit():
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by another user
    return now - heartbeat_at < STALE_AFTER


class ClaimOutcome(StrEnum):
    """What ``claim_run`` found."""

    started = "started"
    resumed = "resumed"
    completed = "completed"
    busy = "busy"
    version_changed = "version_changed"
    config_changed = "config_changed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """The result of claiming a slot; ``run_id`` is ours to write only when started/resumed."""

    outcome: ClaimOutcome
    run_id: int
    at: datetime
    holder: str | None = None

    @property
    def owned(self) -> bool:
        """True when this process now owns the run."""
        return self.outcome in (ClaimOutcome.started, ClaimOutcome.resumed)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvalSet:
    """Ids of an eval-set version and its items in the store."""

    id: int
    item_ids: Mapping[str, int]


def ensure_eval_set(engine: Engine, evalset: EvalSet) -> StoredEvalSet:
    """Store this eval-set version and its items once; later calls return the same ids.

    A set loaded from a file whose exact text was stored before (``source_digest``)
    is found by that digest and adopts the stored version and item hashes, rather
    than hashing every item again; any other is found, or stored, by its version.
    """
    digest = evalset.source_digest
    with engine.begin() as conn:
        if digest is not None:
            known = _known_source(conn, digest, evalset)
            if known is not None:
                return known
        query = select(_eval_sets.c.id).where(
            _eval_sets.c.name == evalset.name, _eval_sets.c.version == evalset.version
        )
        set_id = conn.execute(query).scalar()
        if set_id is None:
            try:
                with conn.begin_nested():
                    set_id = _insert_eval_set(conn, evalset)
            except IntegrityError:  # another process stored it first
                set_id = conn.execute(query).scalar_one()
        if digest is not None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(_eval_set_sources),
                        {"digest": digest, "eval_set_id": set_id},
                    )
            except IntegrityError:  # another process stored it first
                pass
        rows = conn.execute(
            select(_eval_items.c.item_id, _eval_items.c.id).where(
                _eval_items.c.eval_set_id == set_id
            )
        )
        return StoredEvalSet(id=set_id, item_ids={r.item_id: r.id for r in rows})


def _known_source(conn: Any, digest: str, evalset: EvalSet) -> StoredEvalSet | None:
    """The stored set that ``digest`` loaded as, its hashes adopted by ``evalset``; or None."""
    found = conn.execute(
        select(_eval_sets.c.id, _eval_sets.c.name, _eval_sets.c.version)
        .join(_eval_set_sources, _eval_set_sources.c.eval_set_id == _eval_sets.c.id)
        .where(_eval_set_sources.c.digest == digest)
    ).first()
    if found is None or found.name != evalset.name:
        return None
    rows = conn.execute(
        select(_eval_items.c.item_id, _eval_items.c.id, _eval_items.c.item_hash).where(
            _eval_items.c.eval_set_id == found.id
        )
    ).all()
    try:
        evalset.adopt_hashes(found.version, {r.item_id: r.item_hash for r in rows})
    except ValueError:  # not what this digest stands for; hash the set as usual
        return None
    return StoredEvalSet(id=found.id, item_ids={r.item_id: r.id for r in rows})


def _insert_eval_set(conn: Any, evalset: EvalSet) -> int:
    set_id: int = conn.execute(
        insert(_eval_sets).returning(_eval_sets.c.id),
        {
            "name": evalset.name,
            "version": evalset.version,
            "description": evalset.description,
            "scale_min": evalset.scale[0],
            "scale_max": evalset.scale[1],
            "pass_threshold": evalset.pass_threshold,
            "judge": evalset.judge,
            "definition": evalset.model_dump(mode="json", exclude={"items"}),
        },
    ).scalar_one()
    conn.execute(
        insert(_eval_items),
        [
            {
                "eval_set_id": set_id,
                "item_id": item.id,
                "item_hash": item.hash,
                "position": position,
                "weight": item.weight,
                "critical": item.critical,
                "definition": item.model_dump(mode="json", exclude={"id", "weight", "critical"}),
            }
            for position, item in enumerate(evalset.items)
        ],
    )
    return set_id


def _snapshot(route: Route) -> dict[str, Any]:
    return {
        "provider": route.provider,
        "model": route.model,
        "params": route.params,
        "price_input_per_mtok": route.price.input_per_mtok,
        "price_output_per_mtok": route.price.output_per_mtok,
    }


def route_config_hash(route: Route) -> str:
    """What identifies the route's configuration in ``route_snapshots``."""
    return content_hash({**_snapshot(route), "stream": route.stream})


def ensure_route_snapshot(engine: Engine, name: str, route: Route) -> int:
    """Store the route as configured now (model, params, price) once; return its id."""
    snapshot = _snapshot(route)
    config_hash = route_config_hash(route)
    query = select(_route_snapshots.c.id).where(
        _route_snapshots.c.route == name, _route_snapshots.c.config_hash == config_hash
    )
    with engine.begin() as conn:
        found = conn.execute(query).scalar()
        if found is not None:
            return int(found)
        try:
            with conn.begin_nested():
                return int(
                    conn.execute(
                        insert(_route_snapshots).returning(_route_snapshots.c.id),
                        {"route": name, "config_hash": config_hash, **snapshot},
                    ).scalar_one()
                )
        except IntegrityError:
            return int(conn.execute(query).scalar_one())


def orphaned_runs(engine: Engine, routes: list[str], now: datetime) -> list[tuple[str, datetime]]:
    """``(route, at)`` of runs still ``running`` whose owner is gone, oldest first."""
    if not routes:
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            select(_runs.c.route, _runs.c.at, _runs.c.owner, _runs.c.heartbeat_at)
            .where(_runs.c.route.in_(routes), _runs.c.status == RunStatus.running)
            .order_by(_runs.c.at)
        ).all()
    found = [(r.route, r.at) for r in rows if not owner_alive(r.owner, r.heartbeat_at, now)]
    return list(dict.fromkeys(found))


def slot_completed(engine: Engine, *, route: str, eval_set_name: str, slot_key: str) -> bool:
    """Whether the run of this slot has completed."""
    with engine.connect() as conn:
        status = conn.execute(
            select(_runs.c.status).where(
                _runs.c.route == route,
                _runs.c.eval_set_name == eval_set_name,
                _runs.c.slot_key == slot_key,
            )
        ).scalar_one_or_none()
    return status == RunStatus.completed


def claim_run(
    engine: Engine,
    *,
    route: str,
    route_snapshot_id: int,
    eval_set: StoredEvalSet,
    eval_set_name: str,
    slot_key: str,
    at: datetime,
    owner: str,
    now: datetime,
) -> Claim:
    """Start the run of a slot, resume it if its owner is gone, or say why not."""
    try:
        with engine.begin() as conn:
            run_id = conn.execute(
                insert(_runs).returning(_runs.c.id),
                {
                    "route": route,
                    "route_snapshot_id": route_snapshot_id,
                    "eval_set_id": eval_set.id,
                    "eval_set_name": eval_set_name,
                    "slot_key": slot_key,
                    "at": at,
                    "started_at": now,
                    "status": RunStatus.running,
                    "owner": owner,
                    "heartbeat_at": now,
                },
            ).scalar_one()
        return Claim(outcome=ClaimOutcome.started, run_id=run_id, at=at)
    except IntegrityError:
        pass
    with engine.begin() as conn:
        row = conn.execute(
            select(
                _runs.c.id,
                _runs.c.status,
                _runs.c.owner,
                _runs.c.heartbeat_at,
                _runs.c.at,
                _runs.c.eval_set_id,
                _runs.c.route_snapshot_id,
            ).where(
                _runs.c.route == route,
                _runs.c.eval_set_name == eval_set_name,
                _runs.c.slot_key == slot_key,
            )
        ).one()
        if row.status == RunStatus.completed:
            return Claim(outcome=ClaimOutcome.completed, run_id=row.id, at=row.at)
        if row.status == RunStatus.running and owner_alive(row.owner, row.heartbeat_at, now):
            return Claim(outcome=ClaimOutcome.busy, run_id=row.id, at=row.at, holder=row.owner)
        if row.eval_set_id != eval_set.id:
            return Claim(outcome=ClaimOutcome.version_changed, run_id=row.id, at=row.at)
        if row.route_snapshot_id != route_snapshot_id:
            return Claim(outcome=ClaimOutcome.config_changed, run_id=row.id, at=row.at)
        taken = conn.execute(
            update(_runs)
            .where(
                _runs.c.id == row.id,
                _runs.c.status == row.status,
                _runs.c.owner == row.owner if row.owner is not None else _runs.c.owner.is_(None),
            )
            .values(
                owner=owner,
                heartbeat_at=now,
                status=RunStatus.running,
                finished_at=None,
                error_message=None,
            )
        ).rowcount
    if taken != 1:
        return Claim(outcome=ClaimOutcome.busy, run_id=row.id, at=row.at)
    return Claim(outcome=ClaimOutcome.resumed, run_id=row.id, at=row.at, holder=row.owner)


def cancel_interrupted_run(engine: Engine, run_id: int, *, now: datetime, reason: str) -> bool:
    """Mark run ``run_id`` ``cancelled`` if it is still ``running`` with its owner gone.

    For an interrupted run that can never be resumed as it was (another eval-set version
    or route config); returns whether it was cancelled.
    """
    with engine.begin() as conn:
        row = conn.execute(
            select(_runs.c.status, _runs.c.owner, _runs.c.heartbeat_at).where(_runs.c.id == run_id)
        ).first()
        if row is None or row.status != RunStatus.running:
            return False
        if owner_alive(row.owner, row.heartbeat_at, now):
            return False
        done = conn.execute(
            update(_runs)
            .where(_runs.c.id == run_id, _runs.c.status == RunStatus.running)
            .values(status=RunStatus.cancelled, finished_at=now, error_message=reason)
        )
        return done.rowcount == 1


def find_unfinished_run(
    engine: Engine,
    *,
    route: str,
    eval_set: StoredEvalSet,
    eval_set_name: str,
    route_snapshot_id: int,
    now: datetime,
) -> str | None:
    """The slot key of this route's newest interrupted run that can be resumed, if any.

    An interrupted run is still ``running`` with its owner gone. One started on another
    eval-set version or route config can never be resumed as it was, so it is marked
    ``cancelled`` here rather than left to block later runs. Failed runs are left
    alone: repeating their ``--at`` retries them once the reason is fixed.
    """
    with engine.begin() as conn:
        rows = conn.execute(
            select(
                _runs.c.id,
                _runs.c.slot_key,
                _runs.c.owner,
                _runs.c.heartbeat_at,
                _runs.c.eval_set_id,
                _runs.c.route_snapshot_id,
            )
            .where(
                _runs.c.route == route,
                _runs.c.eval_set_name == eval_set_name,
                _runs.c.status == RunStatus.running,
            )
            .order_by(_runs.c.at.desc())
        ).all()
        found: str | None = None
        for row in rows:
            if owner_alive(row.owner, row.heartbeat_at, now):
                continue
            if row.eval_set_id == eval_set.id and row.route_snapshot_id == route_snapshot_id:
                found = found or str(row.slot_key)
                continue
            conn.execute(
                update(_runs)
                .where(_runs.c.id == row.id, _runs.c.status == RunStatus.running)
                .values(
                    status=RunStatus.cancelled,
                    finished_at=now,
                    error_message="interrupted, and the eval set or route changed since",
                )
            )
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRecord:
    """One scorer's verdict on one result."""

    scorer: str
    value: float | None
    passed: bool | None
    detail: dict[str, Any] | None = None
    weight: float = 1.0
    judge_verdict_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultRecord:
    """One result to store, with its scores."""

    values: dict[str, Any]
    """Columns of ``results`` except ``id`` and ``run_id``."""
    scores: Sequence[ScoreRecord] = field(default_factory=tuple)

    def facts(self) -> StoredResult:
        """What ``run_results`` will read back for this record once it is written."""
        v = self.values
        return StoredResult(
            item_id=v["item_id"],
            sample=v["sample"],
            errored=v.get("error_class") is not None,
            fallback=bool(v.get("served_by_fallback")),
            latency_ms=v["latency_ms"],
            tokens_in=v.get("tokens_in"),
            tokens_out=v.get("tokens_out"),
            cost_usd=v.get("cost_usd"),
            scores=tuple((s.value, s.weight) for s in self.scores if s.value is not None),
            ttft_ms=v.get("ttft_ms"),
        )


_RESULT_DEFAULTS: dict[str, Any] = {
    "output": None,
    "finish_reason": None,
    "tokens_in": None,
    "tokens_out": None,
    "cost_usd": None,
    "ttft_ms": None,
    "error_class": None,
    "error_message": None,
    "served_model": None,
    "served_by_fallback": False,
    "response_meta": None,
}
"""Every optional column, so each row of a batch names the same ones: an executemany
takes its columns from the first row and would silently drop the others' extras."""


def write_results(
    engine: Engine, *, run_id: int, owner: str, now: datetime, records: Iterable[ResultRecord]
) -> int:
    """Write a batch of results and their scores in one transaction; heartbeat the run.

    Raises:
        LostClaimError: another process owns the run now; nothing was written.
    """
    batch = list(records)
    with engine.begin() as conn:
        owned = conn.execute(
            update(_runs)
            .where(and_(_runs.c.id == run_id, _runs.c.owner == owner))
            .values(heartbeat_at=now)
        ).rowcount
        if owned != 1:
            raise LostClaimError(f"run {run_id} is no longer owned by {owner}")
        _insert_results(conn, run_id, now, batch)
    return len(batch)


def _insert_results(conn: Any, run_id: int, now: datetime, batch: Sequence[ResultRecord]) -> None:
    """Insert ``batch`` and its scores; the caller has checked that it owns the run."""
    if not batch:
        return
    # Ids are matched to records by (item, sample), unique within a run, rather than
    # by RETURNING order: SQLite cannot keep that order for a multi-row INSERT, so
    # asking for it makes SQLAlchemy send one INSERT per row.
    inserted = conn.execute(
        insert(_results).returning(_results.c.id, _results.c.item_id, _results.c.sample),
        [{**_RESULT_DEFAULTS, "run_id": run_id, "created_at": now, **r.values} for r in batch],
    )
    ids = {(item_id, sample): result_id for result_id, item_id, sample in inserted}
    scores = [
        {
            "result_id": ids[record.values["item_id"], record.values["sample"]],
            "scorer": s.scorer,
            "value": s.value,
            "passed": s.passed,
            "detail": s.detail,
            "weight": s.weight,
            "judge_verdict_id": s.judge_verdict_id,
        }
        for record in batch
        for s in record.scores
    ]
    if scores:
        conn.execute(insert(_scores), scores)


def touch_run(engine: Engine, *, run_id: int, owner: str, now: datetime) -> None:
    """Heartbeat: show that the owner of a run is alive.

    Raises:
        LostClaimError: another process owns the run now.
    """
    with engine.begin() as conn:
        owned = conn.execute(
            update(_runs)
            .where(_runs.c.id == run_id, _runs.c.owner == owner)
            .values(heartbeat_at=now)
        ).rowcount
    if owned != 1:
        raise LostClaimError(f"run {run_id} is no longer owned by {owner}")


def finish_run(
    engine: Engine,
    *,
    run_id: int,
    owner: str,
    now: datetime,
    status: RunStatus,
    totals: Mapping[str, Any],
    error_message: str | None = None,
    items: Sequence[ItemOutcome] = (),
    records: Sequence[ResultRecord] = (),
) -> None:
    """Record a run's end, totals and item outcomes in one transaction; only its owner may.

    ``records`` are the run's last results, written in the same transaction: one
    commit fewer at the end of every run.

    Raises:
        LostClaimError: another process owns the run now; nothing was written.
    """
    with engine.begin() as conn:
        done = conn.execute(
            update(_runs)
            .where(_runs.c.id == run_id, _runs.c.owner == owner)
            .values(
                status=status,
                finished_at=now,
                heartbeat_at=now,
                error_message=error_message,
                **totals,
            )
        ).rowcount
        if done == 1:
            _insert_results(conn, run_id, now, records)
            if items:
                conn.execute(insert(_item_outcomes), item_outcome_rows(run_id, items))
    if done != 1:
        raise LostClaimError(f"run {run_id} is no longer owned by {owner}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResult:
    """What summarising a run needs of one stored result."""

    item_id: str
    sample: int
    errored: bool
    fallback: bool
    latency_ms: float
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    scores: tuple[tuple[float, float], ...]
    """(value, weight) of every scorer that produced a value."""
    ttft_ms: float | None = None
    """Time to the first token, for a streamed call that answered."""


def run_results(engine: Engine, run_id: int) -> list[StoredResult]:
    """Every result of a run with its score values, for the run's summary."""
    with engine.connect() as conn:
        results = conn.execute(
            select(
                _results.c.id,
                _results.c.item_id,
                _results.c.sample,
                _results.c.error_class,
                _results.c.served_by_fallback,
                _results.c.latency_ms,
                _results.c.ttft_ms,
                _results.c.tokens_in,
                _results.c.tokens_out,
                _results.c.cost_usd,
            ).where(_results.c.run_id == run_id)
        ).all()
        scores: dict[int, list[tuple[float, float]]] = {}
        for row in conn.execute(
            select(_scores.c.result_id, _scores.c.value, _scores.c.weight)
            .join(_results, _results.c.id == _scores.c.result_id)
            .where(_results.c.run_id == run_id, _scores.c.value.is_not(None))
        ):
            scores.setdefault(row.result_id, []).append((row.value, row.weight))
    return [
        StoredResult(
            item_id=r.item_id,
            sample=r.sample,
            errored=r.error_class is not None,
            fallback=bool(r.served_by_fallback),
            latency_ms=r.latency_ms,
            tokens_in=r.tokens_in,
            tokens_out=r.tokens_out,
            cost_usd=r.cost_usd,
            scores=tuple(scores.get(r.id, ())),
            ttft_ms=r.ttft_ms,
        )
        for r in results
    ]
