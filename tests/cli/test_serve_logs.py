"""``serve --log-format json``: one JSON object per line, with the message and its level."""

from __future__ import annotations

import json
import logging

from routewatch.cli.serve import JsonFormatter


def test_a_json_log_line_parses_and_keeps_level_logger_and_message() -> None:
    record = logging.LogRecord(
        "routewatch.daemon", logging.INFO, __file__, 1, "run %d done: score=%s", (7, "0.812"), None
    )

    line = JsonFormatter().format(record)

    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "info"
    assert entry["logger"] == "routewatch.daemon"
    assert entry["message"] == "run 7 done: score=0.812"
    assert "time" in entry


def test_an_exception_travels_inside_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "routewatch.daemon", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )

    entry = json.loads(JsonFormatter().format(record))

    assert "ValueError: boom" in entry["error"]
