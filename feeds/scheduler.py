"""The daemon: APScheduler jobs that call :mod:`feeds.api`, a lease so only one daemon
sends, and a graceful stop.

Known traps of APScheduler 3.11 and what we do about them:

- Its cron trigger skips a daily run at midnight after the spring DST change and runs twice
  in the repeated autumn hour (its issue #606). Digests use :class:`LocalTimeTrigger`,
  which computes each day's instant with zoneinfo: once a day, whatever the clocks do.
- Two schedulers on one job store run every job twice (#129, #231). A daemon must hold
  the ``scheduler`` lease in the state database to start its jobs; a second one refuses.
- Re-adding jobs with ``replace_existing=True`` at start-up silently drops a missed run.
  We start paused, keep every stored job whose definition is unchanged (and so its missed
  run), and only replace jobs whose definition changed.

Whatever the scheduler does, the digest ledger decides what was sent: a job run twice
sends nothing twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from feeds import api, state
from feeds.config import Config, load_config, parse_time_of_day
from feeds.errors import FeedsError, ServerStopped
from feeds.errors import LeaseHeld as LeaseHeld  # defined there; exported here too

log = logging.getLogger(__name__)

LEASE = "scheduler"
JOBS_TABLE = "apscheduler_jobs"

# Set when the daemon is asked to stop: a digest in progress finishes the message it is
# sending, records it, and returns.
STOPPING = threading.Event()


# --------------------------------------------------------------------------- trigger


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant the wall clock in ``zone`` shows ``at`` on ``day``.

    A time the clocks skip (the spring gap) maps to the same distance past the gap (02:30
    becomes 03:30); a time they show twice (the autumn repeat) is the first of the two.
    Either way, each day has exactly one instant.
    """
    return datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC).astimezone(zone)


class LocalTimeTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires once a day (or once a week on ``weekday``, 0 = Monday) at a wall-clock time
    in a time zone, correct across DST changes."""

    def __init__(self, hour: int, minute: int, weekday: int | None = None, timezone: str = "UTC") -> None:
        self.hour, self.minute, self.weekday, self.timezone = hour, minute, weekday, timezone

    @classmethod
    def parse(cls, spec: str, timezone: str) -> LocalTimeTrigger:
        weekday, hour, minute = parse_time_of_day(spec)
        return cls(hour, minute, weekday, timezone)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        zone = ZoneInfo(self.timezone)
        after = previous_fire_time if previous_fire_time is not None else now - timedelta(microseconds=1)
        day = after.astimezone(zone).date() - timedelta(days=1)
        for _ in range(16):
            if self.weekday is None or day.weekday() == self.weekday:
                fire = local_instant(day, time(self.hour, self.minute), zone)
                if fire > after:
                    return fire
            day += timedelta(days=1)
        return None  # pragma: no cover - a week always has the weekday

    def __str__(self) -> str:
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        when = f"{days[self.weekday]} " if self.weekday is not None else ""
        return f"local[{when}{self.hour:02d}:{self.minute:02d} {self.timezone}]"

    __repr__ = __str__


# ----------------------------------------------------------------------------- jobs


def build_job(config_path: str | None) -> str:
    """Rebuild every feed. Runs in the daemon; the clock is read here, at the edge."""
    config = load_config(Path(config_path) if config_path else None)
    report = api.build(config, now=datetime.now(UTC))
    for error in report.topic_errors:
        log.warning("topic file skipped", extra={"file": str(error.path), "reason": error.reason})
    for error in report.skipped:
        log.warning("record skipped", extra={"file": str(error.path), "reason": error.reason})
    return (f"{report.records} records ({report.records - report.parsed} cached), "
            f"{len(report.skipped)} skipped, {len(report.written)} files written")


def purge_job(config_path: str | None) -> str:
    """Delete the web sign-ups nobody confirmed in time (``signup.purge_after_hours``)."""
    config = load_config(Path(config_path) if config_path else None)
    purged = api.purge_unconfirmed(config, datetime.now(UTC))
    return f"{len(purged)} unconfirmed sign-ups purged"


def digest_job(config_path: str | None, cadence: str) -> str:
    """Send this period's digest to every subscriber of ``cadence``."""
    config = load_config(Path(config_path) if config_path else None)
    report = api.digest(config, now=datetime.now(UTC), send=True, cadence=cadence,
                        should_stop=STOPPING.is_set)
    if report.queued_for_workers:  # queue.url: the workers send them
        return (f"{report.queued} subscribers queued in {report.batches} batches for feeds worker, "
                f"{len(report.suppressed)} suppressed")
    summary = (f"{len(report.sent)} sent, {len(report.deferred)} deferred, {len(report.failed)} failed, "
               f"{len(report.suppressed)} suppressed, {len(report.already)} already had it, "
               f"{len(report.no_news)} without news, {len(report.not_due)} not due")
    if report.stop_reason:
        summary += f"; stopped: {report.stop_reason}, the rest go next run"
    elif report.stopped:
        summary += "; stopped early, the rest go next run"
    if report.failed:  # only new failures: deferred ones are retried by later runs
        raise FeedsError(f"digest {cadence}: {summary}: " + "; ".join(report.failed))
    return summary


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[..., str]
    args: tuple[Any, ...]
    trigger: BaseTrigger

    @property
    def func_ref(self) -> str:
        return f"{self.func.__module__}:{self.func.__qualname__}"


