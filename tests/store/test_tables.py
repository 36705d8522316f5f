from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from routewatch.store.migrate import create_engine_for, upgrade
from routewatch.store.tables import (
    JudgeSpendRow,
    ResultRow,
    RunRow,
    RunStatus,
    SchedulerLeaseRow,
    ScoreRow,
)

PLUS_TWO = timezone(timedelta(hours=2))


def test_utc_datetime_reads_back_the_same_instant_in_utc(session: Session) -> None:
    written = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=PLUS_TWO)
    session.add(SchedulerLeaseRow(name="scheduler", owner="a", expires_at=written))
    session.commit()
    session.expunge_all()

    read = session.scalars(select(SchedulerLeaseRow.expires_at)).one()

    assert read == written
    assert read.tzinfo is UTC
    assert read.hour == 10


@pytest.mark.postgres
def test_utc_datetime_reads_utc_whatever_the_postgres_session_time_zone(pg_url: str) -> None:
    upgrade(pg_url)
    engine = create_engine_for(pg_url)
    with Session(engine) as session:
        session.execute(text("SET TIME ZONE 'Asia/Kolkata'"))
        written = datetime(2026, 3, 1, 12, 0, tzinfo=PLUS_TWO)
        session.add(SchedulerLeaseRow(name="scheduler", owner="a", expires_at=written))
        session.flush()
        session.expunge_all()

        read = session.scalars(select(SchedulerLeaseRow.expires_at)).one()

    engine.dispose()
    assert (read, read.tzinfo) == (written, UTC)


def test_utc_datetime_refuses_a_naive_datetime(session: Session) -> None:
    naive = datetime(2026, 3, 1, 12, 0)  # noqa: DTZ001 - naive on purpose
    session.add(SchedulerLeaseRow(name="scheduler", owner="a", expires_at=naive))

    with pytest.raises(StatementError, match="naive datetime") as raised:
        session.flush()

    assert isinstance(raised.value.orig, ValueError)


def test_second_result_for_same_run_item_and_sample_is_refused(
    make_result: Callable[..., ResultRow],
) -> None:
    first = make_result(sample=0)

    with pytest.raises(IntegrityError):
        make_result(run_id=first.run_id, sample=0)


def test_another_sample_of_the_same_item_is_accepted(
    make_result: Callable[..., ResultRow],
) -> None:
    first = make_result(sample=0)

    second = make_result(run_id=first.run_id, sample=1)

    assert second.id != first.id


def test_second_run_for_same_route_eval_set_and_slot_is_refused(
    make_run: Callable[..., RunRow],
) -> None:
    make_run(slot_key="2026-03-01T06:00:00+00:00")

    with pytest.raises(IntegrityError):
        make_run(slot_key="2026-03-01T06:00:00+00:00")


def test_every_run_status_is_accepted(make_run: Callable[..., RunRow]) -> None:
    runs = [make_run(status=status, slot_key=f"manual:{status}") for status in RunStatus]

    assert [run.status for run in runs] == list(RunStatus)


def test_run_status_outside_the_vocabulary_is_refused(make_run: Callable[..., RunRow]) -> None:
    with pytest.raises(IntegrityError):
        make_run(status="done")


def test_deleting_a_run_deletes_its_results_and_their_scores(
    session: Session, make_result: Callable[..., ResultRow]
) -> None:
    result = make_result()
    session.add(ScoreRow(result_id=result.id, scorer="check:contains:0", value=1.0))
    session.flush()

    session.delete(session.get_one(RunRow, result.run_id))
    session.flush()
    session.expunge_all()

    assert session.scalars(select(ResultRow)).all() == []
    assert session.scalars(select(ScoreRow)).all() == []


def test_result_for_a_missing_run_is_refused(make_result: Callable[..., ResultRow]) -> None:
    with pytest.raises(IntegrityError):
        make_result(run_id=999_999)


def test_nullable_json_none_is_stored_as_sql_null(
    session: Session, make_result: Callable[..., ResultRow]
) -> None:
    make_result(response_meta=None)

    ids = session.scalars(select(ResultRow.id).where(ResultRow.response_meta.is_(None))).all()

    assert len(ids) == 1


def test_server_defaults_fill_columns_a_plain_insert_leaves_out(session: Session) -> None:
    session.execute(text("INSERT INTO judge_spend (judge, day) VALUES ('default', '2026-03-01')"))

    spend = session.scalars(select(JudgeSpendRow)).one()

    assert (spend.day, spend.cost_usd, spend.calls) == (date(2026, 3, 1), 0, 0)
