"""Store fixtures: a migrated database on both backends, a session, and minimal rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from routewatch.store.migrate import create_engine_for, upgrade
from routewatch.store.tables import (
    EvalItemRow,
    EvalSetRow,
    ResultRow,
    RouteSnapshotRow,
    RunRow,
)

AT = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


@pytest.fixture
def item(session: Session) -> EvalItemRow:
    eval_set = EvalSetRow(
        name="support-faq",
        version="0123456789abcdef",
        scale_min=1,
        scale_max=5,
        pass_threshold=0.7,
        definition={"name": "support-faq"},
    )
    session.add(eval_set)
    session.flush()
    item = EvalItemRow(
        eval_set_id=eval_set.id,
        item_id="refund-window",
        item_hash="fedcba9876543210",
        position=0,
        weight=1.0,
        critical=False,
        definition={"input": "How long do I have to ask for a refund?"},
    )
    session.add(item)
    session.flush()
    return item


@pytest.fixture
def make_run(session: Session, item: EvalItemRow) -> Callable[..., RunRow]:
    snapshot = RouteSnapshotRow(
        route="chat-flash",
        provider="gateway",
        model="deepseek-ai/DeepSeek-V4-Flash",
        params={"temperature": 0.2},
        config_hash="00112233aabbccdd",
    )
    session.add(snapshot)
    session.flush()

    def make(**fields: Any) -> RunRow:
        run = RunRow(
            **{
                "route": "chat-flash",
                "route_snapshot_id": snapshot.id,
                "eval_set_id": item.eval_set_id,
                "eval_set_name": "support-faq",
                "slot_key": AT.isoformat(),
                "at": AT,
                "started_at": AT,
                "status": "running",
                **fields,
            }
        )
        session.add(run)
        session.flush()
        return run

    return make


@pytest.fixture
def make_result(
    session: Session, item: EvalItemRow, make_run: Callable[..., RunRow]
) -> Callable[..., ResultRow]:
    def make(**fields: Any) -> ResultRow:
        if "run_id" not in fields:
            fields["run_id"] = make_run().id
        result = ResultRow(
            **{
                "eval_item_id": item.id,
                "item_id": item.item_id,
                "sample": 0,
                "output": "30 days from delivery.",
                "latency_ms": 120.0,
                "attempts": 1,
                **fields,
            }
        )
        session.add(result)
        session.flush()
        return result

    return make