def job_specs(config: Config, config_path: str | None) -> list[JobSpec]:
    """The jobs the config asks for."""
    s = config.schedule
    specs: list[JobSpec] = []
    if s.build_cron:
        specs.append(JobSpec("build", build_job, (config_path,),
                             CronTrigger.from_crontab(s.build_cron, timezone=ZoneInfo(config.timezone))))
    elif s.build_every_minutes:
        specs.append(JobSpec("build", build_job, (config_path,),
                             IntervalTrigger(seconds=round(s.build_every_minutes * 60, 3),
                                             start_date=datetime(2000, 1, 1, tzinfo=UTC))))
    if s.daily_digest_at:
        specs.append(JobSpec("digest-daily", digest_job, (config_path, "daily"),
                             LocalTimeTrigger.parse(s.daily_digest_at, config.timezone)))
    if s.weekly_digest_at:
        specs.append(JobSpec("digest-weekly", digest_job, (config_path, "weekly"),
                             LocalTimeTrigger.parse(s.weekly_digest_at, config.timezone)))
    # Unconfirmed sign-ups are deleted once signup.purge_after_hours old; hourly is soon enough.
    specs.append(JobSpec("purge-signups", purge_job, (config_path,),
                         IntervalTrigger(hours=1, start_date=datetime(2000, 1, 1, tzinfo=UTC))))
    return specs


class _Scheduler(BackgroundScheduler):  # type: ignore[misc]
    """APScheduler 3.11's loop runs one more round of due jobs after ``shutdown()`` has
    set the state to stopped: the executors refuse them, yet each job's next run time is
    moved on, so a run due at that moment is lost for good. Stopped means stopped."""

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()  # type: ignore[no-any-return]


def new_scheduler(config: Config, engine: Engine) -> BackgroundScheduler:
    return _Scheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)},
        executors={"default": {"type": "threadpool", "max_workers": 4}},
        job_defaults={
            "coalesce": True,  # after downtime, a missed job runs once, not once per slot
            "max_instances": 1,
            "misfire_grace_time": int(config.schedule.misfire_grace_minutes * 60),
        },
        timezone=ZoneInfo(config.timezone),
    )


