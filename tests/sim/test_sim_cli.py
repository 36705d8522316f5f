"""`routewatch sim serve`: located errors for bad scenarios, and a real server in a process."""

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from routewatch.cli import run


def test_a_bad_scenario_exits_1_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("models:\n  cheap:\n    quality: high\n")

    code = run(["sim", "serve", "--scenario", str(scenario)])

    assert code == 1
    assert f"{scenario}:3: models.cheap.quality: Input should be a valid number" in (
        capsys.readouterr().err
    )


def test_serve_prints_its_url_and_answers_until_interrupted(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "routewatch", "sim", "serve", "--port", "0"]
    with subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        base_url = first.rsplit(" ", 1)[-1]
        body = {"model": "any", "messages": [{"role": "user", "content": "hi"}]}
        try:
            response = httpx.post(f"{base_url}/chat/completions", json=body, timeout=5)
        finally:
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=10)

    assert first.startswith("routewatch simulator on http://127.0.0.1:")
    assert base_url.endswith("/v1")
    assert response.status_code == 200
    assert process.returncode == 0, err
