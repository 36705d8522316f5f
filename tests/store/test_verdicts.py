"""Canary verdicts as stored, and as the ``judge.drift`` event lists them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from routewatch.detect.baseline import RunRecord
from routewatch.store.detection import judge_drift_body
from routewatch.store.tables import CANARY_ERROR_LENGTH, RunRow
from routewatch.store.verdicts import CanaryRecord, store_canary_results

AT = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def test_judge_drift_lists_each_canarys_error_cut_to_its_column(
    engine: Engine, session: Session, make_run: Callable[..., RunRow]
) -> None:
    """On PostgreSQL a longer error would not fit ``varchar(500)`` at all."""
    run = make_run(status="completed")
    session.commit()
    failed = "judge call failed: server_error: HTTP 503: " + "down " * 200
    records = [
        CanaryRecord(canary_index=0, criterion="correctness", expected=5.0, observed=1.0),
        CanaryRecord(
            canary_index=1, criterion="correctness", expected=5.0, observed=None, error=failed
        ),
    ]
    store_canary_results(
        engine, run_id=run.id, eval_set_id=run.eval_set_id, records=records, now=AT
    )

    with engine.connect() as conn:
        record = RunRecord(run_id=run.id, at=AT, items={}, results_total=0, errors_total=0)
        body = judge_drift_body(conn, "chat-flash", "support-faq", record)

    answered, unanswered = body["canaries"]
    assert answered == {"criterion": "correctness", "expected": 5.0, "got": 1.0, "error": None}
    assert unanswered["got"] is None
    assert len(unanswered["error"]) == CANARY_ERROR_LENGTH
    assert unanswered["error"] == failed[: CANARY_ERROR_LENGTH - 1] + "…"