def sync_jobs(scheduler: BackgroundScheduler, specs: list[JobSpec], grace_seconds: int) -> None:
    """Make the stored jobs match ``specs`` without losing a missed run: an unchanged job
    is left alone (its next run time may be in the past, and then it runs on resume)."""
    wanted = {spec.id: spec for spec in specs}
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            log.info("job removed", extra={"job": job.id})
            job.remove()
    for spec in specs:
        job = scheduler.get_job(spec.id)
        same = job is not None and (
            job.func_ref == spec.func_ref and tuple(job.args) == spec.args
            and str(job.trigger) == str(spec.trigger) and job.misfire_grace_time == grace_seconds
        )
        if same:
            continue
        if job is not None:
            log.info("job changed", extra={"job": spec.id, "trigger": str(spec.trigger)})
        scheduler.add_job(spec.func, spec.trigger, args=spec.args, id=spec.id, name=spec.id,
                          replace_existing=True, misfire_grace_time=grace_seconds)


def set_next_run(config: Config, config_path: str | None, job_id: str, when: datetime) -> None:
    """Move a stored job's next run, as if the daemon had been down since ``when``."""
    engine = state.open_state(config.state_db)
    scheduler = new_scheduler(config, engine)
    scheduler.start(paused=True)
    try:
        sync_jobs(scheduler, job_specs(config, config_path), int(config.schedule.misfire_grace_minutes * 60))
        scheduler.modify_job(job_id, next_run_time=when)
    finally:
        scheduler.shutdown(wait=False)


# ---------------------------------------------------------------------------- daemon


