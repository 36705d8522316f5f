"""Open a local HTML file in headless Debian Chromium, network off, and report what it did.

The weekly report is one self-contained HTML file with no scripts of its own, so in a
browser it must (a) make no request besides loading itself and (b) run no script at all.
``check_in_chromium`` loads the file in ``/usr/bin/chromium`` (Debian's package, driven
by Playwright; a browser from ``playwright install`` does not work on these machines),
takes a full-page screenshot and returns a ``BrowserCheck``::

    from browser import ChromiumSession, check_in_chromium

    result = check_in_chromium(html_path, screenshot=Path("tests/artifacts/report.png"))
    assert result.requests == [], result.summary()
    assert not result.script_ran, result.summary()

Each ``check_in_chromium`` call without ``session=`` starts and stops a browser (about a
second; a check in a running one takes about half a second); a test module with several
checks should share one::

    @pytest.fixture(scope="module")
    def chromium() -> Iterator[ChromiumSession]:
        with ChromiumSession.start() as session:
            yield session

Requests
    Every request other than the main frame's navigation to the file itself is aborted
    (``context.route``) and its URL recorded in ``requests``, in order: http(s), ws(s),
    ``file://`` (a sibling file is outside a self-contained report too) and anything else
    the network stack sees. The context is also ``offline``. (Playwright's
    ``service_workers="block"`` is not used: it works by a script in the page's main world,
    which would blur the script signal, and a ``file://`` page cannot register one anyway.)
    ``data:`` URLs are not requests: Chromium decodes them in place and no hook sees them,
    so they are neither blocked nor listed (a self-contained report may use them).

Script execution (``script_ran``)
    JavaScript stays enabled, so an injected payload runs as it would for a reader, and the
    harness watches the page's main world (every frame's, through the DevTools protocol):

    * ``scripts``: every script V8 compiled there: inline ``<script>``, an event-handler
      attribute that fired (``onerror``, ``onload``, ``ontoggle``...), ``javascript:``
      URLs, ``srcdoc`` and ``data:`` frames. A clean page compiles none; Playwright's own
      helpers run in an isolated world and are not counted, nor is any script the driver
      had already put into the blank page before navigation. This alone catches any
      payload that runs.
    * ``console_api``: calls of ``console.*`` by page script (not the browser's own
      messages, which are in ``console``).
    * ``page_errors``: uncaught exceptions; ``dialogs``: ``alert``/``confirm``/``prompt``
      (dismissed).
    * the title: a payload sets ``document.title = 'PWNED'`` (``MARKER``), so a title
      equal to it counts. Only equality: the escaped text of a payload, shown on the page
      or in the title, contains the marker without anything having run.

    Test payloads should set ``document.title = 'PWNED'`` or call ``alert()``, so that
    they fail loudly even if the protocol-level signal ever broke; but any script
    compiled in the page makes ``script_ran`` true.

    ``script_markup`` is separate, static and best-effort: ``<script>`` elements,
    ``on*`` attributes and ``javascript:`` URLs present in the final DOM of the top
    document, whether or not they ran (an ``onclick`` never fires in a screenshot).

    Browser messages such as a blocked load or a malformed SVG attribute are not script:
    they stay in ``console``. Messages about the page's Content-Security-Policy are also
    collected in ``csp_violations``.

Failures
    If ``/usr/bin/chromium`` is missing the test is skipped, except in CI (``CI=true``),
    where it fails: CI must run the browser checks (.ci/run installs the package). If
    Chromium is there but does not start, the test fails with Playwright's message, which
    carries the browser's stderr. A crash or a load that does not finish raises.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import pytest
from playwright.sync_api import (
    Browser,
    CDPSession,
    ConsoleMessage,
    Dialog,
    Playwright,
    Request,
    Route,
    ViewportSize,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = Path("/usr/bin/chromium")
# ECOSYSTEM.md, "Browser checks". Playwright adds --headless and a fresh --user-data-dir.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
)
# No --disable-features here: Chromium keeps only the last one, which would undo
# Playwright's. Site isolation stays on; a frame that could get a process of its own
# (cross-site) needs the network, so every frame that can run script is in the page's
# renderer, where the DevTools session sees it (tests: srcdoc and data: frames).
ARTIFACTS = Path(__file__).parent / "artifacts"
MARKER = "PWNED"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
TIMEOUT_MS = 15_000

# Runs in an isolated world of our own: page script cannot see or tamper with it.
_SCRIPT_MARKUP_JS = r"""
(() => {
  const urlAttrs = new Set(["href", "src", "action", "formaction", "xlink:href", "data"]);
  const found = [];
  for (const el of document.querySelectorAll("*")) {
    const tag = el.localName;
    if (tag === "script") found.push("<script> element");
    for (const a of el.attributes) {
      const name = a.name.toLowerCase();
      if (name.startsWith("on")) {
        found.push(`${name} attribute on <${tag}>`);
      } else if (urlAttrs.has(name)
                 && /^javascript:/i.test(a.value.replace(/[\u0000-\u0020]/g, ""))) {
        found.push(`javascript: URL in ${name} of <${tag}>`);
      }
    }
  }
  return found;
})()
"""


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@dataclass(frozen=True)
class BrowserCheck:
    """What one page load in Chromium did; see the module docstring for each field."""

    url: str
    title: str
    text: str
    screenshot: Path
    requests: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    console_api: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    script_markup: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def script_ran(self) -> bool:
        """Whether any page script ran (compiled, logged, threw, opened a dialog, marked)."""
        return bool(self.script_evidence)

    @property
    def script_evidence(self) -> list[str]:
        """One line for each sign that page script ran; empty for a page without any."""
        evidence = [f"script compiled: {s}" for s in self.scripts]
        evidence += [f"console.{m}" for m in self.console_api]
        evidence += [f"page error: {e}" for e in self.page_errors]
        evidence += [f"dialog: {d}" for d in self.dialogs]
        if self.title.strip() == MARKER:
            evidence.append(f"document.title is {MARKER!r}")
        return evidence

    def summary(self) -> str:
        """A multi-line account for assertion messages."""
        lines = [f"{self.url} (title {self.title!r}, screenshot {self.screenshot})"]
        lines += [f"  request (blocked): {u}" for u in self.requests]
        lines += [f"  {e}" for e in self.script_evidence]
        lines += [f"  script markup: {m}" for m in self.script_markup]
        lines += [f"  console: {m}" for m in self.console]
        return "\n".join(lines)


class ChromiumSession:
    """One running Chromium; ``check`` opens each page in a fresh context."""

    # Playwright's sync API allows one driver per thread at a time, so sessions that are
    # open together (a module fixture and a bare check_in_chromium) share it.
    _driver: Playwright | None = None
    _users = 0

    def __init__(self, browser: Browser) -> None:
        self._browser = browser
        self._closed = False

    @classmethod
    def _acquire_driver(cls) -> Playwright:
        if cls._driver is None:
            cls._driver = sync_playwright().start()
        cls._users += 1
        return cls._driver

    @classmethod
    def _release_driver(cls) -> None:
        cls._users -= 1
        if cls._users == 0 and cls._driver is not None:
            driver, cls._driver = cls._driver, None
            driver.stop()

    @classmethod
    def start(cls, executable: Path = CHROMIUM) -> ChromiumSession:
        """Launch Chromium; skip (or fail, in CI) when it is not installed."""
        if not executable.exists():
            reason = f"{executable} is missing (apt-get install chromium)"
            if _in_ci():
                _fail(f"{reason}: CI must run the browser checks")
            pytest.skip(f"{reason}: browser checks skipped")
        playwright = cls._acquire_driver()
        try:
            browser = playwright.chromium.launch(
                executable_path=str(executable),
                args=list(CHROMIUM_ARGS),
                headless=True,
                timeout=TIMEOUT_MS,
            )
        except PlaywrightError as exc:
            cls._release_driver()
            _fail(f"Chromium ({executable}) did not start:\n{exc}")
        return cls(browser)

    def close(self) -> None:
        """Close the browser, and Playwright's driver if no other session uses it."""
        if self._closed:
            return
        self._closed = True
        try:
            self._browser.close()
        finally:
            self._release_driver()

    def __enter__(self) -> ChromiumSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def overflow(self, html_path: Path, *, width: int, media: str = "screen") -> tuple[int, int]:
        """How far the page, and its widest table, run past a ``width``-pixel window.

        Returns (page overflow, table overflow) in CSS pixels, 0 when all shows: a table
        in a scrolling box may run past the window while the page does not.
        ``media`` is ``screen`` or ``print`` (print at the paper's printable width).
        """
        page = self._browser.new_page(viewport={"width": width, "height": 900})
        try:
            page.emulate_media(media="print" if media == "print" else "screen")
            page.goto(html_path.resolve().as_uri(), timeout=TIMEOUT_MS)
            found: list[int] = page.evaluate(
                """() => {
                    const view = document.documentElement.clientWidth;
                    const rights = [...document.querySelectorAll('table')]
                        .map(t => t.getBoundingClientRect().right);
                    return [Math.max(0, document.documentElement.scrollWidth - view),
                            Math.max(0, Math.ceil(Math.max(0, ...rights) - view))];
                }"""
            )
        finally:
            page.close()
        return found[0], found[1]

    def check(
        self, html_path: Path, *, screenshot: Path | None = None, settle_ms: int = 100
    ) -> BrowserCheck:
        """Load ``html_path`` with the network off; screenshot it; report what it did.

        ``screenshot`` defaults to ``tests/artifacts/<stem>.png``; its folder is created.
        ``settle_ms`` is how long to wait after the load event for late handlers
        (``ontoggle``, ``onfocus``, timers) before the page is read.
        """
        html_path = Path(html_path).resolve()
        if not html_path.is_file():
            raise FileNotFoundError(html_path)
        url = html_path.as_uri()
        shot = Path(screenshot) if screenshot is not None else ARTIFACTS / f"{html_path.stem}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()

        requests: list[str] = []
        console: list[str] = []
        console_api: list[str] = []
        page_errors: list[str] = []
        dialogs: list[str] = []
        contexts: dict[int, dict[str, Any]] = {}
        parsed: list[dict[str, Any]] = []
        crashed: list[str] = []

        def is_self(request: Request) -> bool:
            return (
                request.is_navigation_request()
                and request.frame.parent_frame is None
                and request.url.split("#", 1)[0] == url
            )

        def on_route(route: Route) -> None:
            if is_self(route.request):
                route.continue_()
            else:
                route.abort("blockedbyclient")

        def on_request(request: Request) -> None:
            if not is_self(request):
                requests.append(request.url)

        def on_console(message: ConsoleMessage) -> None:
            console.append(f"{message.type}: {message.text}")

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(f"{dialog.type}({dialog.message!r})")
            dialog.dismiss()

        def on_console_api(event: dict[str, Any]) -> None:
            args = event.get("args", [])
            shown = " ".join(str(a.get("value", a.get("description", a.get("type")))) for a in args)
            console_api.append(f"{event.get('type')}({shown})")

        def on_exception(event: dict[str, Any]) -> None:
            details = event["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            page_errors.append(str(text))

        context = self._browser.new_context(
            offline=True,
            java_script_enabled=True,
            viewport=VIEWPORT,
            device_scale_factor=1,
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            context.route("**/*", on_route)
            context.on("request", on_request)
            page = context.new_page()
            page.on("console", on_console)
            page.on("dialog", on_dialog)
            page.on("crash", lambda _: crashed.append("renderer crashed"))
            cdp: CDPSession = context.new_cdp_session(page)
            cdp.on(
                "Runtime.executionContextCreated",
                lambda e: contexts.__setitem__(e["context"]["id"], e["context"]),
            )
            cdp.on("Runtime.consoleAPICalled", on_console_api)
            cdp.on("Runtime.exceptionThrown", on_exception)
            cdp.on("Debugger.scriptParsed", lambda e: parsed.append(e))
            cdp.send("Runtime.enable")
            cdp.send("Debugger.enable")
            # What the driver itself put in the blank page's main world (init scripts, if
            # a Playwright option ever adds one) is the harness's, not the page's.
            harness = {p["hash"] for p in parsed if _in_main_world(p, contexts)}
            try:
                page.goto(url, wait_until="load")
            except PlaywrightError as exc:
                raise RuntimeError(f"Chromium could not load {url}: {exc}") from exc
            page.wait_for_timeout(settle_ms)
            page.screenshot(path=str(shot), full_page=True)
            title = page.title()
            text = page.locator("body").inner_text()
            script_markup = _script_markup(cdp)
            if crashed:
                raise RuntimeError(f"Chromium's renderer crashed on {url}")
            scripts = [
                f"{p.get('url') or '(no url)'}:{p['startLine'] + 1}:{p['startColumn'] + 1}"
                for p in parsed
                if _in_main_world(p, contexts) and p["hash"] not in harness
            ]
            cdp.detach()
        finally:
            context.close()
        return BrowserCheck(
            url=url,
            title=title,
            text=text,
            screenshot=shot,
            requests=requests,
            scripts=scripts,
            console_api=console_api,
            page_errors=page_errors,
            dialogs=dialogs,
            console=console,
            csp_violations=[m for m in console if "Content Security Policy" in m],
            script_markup=script_markup,
            seconds=time.monotonic() - started,
        )


def _in_main_world(script: dict[str, Any], contexts: dict[int, dict[str, Any]]) -> bool:
    context = contexts.get(script["executionContextId"], {})
    return bool(context.get("auxData", {}).get("isDefault"))


def _script_markup(cdp: CDPSession) -> list[str]:
    """Scan the top document's DOM from an isolated world of our own."""
    frame_id = cdp.send("Page.getFrameTree")["frameTree"]["frame"]["id"]
    world = cdp.send(
        "Page.createIsolatedWorld", {"frameId": frame_id, "worldName": "routewatch-check"}
    )
    result = cdp.send(
        "Runtime.evaluate",
        {
            "expression": _SCRIPT_MARKUP_JS,
            "contextId": world["executionContextId"],
            "returnByValue": True,
        },
    )
    if "exceptionDetails" in result:
        raise RuntimeError(f"script-markup scan failed: {result['exceptionDetails']}")
    return [str(item) for item in result["result"]["value"]]


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def check_in_chromium(
    html_path: Path,
    *,
    screenshot: Path | None = None,
    session: ChromiumSession | None = None,
    settle_ms: int = 100,
) -> BrowserCheck:
    """Check one page; in ``session`` if given, else in a browser started for this call."""
    if session is not None:
        return session.check(html_path, screenshot=screenshot, settle_ms=settle_ms)
    with ChromiumSession.start() as own:
        return own.check(html_path, screenshot=screenshot, settle_ms=settle_ms)
