"""``routewatch serve``: schedules, the outbox dispatcher and the HTTP surface in one process.

APScheduler 3 (``AsyncIOScheduler``, jobs kept in memory) fires one job per scheduled
route; each job runs the route's newest slot, which the database claims under a unique
key, so a slot never runs twice, whichever replica or restart fires it. Only the leader
(``daemon.leader``) runs slots and the NO_DATA check; every replica dispatches the outbox
(claims are leased) and serves HTTP. The traps of ECOSYSTEM.md are handled here:

- ``misfire_grace_time`` is ``scheduler.misfire_grace_s`` (APScheduler's default is 1 s),
  with ``coalesce`` and one instance per job; and at start, each route's newest slot within
  that grace that has no completed run is run once (a slot missed while the daemon was
  down, or a run a stopped daemon left behind, which is then resumed).
- Jobs stay in memory: replicas coordinate through the database, never a shared job store.
- Cron weekdays go through ``routewatch.cron`` (crontab numbering, not APScheduler's).
- SIGTERM/SIGINT: no new runs start; runs in flight get ``stop_timeout_s``, then are
  cancelled, leaving them resumable; ``AsyncIOScheduler.shutdown`` would cancel them at
  once, so draining happens before it. SIGHUP reloads the config and rebuilds the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine, text

from routewatch.alerts.dispatch import Dispatcher
from routewatch.clock import SystemClock
from routewatch.config import Config, publisher_clashes, unset_secrets
from routewatch.cron import last_fire_at_or_before, parse_cron
from routewatch.cycle import (
    RunVerdict,
    compare_cycle,
    completed_runs,
    detect_cycle,
    detect_left_over,
)
from routewatch.daemon.leader import Leadership
from routewatch.daemon.metrics import DATABASE_DOWN, database_down, first_line
from routewatch.daemon.state import DaemonState
from routewatch.errors import RoutewatchError, UnavailableError, UsageError
from routewatch.evalset import eval_dir_fingerprint
from routewatch.project import Project, load_project
from routewatch.runner import execute, plan_runs
from routewatch.store.migrate import open_database
from routewatch.store.nodata import check_no_data
from routewatch.store.policies import sync_publishers
from routewatch.store.runs import (
    ClaimOutcome,
    abandon_runs,
    cancel_interrupted_run,
    orphaned_runs,
    slot_completed,
)

log = logging.getLogger("routewatch.daemon")

LEADER_CHECK_S = 5.0
"""How often a follower tries to become leader, and the leader checks its lock."""
NO_DATA_CHECK_S = 60.0
CATCH_UP_EVERY_S = 60.0
"""How often the leader looks for slots left unfinished (by a replica that died)."""


RESTART_ONLY = ("database_url", "server.host", "server.port")
"""Settings the daemon reads once, at start: its database and where it listens."""


def restart_only_changes(before: Config, after: Config) -> list[str]:
    """The ``RESTART_ONLY`` settings that differ between two configs, by name."""
    changed = []
    for name in RESTART_ONLY:
        path = name.split(".")
        old: Any = before
        new: Any = after
        for part in path:
            old, new = getattr(old, part), getattr(new, part)
        if old != new:
            changed.append(name)
    return changed


class Daemon:
    """One daemon process: construct, then ``await run()`` until a signal stops it.

    Args:
        config_path: The ``routewatch.yaml`` (re-read on SIGHUP).
        env: Environment, for secrets and ``ROUTEWATCH_DATABASE_URL``.
        host: Overrides ``server.host``.
        port: Overrides ``server.port`` (0: a free port, for tests).
    """

    def __init__(
        self,
        config_path: Path,
        env: Mapping[str, str],
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.config_path = config_path
        self.env = dict(env)
        self.project: Project = load_project(config_path, self.env)
        self._evals_seen = self._evals_fingerprint()
        self._reload_failed_at: tuple[Any, ...] | None = None
        """Eval files and config as they were when a reload for an eval change failed."""
        self._publishers_synced: Config | None = None
        """The config whose publishers the outbox was last brought in line with."""
        self._waiting_slots: dict[str, datetime] = {}
        """Per route, the newest scheduled slot that fired while a run of it was in flight."""
        self.host = host or self.project.config.server.host
        self.port = self.project.config.server.port if port is None else port
        # Settings given on the command line win over the config's, reloaded or not.
        self._from_cli = {"server.host"} if host else set()
        self._from_cli |= {"server.port"} if port is not None else set()
        self.engine: Engine = open_database(self.project.config.database_url)
        self.leader = Leadership(self.project.config.database_url)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.clock = SystemClock()
        self._active: set[asyncio.Task[Any]] = set()
        self._running_routes: dict[asyncio.Task[Any], list[str]] = {}
        self._stopping = asyncio.Event()
        self._stop_now = asyncio.Event()
        """A second SIGTERM or SIGINT: cut the runs in flight short without waiting."""
        self._catching_up = False
        self._last_catch_up = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock = asyncio.Lock()
        """One reload at a time: a SIGHUP and an eval edit seen by a cycle may meet."""
        self._reloads: set[asyncio.Task[None]] = set()
        self._sighup_queued = False
        """A SIGHUP's reload waits for the lock: later signals need no reload of their own."""
        self.url: str | None = None
        self.state = DaemonState(
            config=self.project.config,
            engine=self.engine,
            env=self.env,
            started_at=datetime.now(UTC),
            reports_dir=Path(self.project.config.reports.dir),
            scheduler_alive=lambda: bool(self.scheduler.running) and not self._stopping.is_set(),
            is_leader=lambda: self.leader.held,
            trigger_runs=self._trigger_from_http,
            running=lambda: sorted({r for rs in self._running_routes.values() for r in rs}),
        )

    # -- life cycle ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self.stop)
        self._loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        from routewatch.daemon.server import create_app
        from routewatch.sim.server import serve_in_thread

        self.leader.acquire()
        try:
            # Listening before any job starts: a port in use stops the start cleanly.
            with serve_in_thread(create_app(self.state), host=self.host, port=self.port) as url:
                self._build_jobs()
                self.scheduler.start()
                self.url = url
                log.info(
                    "routewatch daemon serving on %s (pid %d, %s)",
                    url,
                    os.getpid(),
                    "leader" if self.leader.held else "follower",
                )
                self._warn_unset_secrets()
                if self.leader.held:
                    self._spawn(self._catch_up(), [])
                await self._stopping.wait()
                await self._drain()
        finally:
            self.leader.release()
            self.engine.dispose()
        log.info("routewatch daemon stopped")

    def _warn_unset_secrets(self) -> None:
        """Say at start (and reload) what a missing secret will break, not at the first run."""
        config = self.project.config
        for problem in unset_secrets(config, self.env):
            log.warning("%s", problem)
        for clash in publisher_clashes(config):
            log.warning("%s", clash)
        if config.server.token_env is None:
            log.info("server.token_env is not configured: every POST is refused with 403")

    def stop(self) -> None:
        """Start a graceful stop (signal handler); a second signal stops without waiting."""
        if not self._stopping.is_set():
            log.info("stopping: no new runs; %d in flight", len(self._active))
            self._stopping.set()
            if self.scheduler.running:
                self.scheduler.pause()
        elif not self._stop_now.is_set():
            log.warning("second signal: stopping the runs in flight now")
            self._stop_now.set()

    def _on_sighup(self) -> None:
        """SIGHUP: reload in a task of its own (the handler must not wait for it).

        Signals while a reload waits to start make no second one: it will read the files
        as they are then. One sent while a reload reads them queues one more.
        """
        if self._stopping.is_set() or self._sighup_queued:
            return
        log.info("SIGHUP: reloading the config and eval sets")
        self._sighup_queued = True
        task = asyncio.create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """Re-read the config and eval sets, then rebuild the jobs; a bad config keeps the old.

        The files are read and checked in a worker thread: a large eval set takes seconds
        to load, and on the event loop that would stall the calls in flight and every
        POST (they still share the interpreter with it, so a little of it shows).
        """
        async with self._reload_lock:
            self._sighup_queued = False
            await self._reload()

    async def _reload(self) -> None:
        seen = self._evals_fingerprint()
        try:
            project = await asyncio.to_thread(load_project, self.config_path, self.env)
        except Exception as exc:  # the daemon outlives a reload
            if isinstance(exc, RoutewatchError):
                log.error("config not reloaded, keeping the running one: %s", exc)
            else:
                log.exception("config not reloaded, keeping the running one: %s", exc)
            # Tried again once the eval files or the config change (a fix to either).
            self._reload_failed_at = (seen, _stat(self.config_path))
            return
        if self._stopping.is_set():
            return  # no jobs to rebuild
        self._reload_failed_at = None
        before = self.project.config
        self.project = project
        # Taken after the load: the new sets may name other judge templates.
        self._evals_seen = self._evals_fingerprint()
        self.state.config = project.config
        self.state.reports_dir = Path(project.config.reports.dir)
        self._build_jobs()
        log.info("config reloaded: %d scheduled route(s)", len(self._route_jobs()))
        self._warn_unset_secrets()
        if self.leader.held:
            try:
                await asyncio.to_thread(self._sync_publishers, project.config)
            except Exception as exc:  # the next catch-up tries again
                log.warning("publishers not brought in line with the config: %s", first_line(exc))
        pending = [
            f"`{name}`"
            for name in restart_only_changes(before, project.config)
            if name not in self._from_cli
        ]
        if pending:
            log.warning(
                "%s changed; the daemon keeps the old value until it is restarted",
                " and ".join(pending),
            )

    async def _drain(self) -> None:
        for reload in self._reloads:
            reload.cancel()  # its thread reads on, and its result is dropped
        timeout = self.project.config.scheduler.stop_timeout_s
        if self._active:
            pending = await self._wait_for_runs(timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "%d run(s) still going %s: stopped; the next start resumes them",
                    len(pending),
                    "at the second signal" if self._stop_now.is_set() else f"after {timeout:.1f} s",
                )
                await asyncio.gather(*pending, return_exceptions=True)
                # Handed over at once: another daemon here need not wait for this pid.
                with contextlib.suppress(*DATABASE_DOWN):
                    await asyncio.to_thread(abandon_runs, self.engine)
        self.scheduler.shutdown(wait=False)
        # A last delivery of what the runs raised, bounded like everything at shutdown.
        bound = 1.0 if self._stop_now.is_set() else min(10.0, max(1.0, timeout))
        deadline = time.monotonic() + bound
        with contextlib.suppress(RoutewatchError, *DATABASE_DOWN):
            await asyncio.to_thread(self._dispatcher().deliver_due, deadline=deadline)

    async def _wait_for_runs(self, timeout: float) -> set[asyncio.Task[Any]]:
        """Wait for the runs in flight until ``timeout`` or a second signal; the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = set(self._active)
        now = asyncio.ensure_future(self._stop_now.wait())
        try:
            while pending and not now.done() and (left := deadline - loop.time()) > 0:
                done, _ = await asyncio.wait(
                    pending | {now}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
        finally:
            now.cancel()
        return pending

    # -- jobs ------------------------------------------------------------------------

    def _route_jobs(self) -> dict[str, str]:
        return {
            name: route.schedule
            for name, route in self.project.config.routes.items()
            if route.schedule is not None
        }

    def _build_jobs(self) -> None:
        self.scheduler.remove_all_jobs()
        config = self.project.config
        grace = int(max(1, config.scheduler.misfire_grace_s))
        for name, schedule in self._route_jobs().items():
            self.scheduler.add_job(
                self._slot_job,
                parse_cron(schedule, config.timezone),
                args=[name],
                id=f"route:{name}",
                misfire_grace_time=grace,
                coalesce=True,
                max_instances=1,
                replace_existing=True,
            )
        self.scheduler.add_job(
            self._report_job,
            parse_cron(config.reports.schedule, config.timezone),
            id="report",
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
        every = config.scheduler.dispatch_every_s
        self.scheduler.add_job(
            self._dispatch_job, "interval", seconds=every, id="outbox", coalesce=True
        )
        self.scheduler.add_job(
            self._leader_job, "interval", seconds=LEADER_CHECK_S, id="leader", coalesce=True
        )
        self.scheduler.add_job(
            self._no_data_job, "interval", seconds=NO_DATA_CHECK_S, id="no-data", coalesce=True
        )

    async def _slot_job(self, route: str) -> None:
        if self._stopping.is_set() or not self.leader.held:
            return
        entry = self.project.config.routes.get(route)
        schedule = entry.schedule if entry is not None else None
        if schedule is None:
            return
        now = datetime.now(UTC)
        slot = last_fire_at_or_before(parse_cron(schedule, self.project.config.timezone), now)
        if slot is None:
            return
        if route in self._busy_routes():
            # One run of a route at a time here: two at once pay twice and slow each other.
            # The newest slot that waited runs as soon as the route's runs are stored.
            self._waiting_slots[route] = slot
            log.info(
                "%s's slot %s waits for the run of it in flight; it runs once that is stored",
                route,
                slot.isoformat(),
            )
            return
        # A task of its own, not awaited here: APScheduler would skip (and lose) every
        # fire while this job still ran, before the check above could keep the slot.
        self._spawn(self._cycle([route], slot), [route])

    async def _catch_up(self) -> None:
        """Run, once, each route's newest slot within the grace that has no completed run."""
        self._catching_up = True
        self._last_catch_up = time.monotonic()
        try:
            await self._catch_up_slots()
        except DATABASE_DOWN as exc:
            if not database_down(exc):
                raise
            log.warning(
                "catch-up skipped: the database is unavailable: %s; tried again within %.0f s",
                first_line(exc),
                CATCH_UP_EVERY_S,
            )
        finally:
            self._catching_up = False

    async def _catch_up_slots(self) -> None:
        config = self.project.config
        if self._publishers_synced is not config:
            try:
                await asyncio.to_thread(self._sync_publishers, config)
            except Exception as exc:  # the catch-up's runs matter more; tried next minute
                if database_down(exc):
                    raise  # the catch-up is skipped, and says so once
                log.warning("publishers not brought in line with the config: %s", first_line(exc))
        left_over = await asyncio.to_thread(
            detect_left_over, self.engine, config, list(config.routes), now=self.clock.now()
        )
        await self._compare(left_over)
        # The weekly report, if its slot passed while no leader was there to write it.
        report_slot = last_fire_at_or_before(
            parse_cron(config.reports.schedule, config.timezone), datetime.now(UTC)
        )
        grace = timedelta(seconds=config.scheduler.misfire_grace_s)
        if report_slot is not None and datetime.now(UTC) - report_slot <= grace:
            await self._report_job(only_if_missing=True)
        # Runs whose owner died, however old their slot: resume them where they stopped.
        for route, at in orphaned_runs(self.engine, list(config.routes), datetime.now(UTC)):
            if self._stopping.is_set():
                return
            if route in self._busy_routes():
                continue  # the next catch-up, once this process's run of it ends
            log.info("resuming %s's run of %s, left by a process that is gone", route, at)
            await self._tracked(self._cycle([route], at), [route])
        now = datetime.now(UTC)
        grace = timedelta(seconds=config.scheduler.misfire_grace_s)
        for route, schedule in self._route_jobs().items():
            slot = last_fire_at_or_before(parse_cron(schedule, config.timezone), now)
            if slot is None or now - slot > grace or self._stopping.is_set():
                continue
            if route in self._busy_routes():
                continue  # in flight here (this slot or another): the next catch-up
            plans = plan_runs(config, routes=[route], at=slot, now=now)
            if all(
                slot_completed(
                    self.engine, route=p.route, eval_set_name=p.eval_set, slot_key=p.slot_key
                )
                for p in plans
            ):
                continue
            log.info("catching up %s's slot %s", route, slot.isoformat())
            await self._tracked(self._cycle([route], slot), [route])

    async def _report_job(self, *, only_if_missing: bool = False) -> None:
        """The weekly report of last week (leader only), into ``reports.dir``."""
        if not self.leader.held or self._stopping.is_set():
            return
        from routewatch.report.data import last_full_week, week_window
        from routewatch.report.render import report_path, write_report

        config = self.project.config
        window = week_window(last_full_week(datetime.now(UTC), config.timezone), config.timezone)
        if only_if_missing and report_path(config, window).exists():
            return
        try:
            path = await asyncio.to_thread(
                write_report,
                self.engine,
                config,
                window,
                eval_sets=self.project.eval_sets,
            )
        except Exception:  # a failed report must not stop the scheduler; it is logged
            log.exception("weekly report for %s failed", window.slug)
            return
        log.info("weekly report for %s written to %s", window.slug, path)

    async def _dispatch_job(self) -> None:
        try:
            await asyncio.to_thread(self._dispatcher().deliver_due)
        except RoutewatchError as exc:
            log.error("outbox dispatch failed: %s", exc)
        except DATABASE_DOWN as exc:  # every few seconds: one line each, not a traceback
            if not database_down(exc):
                raise
            log.warning("outbox dispatch skipped: the database is unavailable: %s", first_line(exc))

    async def _leader_job(self) -> None:
        was = self.leader.held
        held = await asyncio.to_thread(self.leader.acquire)
        if held and not was:
            log.info("became the scheduler leader")
        # Catch up when leadership is new, and now and then: a run a dead replica left
        # behind can be taken over once its owner is seen gone (at once on this host, after
        # STALE_AFTER elsewhere).
        due = time.monotonic() - self._last_catch_up >= CATCH_UP_EVERY_S
        if held and (not was or due) and not self._catching_up:
            self._spawn(self._catch_up(), [])

    async def _no_data_job(self) -> None:
        if not self.leader.held:
            return
        config = self.project.config
        try:
            await asyncio.to_thread(
                check_no_data,
                self.engine,
                config,
                now=datetime.now(UTC),
                grace=timedelta(hours=config.alerts.no_data_hours),
                targets=config.alerts.targets(),
            )
        except DATABASE_DOWN as exc:
            if not database_down(exc):
                raise
            log.warning("late-run check skipped: the database is unavailable: %s", first_line(exc))

    # -- running cycles --------------------------------------------------------------

    def _evals_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """The eval files and the judge templates the loaded sets name, as on disk now."""
        templates = [s.judge_template for s in self.project.eval_sets.values() if s.judge_template]
        return eval_dir_fingerprint(Path(self.project.config.eval_dir), templates)

    async def _reload_if_evals_changed(self) -> None:
        """Reload, as on SIGHUP, when an eval file changed since the last load.

        Edited, added or removed: a cycle must not replay a set that the CLI already
        replays in a newer version. A bad edit keeps the running sets, said once per edit.
        """
        async with self._reload_lock:  # a reload under way: its result is compared
            now = self._evals_fingerprint()
            if now == self._evals_seen:
                return
            if self._reload_failed_at == (now, _stat(self.config_path)):
                return  # failed as it is; said once
            log.info("eval files changed on disk: reloading the config and eval sets")
            await self._reload()

    async def _cycle(self, routes: list[str], at: datetime | None) -> None:
        """One cycle for ``routes`` at slot ``at`` (now when None): replay, detect, deliver."""
        await self._reload_if_evals_changed()
        if self._stopping.is_set():
            return  # a stop came while a reload held the cycle up: start no runs
        project = self.project
        now = self.clock.now()
        plans = plan_runs(project.config, routes=routes, at=at, now=now)
        try:
            reports = await execute(project, self.engine, plans, env=self.env, clock=self.clock)
        except Exception as exc:  # the daemon outlives any one cycle
            names = ", ".join(routes) or "every route"
            if database_down(exc):
                # Nothing more can be stored or detected until it is back.
                log.warning(
                    "run of %s stopped: the database is unavailable: %s; %s",
                    names,
                    first_line(exc),
                    "ask for it again once it is back"
                    if at is None
                    else "the next catch-up resumes it (within scheduler.misfire_grace_s)",
                )
                return
            if isinstance(exc, RoutewatchError):
                log.error("run of %s failed: %s", names, exc)
            else:
                # A run it left behind is resumed by the next catch-up (within a minute).
                log.exception("run of %s stopped by an unexpected error", names)
            # The cycle's other runs completed: detect them (and alert) all the same.
            await asyncio.to_thread(
                detect_left_over, self.engine, project.config, routes, now=self.clock.now()
            )
            await self._dispatch_job()
            return
        verdicts = await asyncio.to_thread(
            detect_cycle, self.engine, project.config, completed_runs(reports), now=self.clock.now()
        )
        for r in reports:
            if r.outcome in (ClaimOutcome.version_changed, ClaimOutcome.config_changed):
                # An interrupted run of another eval-set version or route config never
                # resumes as it was; left running, catch-up would retry it every minute.
                changed = "eval set" if r.outcome is ClaimOutcome.version_changed else "config"
                cancelled = await asyncio.to_thread(
                    cancel_interrupted_run,
                    self.engine,
                    r.run_id,
                    now=self.clock.now(),
                    reason=f"interrupted, and the {changed} changed since",
                )
                if cancelled:
                    log.warning(
                        "run %d %s x %s at %s was interrupted and its %s changed since: "
                        "cancelled (its slot is run afresh by `run --at`)",
                        r.run_id,
                        r.route,
                        r.eval_set,
                        r.at.isoformat(),
                        changed,
                    )
        for r in reports:
            s = r.summary
            # A replayed run is "completed" ("completed, resumed" after an interruption);
            # else the claim's outcome says why nothing was replayed ("busy", ...).
            done = r.outcome.value
            if s is not None:
                done = "completed" + (", resumed" if r.outcome is ClaimOutcome.resumed else "")
            log.info(
                "run %d %s x %s at %s: %s score=%s errors=%s cost=%s",
                r.run_id,
                r.route,
                r.eval_set,
                r.at.isoformat(),
                done,
                f"{s.score:.3f}" if s and s.score is not None else "-",
                f"{s.error_rate:.3f}" if s and s.error_rate is not None else "-",
                f"{s.cost_usd:.4f}" if s and s.cost_usd is not None else "-",
            )
            if r.every_call_failed:
                failed = ", ".join(f"{count} {kind}" for kind, count in r.call_errors)
                log.warning(
                    "run %d %s x %s: every call failed (%s): %s",
                    r.run_id,
                    r.route,
                    r.eval_set,
                    failed,
                    r.call_error_example or "-",
                )
        for v in verdicts:
            for note in v.policy_notes:
                log.info("%s x %s: %s", v.route, v.eval_set, note)
        # Its runs are stored and detected: delivering and comparing need not keep the
        # routes busy (a slow receiver would hold their next slots back).
        self._release(asyncio.current_task())
        await self._dispatch_job()
        await self._compare(verdicts)

    async def _compare(self, verdicts: list[RunVerdict]) -> None:
        """Pairwise mode on detected runs, once their alerts are on their way."""
        await asyncio.to_thread(
            compare_cycle,
            self.engine,
            self.project.config,
            verdicts,
            now=self.clock.now(),
            eval_sets=self.project.eval_sets,
            env=self.env,
        )

    async def _tracked(self, coro: Any, routes: list[str]) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always inside a task
            raise RuntimeError("not in a task")
        self._track(task, routes)
        try:
            await coro
        except Exception as exc:  # a background task's failure is logged; the daemon goes on
            what = ", ".join(routes) or "the daemon"
            if database_down(exc):  # an outage mid-way (detection after a run, say)
                log.warning(
                    "background task for %s stopped: the database is unavailable: %s",
                    what,
                    first_line(exc),
                )
            else:
                log.exception("background task for %s failed", what)
        finally:
            self._active.discard(task)
            self._release(task)
            self._running_routes.pop(task, None)

    def _release(self, task: asyncio.Task[Any] | None) -> None:
        """Free ``task``'s routes, and start the slots that waited for them."""
        if task is None:  # pragma: no cover - always inside a task
            return
        routes = self._running_routes.get(task) or []
        self._running_routes[task] = []
        waiting = {r: s for r in routes if (s := self._waiting_slots.pop(r, None)) is not None}
        if not waiting or self._stopping.is_set() or not self.leader.held:
            return
        busy = self._busy_routes()
        scheduled = self._route_jobs()
        for route, slot in waiting.items():
            # Not a route a reload took away or unscheduled. A slot that waited is queued,
            # not missed: however short misfire_grace_s, it runs. (A process that is not
            # the leader when the run ends drops it: the leader's catch-up judges it.)
            if route not in busy and route in scheduled:
                log.info(
                    "running %s's slot %s, which waited for the run before",
                    route,
                    slot.isoformat(),
                )
                self._spawn(self._cycle([route], slot), [route])

    def _track(self, task: asyncio.Task[Any], routes: list[str]) -> None:
        self._active.add(task)
        self._running_routes[task] = routes

    def _spawn(self, coro: Any, routes: list[str]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(self._tracked(coro, routes))
        # Recorded before the task first runs: a second request handled in the same pass
        # of the loop must already see the route busy.
        self._track(task, routes)
        return task

    async def trigger(self, routes: list[str]) -> list[str]:
        """Start a cycle now for ``routes`` (all when empty) in the background.

        Returns the routes started: a route with a run in flight here is not started
        again (each request is a slot of its own, so two requests a second apart would
        otherwise pay for two whole runs at once).
        """
        if self._stopping.is_set():
            raise UnavailableError("the daemon is stopping; no new runs")
        unknown = [r for r in routes if r not in self.project.config.routes]
        if unknown:
            known = ", ".join(sorted(self.project.config.routes))
            raise UsageError(f"unknown route(s) {', '.join(unknown)}; known: {known}")
        # No await from here to the spawn: a second request must see these routes busy.
        busy = self._busy_routes()
        accepted = [r for r in routes or list(self.project.config.routes) if r not in busy]
        if not accepted:
            return accepted
        # Asked for while the database is down, a run would be accepted and lost: it is
        # never claimed, so no catch-up resumes it. The HTTP answer is 503 instead. The
        # routes are held from now on, while the database is asked.
        reachable: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def cycle_if_reachable() -> None:
            try:
                await asyncio.to_thread(_ping, self.engine)
            except BaseException as exc:  # the database's error, or a stop's cancel
                if not reachable.done():
                    stopping = UnavailableError("the daemon is stopping; no new runs")
                    reachable.set_exception(exc if isinstance(exc, Exception) else stopping)
                    reachable.exception()  # retrieved: the caller may have given up
                if isinstance(exc, Exception):
                    return
                raise
            if not reachable.done():
                reachable.set_result(None)
            await self._cycle(accepted, None)

        self._spawn(cycle_if_reachable(), accepted)
        # Shielded: a caller that gives up does not cancel the answer the task will give.
        await asyncio.shield(reachable)
        if self._stopping.is_set():  # a stop while the database was asked: nothing runs
            raise UnavailableError("the daemon is stopping; no new runs")
        return accepted

    def _busy_routes(self) -> set[str]:
        """Routes with a run in flight in this process."""
        return {r for rs in self._running_routes.values() for r in rs}

    async def _trigger_from_http(self, routes: list[str]) -> list[str]:
        """``trigger`` called from the HTTP server's thread, run on the daemon's loop."""
        if self._loop is None:
            raise UnavailableError("the daemon is not running")
        future = asyncio.run_coroutine_threadsafe(self.trigger(routes), self._loop)
        return await asyncio.wrap_future(future)

    def _sync_publishers(self, config: Config) -> None:
        """Publish to publishers new to this config; give up on those no longer in it."""
        done = sync_publishers(self.engine, config.policies, datetime.now(UTC))
        for target in done.queued:
            log.info("queued the current policy version for %s, which has not had it", target)
        if done.superseded:
            log.info(
                "gave up %d pending publish message(s) of publishers no longer configured",
                done.superseded,
            )
        self._publishers_synced = config

    def _dispatcher(self) -> Dispatcher:
        return Dispatcher(self.engine, self.project.config, self.env)


def _ping(engine: Engine) -> None:
    """One round trip to the database; raises its driver's error when it is down."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _stat(path: Path) -> tuple[int, int]:
    """A file's modification time and size; ``(-1, -1)`` when it cannot be read."""
    try:
        info = path.stat()
    except OSError:
        return (-1, -1)
    return (info.st_mtime_ns, info.st_size)
