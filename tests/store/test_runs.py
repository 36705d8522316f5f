"""The run ledger: one run per slot, resumable, and no writes from a process that lost it."""

import ast
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from routewatch.config import Route
from routewatch.evalset import load_eval_set
from routewatch.scaffold import EVAL_TEMPLATE, template_text
from routewatch.store.runs import (
    STALE_AFTER,
    Claim,
    ClaimOutcome,
    LostClaimError,
    ResultRecord,
    ScoreRecord,
    StoredEvalSet,
    StoredResult,
    abandon_runs,
    claim_run,
    ensure_eval_set,
    ensure_route_snapshot,
    find_unfinished_run,
    finish_run,
    new_owner,
    orphaned_runs,
    owner_alive,
    release_owner,
    run_results,
    touch_run,
    write_results,
)
from routewatch.store.tables import (
    EvalItemRow,
    EvalSetRow,
    EvalSetSourceRow,
    RunRow,
    RunStatus,
    ScoreRow,
)

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
ROUTE = Route(provider="sim", model="m", evals=["support-faq"])


@pytest.fixture
def stored(engine: Engine, tmp_path: Path) -> StoredEvalSet:
    path = tmp_path / EVAL_TEMPLATE
    path.write_text(template_text(EVAL_TEMPLATE))
    return ensure_eval_set(engine, load_eval_set(path))


def claim(engine: Engine, stored: StoredEvalSet, owner: str, now: datetime = NOW) -> Claim:
    return claim_run(
        engine,
        route="chat",
        route_snapshot_id=ensure_route_snapshot(engine, "chat", ROUTE),
        eval_set=stored,
        eval_set_name="support-faq",
        slot_key=NOW.isoformat(),
        at=NOW,
        owner=owner,
        now=now,
    )


def record(item: str, sample: int = 0, eval_item_id: int = 1) -> ResultRecord:
    return ResultRecord(
        values={
            "eval_item_id": eval_item_id,
            "item_id": item,
            "sample": sample,
            "latency_ms": 1.0,
            "attempts": 1,
        },
        scores=[ScoreRecord(scorer="check:contains:0", value=1.0, passed=True)],
    )


def dead_owner() -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = new_owner().split(":", 1)[0]
    return f"{host}:{proc.stdout.strip()}:dead"


def test_storing_an_eval_set_twice_keeps_one_version(
    engine: Engine, stored: StoredEvalSet, tmp_path: Path
) -> None:
    again = ensure_eval_set(engine, load_eval_set(tmp_path / EVAL_TEMPLATE))

    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(EvalSetRow)).scalar()
    assert again == stored
    assert count == 1


def test_a_file_stored_before_takes_its_hashes_from_the_store(
    engine: Engine, stored: StoredEvalSet, tmp_path: Path
) -> None:
    # Marked hashes in the store show that the second load was found by its file's
    # digest and adopted them, instead of hashing every item again.
    with engine.begin() as conn:
        conn.execute(update(EvalSetRow).values(version="f" * 16))
        conn.execute(update(EvalItemRow).values(item_hash="e" * 16))
    again = load_eval_set(tmp_path / EVAL_TEMPLATE)

    found = ensure_eval_set(engine, again)

    assert found == stored
    assert again.version == "f" * 16
    assert {item.hash for item in again.items} == {"e" * 16}


def test_an_edit_outside_the_version_adds_a_source_of_the_same_version(
    engine: Engine, stored: StoredEvalSet, tmp_path: Path
) -> None:
    path = tmp_path / EVAL_TEMPLATE
    path.write_text("# reviewed\n" + path.read_text())

    again = ensure_eval_set(engine, load_eval_set(path))
    once_more = ensure_eval_set(engine, load_eval_set(path))

    with engine.connect() as conn:
        sources = conn.execute(
            select(EvalSetSourceRow.eval_set_id).order_by(EvalSetSourceRow.created_at)
        ).scalars()
        assert list(sources) == [stored.id, stored.id]
    assert again == once_more == stored


def test_a_digest_that_names_other_items_is_ignored_and_the_set_hashed(
    engine: Engine, stored: StoredEvalSet, tmp_path: Path
) -> None:
    path = tmp_path / EVAL_TEMPLATE
    original = path.read_text()
    path.write_text(original.replace("items:\n", "items:\n  - {id: extra, input: Extra?}\n", 1))
    other = ensure_eval_set(engine, load_eval_set(path))
    with engine.begin() as conn:
        conn.execute(update(EvalSetSourceRow).values(eval_set_id=other.id))
    path.write_text(original)
    reloaded, fresh = load_eval_set(path), load_eval_set(path)

    found = ensure_eval_set(engine, reloaded)

    assert other.id != stored.id
    assert found == stored
    assert reloaded.version == fresh.version
    assert [i.hash for i in reloaded.items] == [i.hash for i in fresh.items]


