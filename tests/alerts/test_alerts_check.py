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
PATH_SECRET = "pathtoken-5d2e-never-printed"


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
        monkeypatch.setenv("RW_TEST_PATH_TOKEN", PATH_SECRET)
        config = write_config(
            tmp_path,
            {
                "slack": {"webhook_url_env": "RW_TEST_SLACK_URL"},
                "webhooks": [
                    {
                        "name": "ops",
                        "url": good.url + "/hook/${RW_TEST_PATH_TOKEN}",
                        "secret_env": "RW_TEST_HOOK_SECRET",
                    },
                    {"name": "pager", "url": f"{down.url}/in?token={QUERY_SECRET}"},
                ],
            },
        )

        code = run(["alerts", "test", "-c", str(config)])

        out, err = capsys.readouterr()
        slack, hook = good.requests
        assert slack.path == f"/services/{SLACK_TOKEN}"
        assert "routewatch test alert" in slack.body.decode()
        assert hook.path == f"/hook/{PATH_SECRET}"
        signature = "sha256=" + hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
        assert hook.headers["x-routewatch-signature"] == signature
        assert hook.json()["event"] == "alert.test"
        assert len(down.requests) == 1, "sent once: no retries"
    assert code == 2
    lines = out.splitlines()
    assert lines[:2] == [
        "slack: delivered (HTTP 200)",
        f"webhook ops ({good.url}): delivered (HTTP 200)",
    ]
    assert lines[2].startswith(f"webhook pager ({down.url}): failed: HTTP 500")
    for secret in (SECRET, SLACK_TOKEN, QUERY_SECRET, PATH_SECRET):
        assert secret not in out + err
    assert not (tmp_path / "rw.db").exists(), "nothing stored: the database is not opened"


def test_a_receiver_that_quotes_the_request_does_not_leak_its_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local receiver answers 404 with the path and query it was sent."""
    with receiver(status=404, echo=True) as echo:
        url = f"{echo.url}/hooks/{PATH_SECRET}?token={QUERY_SECRET}"
        config = write_config(tmp_path, {"webhooks": [{"name": "echo", "url": url}]})

        assert run(["alerts", "test", "-c", str(config)]) == 2

    out = capsys.readouterr().out
    assert "failed: HTTP 404: no such hook: <webhook url>" in out
    assert PATH_SECRET not in out
    assert QUERY_SECRET not in out


def test_an_unset_secret_or_a_bad_port_fails_its_target_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RW_TEST_SLACK_URL", raising=False)
    config = write_config(
        tmp_path,
        {
            "slack": {"webhook_url_env": "RW_TEST_SLACK_URL"},
            "webhooks": [{"name": "odd", "url": "http://127.0.0.1:99999/x"}],
        },
    )

    assert run(["alerts", "test", "-c", str(config)]) == 2

    out, err = capsys.readouterr()
    slack, odd = out.splitlines()
    assert slack.startswith("slack: not sent: ")
    assert "RW_TEST_SLACK_URL" in slack
    assert odd.startswith("webhook odd (an invalid URL): failed: ")
    assert "Traceback" not in out + err


def test_no_target_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["alerts", "test", "-c", str(write_config(tmp_path, {}))]) == 1
    assert "no alert target is configured" in capsys.readouterr().err