class Daemon:
    """The scheduler (and optionally the HTTP server) for ``feeds run``."""

    def __init__(self, config: Config, config_path: str | None, *, serve: bool = True) -> None:
        self.config, self.config_path, self.serve = config, config_path, serve
        self.holder = uuid.uuid4().hex
        self.description = f"{socket.gethostname()} pid {os.getpid()}"
        self.engine = state.open_state(config.state_db)
        self.scheduler: BackgroundScheduler | None = None
        self.server: Any = None
        self.threads: list[threading.Thread] = []
        self.stopped = threading.Event()
        self.failure: FeedsError | None = None  # why the daemon stopped by itself, if it did

    @property
    def lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.config.schedule.lease_seconds)

    def start(self) -> None:
        """Take the HTTP address, claim the state database, start the jobs and the
        server. Raises AddressInUse (before claiming anything) or LeaseHeld."""
        STOPPING.clear()
        sock = None
        if self.serve:
            from feeds.serve import check_out, listen

            check_out(self.config.out)
            sock = listen(self.config.serve.host, self.config.serve.port)
        try:
            self._claim()
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        self._start_jobs()
        if sock is not None:
            self._start_server(sock)

    def _claim(self) -> None:
        held = state.acquire_lease(self.engine, LEASE, self.holder, self.description,
                                   now=datetime.now(UTC), ttl=self.lease_ttl)
        if held is not None:
            raise LeaseHeld(
                f"another feeds daemon ({held.description}) is running on this state database "
                f"({state.safe_url(self.config.state_db)}); its lease runs until "
                f"{held.expires_at:%Y-%m-%d %H:%M:%S} UTC. Not starting jobs."
            )
        log.info("lease acquired", extra={"holder": self.description})

    def _start_jobs(self) -> None:
        grace = int(self.config.schedule.misfire_grace_minutes * 60)
        scheduler = new_scheduler(self.config, self.engine)
        scheduler.add_listener(self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        scheduler.start(paused=True)
        sync_jobs(scheduler, job_specs(self.config, self.config_path), grace)
        if scheduler.get_job("build") is not None:
            # Feeds may be stale after downtime: build now, then on the schedule. (Builds
            # are idempotent, so this costs nothing if nothing changed.)
            scheduler.modify_job("build", next_run_time=datetime.now(UTC))
        for job in scheduler.get_jobs():
            log.info("job scheduled", extra={"job": job.id, "trigger": str(job.trigger),
                                             "next_run": _iso(job.next_run_time)})
        scheduler.resume()
        self.scheduler = scheduler
        self._thread(self._keep_lease, "lease")

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _keep_lease(self) -> None:
        interval = self.config.schedule.lease_seconds / 3
        while not self.stopped.wait(interval):
            try:
                ours = state.renew_lease(self.engine, LEASE, self.holder, now=datetime.now(UTC), ttl=self.lease_ttl)
            except Exception:
                log.exception("lease renewal failed")
                continue
            if not ours:
                log.error("lease lost to another daemon: stopping")
                self.request_stop()
                return

    def _start_server(self, sock: socket.socket) -> None:
        import asyncio

        from feeds.serve import server

        self.server = server(self.config, self.engine)

        def run() -> None:
            try:
                asyncio.run(self.server.serve(sockets=[sock]))
            except BaseException:  # uvicorn ends a failed start-up with sys.exit
                log.exception("the HTTP server failed")
            finally:
                sock.close()
            if not self.stopped.is_set():
                # Jobs without the server leave unsubscribe links dead while `feeds status`
                # says running: stop, and exit non-zero, so that systemd restarts us.
                self.failure = ServerStopped(self.config.serve.host, self.config.serve.port)
                log.error("the HTTP server stopped: stopping the daemon")
                self.request_stop()

        self._thread(run, "http")
        log.info("serving", extra={"url": f"http://{self.config.serve.host}:{self.config.serve.port}/",
                                   "folder": str(self.config.out)})

    def _on_event(self, event: JobExecutionEvent) -> None:
        now = datetime.now(UTC)
        scheduled = event.scheduled_run_time
        if event.code == EVENT_JOB_MISSED:
            run = state.JobRun(event.job_id, "missed", "missed its slot by more than the grace time; skipped",
                               scheduled, now)
            log.warning("job missed", extra={"job": event.job_id, "scheduled_for": _iso(scheduled)})
        elif event.exception is not None:
            run = state.JobRun(event.job_id, "error", f"{type(event.exception).__name__}: {event.exception}",
                               scheduled, now)
            # An operator's fault (a FeedsError names its culprit) is one line, its traceback
            # only in the debug log; our own bugs log theirs at once.
            if isinstance(event.exception, FeedsError):
                log.error("job failed", extra={"job": event.job_id, "error": run.summary})
                log.debug("job failed", extra={"job": event.job_id, "traceback": event.traceback})
            else:
                log.error("job failed", extra={"job": event.job_id, "error": run.summary,
                                               "traceback": event.traceback})
        else:
            run = state.JobRun(event.job_id, "ok", str(event.retval), scheduled, now)
            log.info("job done", extra={"job": event.job_id, "result": run.summary})
        try:
            state.record_job_run(self.engine, run)
        except Exception:
            log.exception("could not record a job result")

    def request_stop(self) -> None:
        """Ask everything to stop; safe from a signal handler."""
        STOPPING.set()
        self.stopped.set()

    def wait(self) -> None:
        self.stopped.wait()

    def shutdown(self) -> None:
        """Stop taking jobs, let a running one finish (a digest finishes its current
        message), stop serving and give up the lease."""
        self.request_stop()
        if self.scheduler is not None:
            log.info("stopping: waiting for running jobs")
            self.scheduler.shutdown(wait=True)
        if self.server is not None:
            self.server.should_exit = True
        for thread in self.threads:
            thread.join(timeout=10)
        state.release_lease(self.engine, LEASE, self.holder)
        log.info("stopped")


# ----------------------------------------------------------------------------- status


@dataclass(frozen=True)
class JobStatus:
    id: str
    trigger: str
    next_run: datetime | None
    last: state.JobRun | None


def status(config: Config) -> tuple[list[JobStatus], state.Lease | None]:
    """The stored jobs with their next run and last result, and the daemon's lease."""
    engine = state.open_state(config.state_db)
    store = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)
    store.start(new_scheduler(config, engine), "default")
    runs = state.last_job_runs(engine)
    jobs = [JobStatus(job.id, str(job.trigger), job.next_run_time, runs.get(job.id))
            for job in store.get_all_jobs()]
    return jobs, state.current_lease(engine, LEASE)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