def test_first_claim_starts_and_second_live_claim_is_busy(
    engine: Engine, stored: StoredEvalSet
) -> None:
    first = claim(engine, stored, new_owner())
    second = claim(engine, stored, new_owner())

    assert first.outcome is ClaimOutcome.started
    assert second.outcome is ClaimOutcome.busy
    assert second.run_id == first.run_id


def test_claim_of_a_dead_owner_resumes(engine: Engine, stored: StoredEvalSet) -> None:
    first = claim(engine, stored, dead_owner())

    second = claim(engine, stored, new_owner())

    assert second.outcome is ClaimOutcome.resumed
    assert second.run_id == first.run_id


def test_a_released_owner_of_this_process_is_gone_at_once(
    engine: Engine, stored: StoredEvalSet
) -> None:
    """A replay ended by an unexpected error (say a database failover) releases its
    owner; the daemon, still alive under the same pid, can then resume the run."""
    owner = new_owner()
    first = claim(engine, stored, owner)
    assert orphaned_runs(engine, ["chat"], NOW) == []

    release_owner(owner)

    assert orphaned_runs(engine, ["chat"], NOW) == [("chat", first.at)]
    second = claim(engine, stored, new_owner())
    assert (second.outcome, second.run_id) == (ClaimOutcome.resumed, first.run_id)


def test_completed_slot_is_not_run_again(engine: Engine, stored: StoredEvalSet) -> None:
    owner = new_owner()
    first = claim(engine, stored, owner)
    finish_run(
        engine, run_id=first.run_id, owner=owner, now=NOW, status=RunStatus.completed, totals={}
    )

    assert claim(engine, stored, new_owner()).outcome is ClaimOutcome.completed


def _write_batch(engine: Engine, run_id: int, owner: str, now: datetime) -> None:
    write_results(engine, run_id=run_id, owner=owner, now=now, records=[record("a")])


def _finish_with_last_results(engine: Engine, run_id: int, owner: str, now: datetime) -> None:
    finish_run(
        engine,
        run_id=run_id,
        owner=owner,
        now=now,
        status=RunStatus.completed,
        totals={},
        records=[record("a")],
    )


@pytest.mark.parametrize("write", [_write_batch, _finish_with_last_results])
def test_a_process_that_lost_its_claim_writes_nothing(
    engine: Engine, stored: StoredEvalSet, write: Callable[[Engine, int, str, datetime], None]
) -> None:
    loser = "elsewhere:1:aaaa"
    run = claim(engine, stored, loser)
    later = NOW + STALE_AFTER + timedelta(seconds=1)
    assert claim(engine, stored, new_owner(), now=later).outcome is ClaimOutcome.resumed

    with pytest.raises(LostClaimError):
        write(engine, run.run_id, loser, later)

    assert run_results(engine, run.run_id) == []


def test_finish_run_writes_the_last_results_with_the_run_end(
    engine: Engine, stored: StoredEvalSet
) -> None:
    owner = new_owner()
    run = claim(engine, stored, owner)
    item = stored.item_ids["refund-window"]
    last = [record("refund-window", 0, item), record("refund-window", 1, item)]

    finish_run(
        engine,
        run_id=run.run_id,
        owner=owner,
        now=NOW,
        status=RunStatus.completed,
        totals={},
        records=last,
    )

    assert sorted(run_results(engine, run.run_id), key=lambda r: r.sample) == [
        r.facts() for r in last
    ]
    assert claim(engine, stored, new_owner()).outcome is ClaimOutcome.completed


def test_results_and_scores_are_written_together(engine: Engine, stored: StoredEvalSet) -> None:
    owner = new_owner()
    run = claim(engine, stored, owner)
    item = stored.item_ids["refund-window"]

    write_results(
        engine,
        run_id=run.run_id,
        owner=owner,
        now=NOW,
        records=[record("refund-window", 0, item), record("refund-window", 1, item)],
    )

    with engine.connect() as conn:
        scores = conn.execute(select(func.count()).select_from(ScoreRow)).scalar()
    read = run_results(engine, run.run_id)
    assert {(r.item_id, r.sample) for r in read} == {("refund-window", 0), ("refund-window", 1)}
    assert scores == 2


def test_each_score_is_stored_with_its_own_result(engine: Engine, stored: StoredEvalSet) -> None:
    owner = new_owner()
    run = claim(engine, stored, owner)
    item = stored.item_ids["refund-window"]
    records = [
        ResultRecord(
            values={
                **record("refund-window", n, item).values,
                "latency_ms": float(n),
                "ttft_ms": float(n) / 2 if n % 2 else None,  # some calls streamed
            },
            scores=[
                ScoreRecord(scorer=f"check:contains:{k}", value=(n + k) / 10, passed=None)
                for k in range(n % 3)
            ],
        )
        for n in (4, 0, 3, 1, 5, 2)
    ]

    write_results(engine, run_id=run.run_id, owner=owner, now=NOW, records=records)

    def by_sample(results: list[StoredResult]) -> list[StoredResult]:
        return sorted(results, key=lambda r: r.sample)

    assert by_sample(run_results(engine, run.run_id)) == by_sample([r.facts() for r in records])


