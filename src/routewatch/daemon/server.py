"""The daemon's HTTP surface: health, metrics, status, policies, reports and runs on demand.

``create_app(state)`` builds the Starlette app that ``routewatch serve`` runs beside the
scheduler; ``daemon.state`` is all it knows of the daemon. GETs are open. Every POST needs
``Authorization: Bearer`` with the token named by ``server.token_env``, and is refused
while no token is set. Handlers read ``state.config`` on each request, so a reload applies
at once; database work runs in the threadpool. Every error body is ``{"error": ...}``.
"""

from __future__ import annotations

import functools
import hmac
import html
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NamedTuple, TypeVar
from urllib.parse import quote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from routewatch import jsonstrict
from routewatch.alerts.dispatch import Dispatcher
from routewatch.config import Config, secret
from routewatch.daemon.metrics import database_down, first_line, metrics_registry
from routewatch.daemon.state import DaemonState
from routewatch.errors import MissingSecretError, UnavailableError, UsageError
from routewatch.policy import manage
from routewatch.policy.publishers import policy_json
from routewatch.report.render import CSP
from routewatch.status import build_status
from routewatch.store.incidents import MAX_REASON_CHARS, resolve_by_hand
from routewatch.store.policies import Reconciled
from routewatch.store.queries import incident_json, last_successful_runs, list_incidents

log = logging.getLogger("routewatch.daemon")

REPORT_NAME = re.compile(r"[\w.-]+\.html")
"""Report files that may be served (matched in full): a plain name in the folder, no path."""
REPORT_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
}
"""A report is self-contained (inline CSS and SVG): it may load nothing and run nothing."""

