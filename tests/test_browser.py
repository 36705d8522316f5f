"""The browser harness can fail: each check below is shown to see what it claims to see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import ARTIFACTS, MARKER, BrowserCheck, ChromiumSession, check_in_chromium

CLEAN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clean report</title>
<style>body { font-family: sans-serif; background: #fafafa } h1 { color: #234 }</style>
</head><body>
<h1>Weekly routes</h1>
<p>All routes healthy.</p>
<svg width="120" height="40" viewBox="0 0 120 40" role="img" aria-label="trend">
  <polyline points="0,30 40,10 80,20 120,5" fill="none" stroke="#2a7" stroke-width="3"/>
  <rect x="0" y="34" width="120" height="6" fill="#ccc"/>
</svg>
</body></html>
"""


def page(body: str, head: str = "") -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Report</title>'
        f"{head}</head><body><p>visible text</p>{body}</body></html>"
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[ChromiumSession]:
    with ChromiumSession.start() as session:
        yield session


@pytest.fixture
def check(chromium: ChromiumSession, tmp_path: Path, request: pytest.FixtureRequest):
    def run(html: str) -> BrowserCheck:
        path = tmp_path / "page.html"
        path.write_text(html, encoding="utf-8")
        name = request.node.name.replace("[", "-").replace("]", "")
        return chromium.check(path, screenshot=ARTIFACTS / f"browser-{name}.png")

    return run


def test_clean_page_makes_no_request_runs_no_script_and_is_screenshotted(check) -> None:
    result = check(CLEAN)
    assert result.requests == [], result.summary()
    assert not result.script_ran, result.summary()
    assert result.script_markup == []
    assert result.console == []
    assert result.title == "Clean report"
    assert "Weekly routes" in result.text
    assert "All routes healthy." in result.text
    assert result.screenshot.exists()
    assert result.screenshot.stat().st_size > 1000
    assert result.screenshot.read_bytes().startswith(b"\x89PNG")


def test_inline_script_is_seen(check) -> None:
    result = check(page("<script>document.title='PWNED'</script>"))
    assert result.script_ran
    assert result.title == MARKER
    assert result.scripts, "the protocol-level signal, not only the marker"
    assert "<script> element" in result.script_markup


def test_onerror_runs_and_remote_image_is_blocked_and_recorded(check) -> None:
    result = check(
        page(
            """<img src=x onerror="document.title='PWNED'">"""
            """<img src="https://example.com/a.png" alt="remote">"""
        )
    )
    assert "https://example.com/a.png" in result.requests
    assert any(u.startswith("file://") and u.endswith("/x") for u in result.requests), (
        "a relative URL is a request too"
    )
    assert result.script_ran
    assert result.title == MARKER
    assert "onerror attribute on <img>" in result.script_markup


def test_remote_stylesheet_is_a_request_but_not_a_script(check) -> None:
    result = check(page("", head='<link rel="stylesheet" href="https://fonts.example/x.css">'))
    assert result.requests == ["https://fonts.example/x.css"]
    assert not result.script_ran, result.summary()
    assert "visible text" in result.text, "a blocked stylesheet does not blank the page"


def test_csp_meta_stops_an_inline_script(check) -> None:
    csp = (
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
    )
    result = check(
        page(
            "<script>document.title='PWNED'</script>"
            """<svg onload="alert('PWNED')"></svg>""",
            head=csp,
        )
    )
    assert not result.script_ran, result.summary()
    assert result.title == "Report"
    assert result.csp_violations, "Chromium says what the policy blocked"
    assert "<script> element" in result.script_markup, "still there, just inert"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("""<svg onload="void 0"></svg>""", id="svg-onload-without-marker"),
        pytest.param("<script>alert(1)</script>", id="alert"),
        pytest.param("<script>console.log('hi')</script>", id="console-log"),
        pytest.param("<script>throw new Error('boom')</script>", id="uncaught-error"),
        pytest.param(
            """<details open ontoggle="document.title='PWNED'"><summary>s</summary></details>""",
            id="late-ontoggle",
        ),
        pytest.param(
            """<iframe srcdoc="<script>parent.document.title='PWNED'</script>"></iframe>""",
            id="srcdoc-frame",
        ),
        pytest.param(
            """<iframe src="data:text/html,<script>console.log(1)</script>"></iframe>""",
            id="data-url-frame",
        ),
        pytest.param(
            """<iframe src="javascript:'x'"></iframe>""",
            id="javascript-url-frame",
        ),
    ],
)
def test_any_script_counts(check, body: str) -> None:
    result = check(page(body))
    assert result.script_ran, result.summary()
    assert result.scripts, result.summary()
    assert result.requests == [], result.summary()


def test_each_signal_is_reported_on_its_own(check) -> None:
    alert = check(page("<script>alert('PWNED')</script>"))
    assert alert.dialogs == ["alert('PWNED')"]
    logged = check(page("<script>console.warn('hi', 2)</script>"))
    assert logged.console_api == ["warning(hi 2)"]
    thrown = check(page("<script>throw new Error('boom')</script>"))
    assert len(thrown.page_errors) == 1
    assert "boom" in thrown.page_errors[0]


def test_escaped_payload_text_is_not_a_script(check) -> None:
    escaped = "&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;"
    result = check(page(f"<td>{escaped}</td>").replace("<title>Report", f"<title>{escaped}"))
    assert not result.script_ran, result.summary()
    assert "<script>document.title='PWNED'</script>" in result.text
    assert result.title == "<script>document.title='PWNED'</script>"
    assert result.script_markup == []


def test_latent_handler_does_not_run_but_is_found_in_the_markup(check) -> None:
    result = check(page("""<a href=" javascript:alert(1)" onclick="alert(2)">link</a>"""))
    assert not result.script_ran, result.summary()
    assert sorted(result.script_markup) == [
        "javascript: URL in href of <a>",
        "onclick attribute on <a>",
    ]


def test_check_in_chromium_starts_its_own_browser(tmp_path: Path) -> None:
    path = tmp_path / "own.html"
    path.write_text(CLEAN, encoding="utf-8")
    result = check_in_chromium(path, screenshot=ARTIFACTS / "browser-own.png")
    assert result.requests == []
    assert not result.script_ran
    assert result.screenshot.stat().st_size > 1000


def test_missing_file_is_an_error(chromium: ChromiumSession, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        chromium.check(tmp_path / "nope.html")


def test_missing_chromium_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        ChromiumSession.start(Path("/nonexistent/chromium"))


def test_missing_chromium_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser checks"):
        ChromiumSession.start(Path("/nonexistent/chromium"))


def test_chromium_that_does_not_start_fails_loudly_with_its_stderr(tmp_path: Path) -> None:
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\necho 'cannot start: no such display' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(pytest.fail.Exception, match="did not start") as failed:
        ChromiumSession.start(broken)
    assert "cannot start: no such display" in str(failed.value)