def test_owner_on_another_host_counts_as_alive_until_stale() -> None:
    owner = "other-host@1:1:abcd"

    assert owner_alive(owner, NOW, NOW + STALE_AFTER - timedelta(seconds=1))
    assert not owner_alive(owner, NOW, NOW + STALE_AFTER)


def test_a_heartbeating_owner_elsewhere_is_never_taken_over(
    engine: Engine, stored: StoredEvalSet
) -> None:
    remote = "other-host@1:7:abcd"
    run = claim(engine, stored, remote)
    later = NOW + STALE_AFTER * 3
    touch_run(engine, run_id=run.run_id, owner=remote, now=later - timedelta(seconds=5))

    assert claim(engine, stored, new_owner(), now=later).outcome is ClaimOutcome.busy


def test_a_slot_started_with_another_route_config_is_not_resumed(
    engine: Engine, stored: StoredEvalSet
) -> None:
    claim(engine, stored, dead_owner())
    other = ensure_route_snapshot(engine, "chat", ROUTE.model_copy(update={"model": "m2"}))

    again = claim_run(
        engine,
        route="chat",
        route_snapshot_id=other,
        eval_set=stored,
        eval_set_name="support-faq",
        slot_key=NOW.isoformat(),
        at=NOW,
        owner=new_owner(),
        now=NOW,
    )

    assert again.outcome is ClaimOutcome.config_changed


def test_an_interrupted_run_of_another_config_is_cancelled_not_resumed(
    engine: Engine, stored: StoredEvalSet
) -> None:
    first = claim(engine, stored, dead_owner())
    other = ensure_route_snapshot(engine, "chat", ROUTE.model_copy(update={"model": "m2"}))

    found = find_unfinished_run(
        engine,
        route="chat",
        eval_set=stored,
        eval_set_name="support-faq",
        route_snapshot_id=other,
        now=NOW,
    )

    with engine.connect() as conn:
        status = conn.execute(select(RunRow.status).where(RunRow.id == first.run_id)).scalar()
    assert found is None
    assert status == "cancelled"


def test_a_records_facts_are_what_is_read_back(engine: Engine, stored: StoredEvalSet) -> None:
    owner = new_owner()
    run = claim(engine, stored, owner)
    item = stored.item_ids["refund-window"]
    records = [
        record("refund-window", 0, item),
        ResultRecord(
            values={
                "eval_item_id": item,
                "item_id": "refund-window",
                "sample": 1,
                "latency_ms": 3.5,
                "attempts": 2,
                "error_class": "timeout",
                "tokens_in": 7,
                "cost_usd": 0.25,
                "served_by_fallback": True,
            },
        ),
    ]

    write_results(engine, run_id=run.run_id, owner=owner, now=NOW, records=records)

    read = sorted(run_results(engine, run.run_id), key=lambda r: r.sample)
    assert read == [r.facts() for r in records]


def test_an_owner_names_this_boot_so_a_cloned_machine_is_another_host() -> None:
    """Machines cloned from one image share a hostname and the initial PID namespace's
    number; a live run on the clone must not look like this host's dead pid."""
    host = new_owner().split(":", 1)[0]
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    clone = host.rsplit("@", 1)[0] + "@0000beef"

    assert host.endswith(f"@{boot}")
    assert owner_alive(f"{clone}:999999:abcd", NOW, NOW), "elsewhere: its heartbeat decides"
    assert not owner_alive(f"{host}:{dead_owner().split(':')[1]}:abcd", NOW, NOW)


def orphans_seen_by_another_process(engine: Engine) -> list[str]:
    """``orphaned_runs`` as another process on this host sees them (pids are alive)."""
    url = engine.url.render_as_string(hide_password=False)
    code = (
        "import sys; from datetime import datetime\n"
        "from routewatch.store.migrate import create_engine_for\n"
        "from routewatch.store.runs import orphaned_runs\n"
        "found = orphaned_runs(create_engine_for(sys.argv[1]), ['chat'], "
        "datetime.fromisoformat(sys.argv[2]))\n"
        "print([route for route, _ in found])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url, NOW.isoformat()],
        capture_output=True,
        text=True,
        check=True,
    )
    found: list[str] = ast.literal_eval(done.stdout.strip())
    return found


def test_a_stopping_process_hands_its_running_runs_over_at_once(
    engine: Engine, stored: StoredEvalSet
) -> None:
    """The daemon's stop: its pid still exists, yet another daemon here takes the run at
    once instead of at its next catch-up."""
    owner = new_owner()
    claim(engine, stored, owner)
    release_owner(owner)  # the replay ended: cancelled by the stop
    assert orphans_seen_by_another_process(engine) == [], "this pid is alive"

    handed = abandon_runs(engine)

    assert handed == 1
    assert orphans_seen_by_another_process(engine) == ["chat"]