RouteName = Annotated[str, StringConstraints(min_length=1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunsRequest(_Body):
    """Body of ``POST /runs``."""

    routes: list[RouteName] = Field(default_factory=list)
    """Routes to run now; empty or missing: every route."""


class PinRequest(_Body):
    """Body of ``POST /policy/NAME/pin``."""

    routes: list[RouteName] = Field(min_length=1)
    """The chain to pin, most preferred first."""


class UnpinRequest(_Body):
    """Body of ``POST /policy/NAME/unpin``: none, or ``{}``."""


class ResolveRequest(_Body):
    """Body of ``POST /incidents/ID/resolve``: none, ``{}`` or a reason."""

    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)
    """Why, in words: kept with the incident and sent with its alert."""


B = TypeVar("B", bound=_Body)
Endpoint = Callable[[Request], Awaitable[Response]]


class DatabaseHealth(NamedTuple):
    """What ``/healthz`` learnt from the database."""

    reachable: bool
    last_successful_run: dict[str, datetime]


class ReportFile(NamedTuple):
    """A report in the reports folder."""

    name: str
    modified: datetime
    size: int


def create_app(state: DaemonState) -> Starlette:
    """Build the daemon's HTTP app on ``state``.

    Routes: ``GET /healthz``, ``/metrics``, ``/status``, ``/incidents``, ``/policy/{name}``,
    ``/reports/`` and ``/reports/{file}``; ``POST /runs``, ``/policy/{name}/pin``,
    ``/policy/{name}/unpin`` and ``/incidents/{id}/resolve`` (bearer token).
    """
    api = _Api(state)
    routes = [
        Route("/healthz", _guarded(api.healthz), methods=["GET"]),
        Route("/metrics", _guarded(api.metrics), methods=["GET"]),
        Route("/status", _guarded(api.status), methods=["GET"]),
        Route("/incidents", _guarded(api.incidents), methods=["GET"]),
        Route("/policy/{name}", _guarded(api.policy), methods=["GET"]),
        Route("/policy/{name}/pin", _guarded(api.pin), methods=["POST"]),
        Route("/policy/{name}/unpin", _guarded(api.unpin), methods=["POST"]),
        Route("/reports/", _guarded(api.reports_index), methods=["GET"]),
        Route("/reports/{file}", _guarded(api.report_file), methods=["GET"]),
        Route("/runs", _guarded(api.runs), methods=["POST"]),
        Route("/incidents/{id:int}/resolve", _guarded(api.resolve), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


class _Api:
    """The handlers, around one daemon's state and metrics registry."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state
        self.registry = metrics_registry(state)
        # One delivery pass at a time from here: two passes racing could let the older
        # one write a publisher file last.
        self.delivering = threading.Lock()

    async def healthz(self, request: Request) -> Response:
        state = self.state
        routes = list(state.config.routes)
        scheduler = state.scheduler_alive()
        database = await run_in_threadpool(_database_health, state.engine, routes)
        healthy = scheduler and database.reachable
        last = database.last_successful_run
        body = {
            "status": "ok" if healthy else "degraded",
            "scheduler": scheduler,
            "leader": state.is_leader(),
            "database": database.reachable,
            "started_at": _iso(state.started_at),
            "last_successful_run": {r: _iso(last[r]) if r in last else None for r in routes},
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def metrics(self, request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def status(self, request: Request) -> Response:
        body = await run_in_threadpool(build_status, self.state.engine, self.state.config)
        return JSONResponse(body.model_dump(mode="json"))

    async def incidents(self, request: Request) -> Response:
        """What ``incidents --json`` prints: open incidents, newest first.

        ``?all=true``: resolved ones too (the newest ``limit``, default 50);
        ``?route=NAME`` (repeatable): only those routes'.
        """
        query = request.query_params
        unknown_keys = sorted(set(query) - {"route", "all", "limit"})
        if unknown_keys:
            return _error(422, f"unknown query parameter(s) {', '.join(unknown_keys)}")
        show_all = query.get("all", "false").lower()
        if show_all not in ("true", "false", "1", "0"):
            return _error(422, "all: give true or false")
        every = show_all in ("true", "1")
        limit_text = query.get("limit", str(INCIDENTS_LIMIT))
        if not limit_text.isdigit() or int(limit_text) < 1:
            return _error(422, "limit: give a whole number of at least 1")
        config = self.state.config
        routes = list(dict.fromkeys(query.getlist("route")))

        def read() -> list[dict[str, Any]] | str:
            found = list_incidents(
                self.state.engine,
                routes or None,
                open_only=not every,
                limit=int(limit_text) if every else None,
            )
            others = [r for r in routes if r not in config.routes]
            stored = {
                i.route
                for i in list_incidents(self.state.engine, others, open_only=False, limit=None)
            }
            unknown = [r for r in others if r not in stored]
            if unknown:
                known = ", ".join(config.routes) or "none"
                return f"unknown route(s) {', '.join(unknown)}; known: {known}"
            return [{**incident_json(i), "configured": i.route in config.routes} for i in found]

        listed = await run_in_threadpool(read)
        if isinstance(listed, str):
            return _error(422, listed)
        return JSONResponse(listed)

    async def policy(self, request: Request) -> Response:
        config = self.state.config
        name = request.path_params["name"]
        if name not in config.policies:
            return _unknown_policy(config, name)
        current = await run_in_threadpool(manage.state, self.state.engine, config, name)
        return JSONResponse(policy_json(current))

    async def reports_index(self, request: Request) -> Response:
        files = await run_in_threadpool(_list_reports, self.state.reports_dir)
        return HTMLResponse(_index_html(files), headers=REPORT_HEADERS)

    async def report_file(self, request: Request) -> Response:
        content = await run_in_threadpool(
            _read_report, self.state.reports_dir, request.path_params["file"]
        )
        if content is None:
            return _error(404, "no such report; GET /reports/ lists them")
        return Response(content, media_type="text/html", headers=REPORT_HEADERS)

    async def runs(self, request: Request) -> Response:
        body = await self._authorized(request, RunsRequest)
        if isinstance(body, Response):
            return body
        requested = list(dict.fromkeys(body.routes))
        try:
            accepted = await self.state.trigger_runs(requested)
        except UsageError as exc:
            return _error(422, _usage_message(exc))
        except UnavailableError as exc:
            return _error(503, str(exc), headers={"Retry-After": "30"})
        log.info("runs requested through the API: %s", ", ".join(accepted) or "none")
        running = [r for r in requested or self.state.config.routes if r not in accepted]
        return JSONResponse({"accepted": accepted, "already_running": running}, status_code=202)

    async def pin(self, request: Request) -> Response:
        def apply(config: Config, name: str, body: PinRequest) -> Reconciled:
            return manage.pin(self.state.engine, config, name, body.routes, actor="api")

        name = request.path_params["name"]
        policy = self.state.config.policies.get(name)
        chain = policy.chain if policy is not None else []

        def warnings(body: PinRequest) -> list[str]:
            return manage.pin_warnings(self.state.engine, body.routes, policy=name, chain=chain)

        return await self._change(request, PinRequest, apply, warnings)

    async def unpin(self, request: Request) -> Response:
        def apply(config: Config, name: str, body: UnpinRequest) -> Reconciled:
            return manage.unpin(self.state.engine, config, name, actor="api")

        return await self._change(request, UnpinRequest, apply)

    async def resolve(self, request: Request) -> Response:
        """Resolve an incident by hand: answer with it, then deliver its alerts."""
        body = await self._authorized(request, ResolveRequest)
        if isinstance(body, Response):
            return body
        config, incident_id = self.state.config, request.path_params["id"]
        try:
            done = await run_in_threadpool(
                resolve_by_hand,
                self.state.engine,
                config,
                incident_id,
                actor="api",
                reason=body.reason,
            )
        except UsageError as exc:
            return _error(404, _usage_message(exc))
        if done.changed:
            log.info("incident #%d resolved through the API", incident_id)
        answer = {
            "incident": incident_json(done.incident),
            "changed": done.changed,
            "policy_actions": list(done.policy_actions),
        }
        task = BackgroundTask(self._deliver, config) if done.events else None
        return JSONResponse(answer, background=task)

    async def _change(
        self,
        request: Request,
        model: type[B],
        apply: Callable[[Config, str, B], Reconciled],
        warnings: Callable[[B], list[str]] | None = None,
    ) -> Response:
        """Pin or unpin: answer with the policy JSON, then deliver its messages.

        ``warnings`` gives what the answer's ``warnings`` list says (pins only).
        """
        denied = self._authorize(request)
        if denied is not None:
            return denied
        config = self.state.config
        name = request.path_params["name"]
        if name not in config.policies:
            return _unknown_policy(config, name)
        body = await _parse(request, model)
        if isinstance(body, Response):
            return body
        try:
            result = await run_in_threadpool(apply, config, name, body)
        except UsageError as exc:
            return _error(422, _usage_message(exc))
        changed = result.version is not None
        # The version this request wrote, not the newest: a concurrent change may follow it.
        stored = await run_in_threadpool(manage.stored, self.state.engine, name, result.version)
        current = manage.state_of(config, name, stored)
        if changed:
            log.info(
                "policy %s changed through the API: version %d, chain %s",
                name,
                current.version,
                " > ".join(current.chain),
            )
        # Delivery may wait on a slow receiver, so it runs after the answer is sent.
        task = BackgroundTask(self._deliver, config) if changed else None
        pins = stored.pins if stored is not None else None
        answer = {
            **policy_json(current),
            "pins": None if pins is None else list(pins),
            "changed": changed,
        }
        if warnings is not None:
            answer["warnings"] = await run_in_threadpool(warnings, body)
        return JSONResponse(answer, background=task)

    def _deliver(self, config: Config) -> None:
        try:
            with self.delivering:
                Dispatcher(self.state.engine, config, self.state.env).deliver_due()
        except Exception:
            # The daemon's dispatcher passes every few seconds and will deliver them.
            log.warning("delivering the outbox after a change by hand failed", exc_info=True)

    async def _authorized(self, request: Request, model: type[B]) -> B | Response:
        """The POST's body as ``model`` once its token is checked, or the refusal to send."""
        denied = self._authorize(request)
        if denied is not None:
            return denied
        return await _parse(request, model)

    def _authorize(self, request: Request) -> Response | None:
        """None when the request carries the API token; else the refusal to send."""
        var = self.state.config.server.token_env
        if not var:
            return _error(
                403,
                "POST requests are refused: no API token is configured; set server.token_env "
                "in routewatch.yaml to the name of an environment variable holding the token",
            )
        try:
            expected = secret(var, self.state.env)
        except MissingSecretError:
            return _error(
                403,
                f"POST requests are refused: environment variable {var} (server.token_env) "
                "is not set; set it to the API token in the daemon's environment",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            message = "this request needs an `Authorization: Bearer <token>` header"
        elif not hmac.compare_digest(given.strip().encode(), expected.strip().encode()):
            message = "the bearer token is wrong"
        else:
            return None
        return _error(401, message, headers={"WWW-Authenticate": "Bearer"})


def _guarded(handler: Endpoint) -> Endpoint:
    """Answer an unexpected exception with a bare 500 and log it, never the traceback.

    A database outage is answered 503 and logged in one line.
    """

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except HTTPException:
            raise
        except Exception as exc:
            if database_down(exc):
                log.warning(
                    "%s %s: the database is unavailable: %s",
                    request.method,
                    request.url.path,
                    first_line(exc),
                )
                return _error(503, "the database is unavailable", headers={"Retry-After": "30"})
            log.exception("%s %s failed", request.method, request.url.path)
            return _error(500, "internal error")

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (404, 405) as JSON, like every other error."""
    if not isinstance(exc, HTTPException):
        raise exc
    return _error(exc.status_code, str(exc.detail).lower(), headers=exc.headers)


def _error(status: int, message: str, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _unknown_policy(config: Config, name: str) -> JSONResponse:
    known = ", ".join(sorted(config.policies)) or "none configured"
    return _error(404, f"unknown policy {name!r}; known: {known}")


def _usage_message(exc: UsageError) -> str:
    return "; ".join(p.message for p in exc.problems)


MAX_BODY_BYTES = 64 * 1024
"""The largest request body read: the bodies here are a few route names."""
INCIDENTS_LIMIT = 50
"""`GET /incidents?all=true` lists at most this many, unless `limit` says otherwise."""


async def _parse(request: Request, model: type[B]) -> B | JSONResponse:
    """The request's JSON body as ``model`` (an empty body is ``{}``), or the error answer.

    413 for a body over ``MAX_BODY_BYTES`` (read no further); 422 for one that is not
    JSON, names a key twice (which one counts is up to each parser) or does not fit.
    """
    too_large = _error(413, f"request body over {MAX_BODY_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return too_large
            chunks.append(chunk)
    except ClientDisconnect:
        # Not a server error: nobody is left to answer, and nothing was done.
        log.info("%s %s: the client left before sending its body", request.method, request.url.path)
        return _error(400, "the client disconnected before sending its body")
    raw = b"".join(chunks)
    duplicate = _duplicate_key(raw)
    if duplicate is not None:
        return _error(422, f"invalid request body: key {duplicate!r} appears twice")
    try:
        return model.model_validate_json(raw if raw.strip() else b"{}")
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    reasons = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors)
    return JSONResponse(
        {"error": f"invalid request body: {reasons}", "detail": detail}, status_code=422
    )


def _duplicate_key(raw: bytes) -> str | None:
    """A key that some object of the JSON in ``raw`` names twice, if any.

    None too when ``raw`` is not JSON: the model's parser says what is wrong with it.
    """
    try:
        jsonstrict.loads(raw or b"{}")
    except jsonstrict.DuplicateKeyError as found:
        return found.key
    except (ValueError, RecursionError):  # nested past Python's limit: pydantic's is lower
        return None
    return None


def _field(loc: Sequence[int | str]) -> str:
    """``routes.0`` for a field, ``body`` for the body as a whole (bad JSON, not an object)."""
    return ".".join(str(part) for part in loc) or "body"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _database_health(engine: Engine, routes: list[str]) -> DatabaseHealth:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        last = last_successful_runs(engine, routes)
    except SQLAlchemyError as exc:
        log.warning("healthz: cannot read the database: %s", first_line(exc))
        return DatabaseHealth(reachable=False, last_successful_run={})
    return DatabaseHealth(reachable=True, last_successful_run=last)


def _list_reports(folder: Path) -> list[ReportFile]:
    """The servable reports in ``folder``, newest first; none when it does not exist."""
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError:
        return []
    files = []
    for name in names:
        path = _report_path(folder, name)
        try:
            info = path.stat() if path is not None else None
        except OSError:  # removed while we looked
            continue
        if info is not None:
            modified = datetime.fromtimestamp(info.st_mtime, UTC)
            files.append(ReportFile(name=name, modified=modified, size=info.st_size))
    return sorted(files, key=lambda f: (f.modified, f.name), reverse=True)


def _read_report(folder: Path, name: str) -> bytes | None:
    """The content of the report ``name``, or None when it may not be served."""
    path = _report_path(folder, name)
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


def _report_path(folder: Path, name: str) -> Path | None:
    """The file ``name`` directly inside ``folder``, when it is a report that may be served."""
    if not REPORT_NAME.fullmatch(name):
        return None
    root = folder.resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():  # a symlink out of the folder, a folder
        return None
    return path


def _index_html(files: list[ReportFile]) -> str:
    if files:
        items = "\n".join(
            f'<li><a href="{html.escape(quote(f.name))}">{html.escape(f.name)}</a> '
            f"<small>{f.modified:%Y-%m-%d %H:%M} UTC, {_size(f.size)}</small></li>"
            for f in files
        )
        listing = f"<ul>\n{items}\n</ul>"
    else:
        listing = (
            "<p>No reports yet. The daemon writes one into its reports folder on "
            "<code>reports.schedule</code>.</p>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>routewatch reports</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem}li{margin:.3rem 0}</style>"
        f"</head>\n<body><h1>routewatch reports</h1>\n{listing}\n</body></html>\n"
    )


def _size(size: int) -> str:
    return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} B"
