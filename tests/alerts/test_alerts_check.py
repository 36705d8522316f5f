"""`routewatch alerts test`: a test event to every target, now, against local receivers."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
import yaml

from receivers import receiver
from routewatch.cli import run

SECRET = "whsec-alerts-test-never-printed"
SLACK_TOKEN = "T0TEST/B0TEST/XXXXalertstesttoken"
QUERY_SECRET = "qs-9f1c-never-printed"


def write_config(tmp_path: Path, alerts: dict[str, object]) -> Path:
    path = tmp_path / "routewatch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path / 'rw.db'}",
                "alerts": {**alerts, "delivery": {"timeout_s": 2}},
            }
        )
    )
    return path


def test_every_target_gets_a_test_event_and_each_answer_is_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiver() as good, receiver(status=500) as down:
        monkeypatch.setenv("RW_TEST_SLACK_URL", f"{good.url}/services/{SLACK_TOKEN}")
        monkeypatch.setenv("RW_TEST_HOOK_SECRET", SECRET)
        config = write_config(
            tmp_path,
            {
                "slack": {"webhook_url_env": "RW_TEST_SLACK_URL"},
                "webhooks": [
                    {"name": "ops", "url": f"{good.url}/hook", "secret_env": "RW_TEST_HOOK_SECRET"},
                    {"name": "pager", "url": f"{down.url}/in?token={QUERY_SECRET}"},
                ],
            },
        )

        code = run(["alerts", "test", "-c", str(config)])

        out, err = capsys.readouterr()
        slack, hook = good.requests
        assert slack.path == f"/services/{SLACK_TOKEN}"
        assert "routewatch test alert" in slack.body.decode()
        signature = "sha256=" + hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
        assert hook.headers["x-routewatch-signature"] == signature
        assert hook.json()["event"] == "alert.test"
        assert len(down.requests) == 1, "sent once: no retries"
    assert code == 2
    assert out.splitlines() == [
        "slack: delivered (HTTP 200)",
        f"webhook ops ({good.url}/hook): delivered (HTTP 200)",
    ]
    assert err.startswith(f"webhook pager ({down.url}/in): failed (HTTP 500)")
    for secret in (SECRET, SLACK_TOKEN, QUERY_SECRET):
        assert secret not in out + err
    assert not (tmp_path / "rw.db").exists(), "nothing stored: the database is not opened"


def test_an_unset_secret_fails_its_target_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RW_TEST_SLACK_URL", raising=False)
    config = write_config(tmp_path, {"slack": {"webhook_url_env": "RW_TEST_SLACK_URL"}})

    assert run(["alerts", "test", "-c", str(config)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("slack: failed (no answer): ")
    assert "RW_TEST_SLACK_URL" in err


def test_no_target_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["alerts", "test", "-c", str(write_config(tmp_path, {}))]) == 1
    assert "no alert target is configured" in capsys.readouterr().err
