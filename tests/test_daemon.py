"""The daemon: the real APScheduler with short real intervals, real subprocesses, real
signals, and a real SMTP server on loopback."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from feeds import state
from feeds.config import load_config
from feeds.scheduler import LocalTimeTrigger, set_next_run
from tests.conftest import run_cli, write_record
from tests.mail import Recorder, smtp_server

NOW = datetime.now(UTC)
# The daily digest's time in these tests: half a day from now, so its real slot never
# falls inside a test (a fixed 07:00 made tests run between 07:00 and 07:30 UTC see a digest).
DAILY_AT = f"{NOW + timedelta(hours=12):%H:%M}"


# ----------------------------------------------------------------------- DST trigger


def fires(trigger: LocalTimeTrigger, start: datetime, days: int) -> list[datetime]:
    found: list[datetime] = []
    previous = None
    now = start
    while True:
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        if fire > start + timedelta(days=days):
            return found
        found.append(fire)
        previous = fire


@pytest.mark.parametrize("zone, at, start", [
    ("Europe/London", "01:30", datetime(2021, 3, 26, tzinfo=UTC)),   # spring: 01:00 -> 02:00
    ("Europe/London", "01:30", datetime(2021, 10, 29, tzinfo=UTC)),  # autumn: 01:00-02:00 twice
    ("America/Sao_Paulo", "00:00", datetime(2018, 11, 2, tzinfo=UTC)),  # spring at midnight (#606)
    ("America/Sao_Paulo", "23:30", datetime(2019, 2, 14, tzinfo=UTC)),  # autumn: 23:00-24:00 twice
    ("Europe/Berlin", "07:00", datetime(2021, 3, 26, tzinfo=UTC)),
])
def test_daily_digest_fires_once_every_local_day_across_dst(zone: str, at: str, start: datetime) -> None:
    trigger = LocalTimeTrigger.parse(at, zone)
    times = fires(trigger, start, days=5)
    local_days = [t.astimezone(ZoneInfo(zone)).date() for t in times]
    assert len(times) == 5 and len(set(local_days)) == 5, times
    assert all(b - a >= timedelta(hours=23) for a, b in itertools.pairwise(times))


def test_a_skipped_wall_time_fires_just_after_the_gap() -> None:
    trigger = LocalTimeTrigger.parse("01:30", "Europe/London")
    spring = [t for t in fires(trigger, datetime(2021, 3, 27, 12, tzinfo=UTC), 2)
              if t.date() == date(2021, 3, 28)]
    assert [t.astimezone(ZoneInfo("Europe/London")).strftime("%H:%M") for t in spring] == ["02:30"]


def test_weekly_fires_on_its_day_only() -> None:
    trigger = LocalTimeTrigger.parse("mon 07:00", "Europe/London")
    times = fires(trigger, datetime(2021, 3, 1, tzinfo=UTC), days=28)
    assert [t.astimezone(ZoneInfo("Europe/London")).strftime("%a %H:%M") for t in times] == ["Mon 07:00"] * 4


# ------------------------------------------------------------------------- helpers


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def daemon_config(tmp_path: Path, port: int, *, seeds: Path, extra: str = "") -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(f"""
seeds: {seeds}
out: {tmp_path / 'out'}
state_db: {tmp_path / 'state.db'}
secret: a-test-secret-that-is-long-enough
mail_from: AI Digest <digest@news.example.org>
base_url: https://news.example.org/
smtp:
  host: 127.0.0.1
  port: {port}
  rate_per_second: 1000
  backoff_seconds: 0.05
schedule:
  build_every_minutes: 60
  daily_digest_at: "{DAILY_AT}"
  weekly_digest_at: null
  lease_seconds: 3
{extra}""", encoding="utf-8")
    return path


def fresh_seeds(tmp_path: Path, count: int = 3) -> Path:
    """Records published an hour ago, so today's digest has news."""
    seeds = tmp_path / "seeds"
    for i in range(count):
        write_record(seeds / f"{i}.md", title=f"Fresh story {i}", webUrl=f"https://example.com/fresh/{i}",
                     publishedDateTime=(NOW - timedelta(hours=1, minutes=i)).isoformat(), topics=["AI"])
    return seeds


def subscribe_many(config: Path, tmp_path: Path, count: int) -> list[str]:
    addresses = [f"reader{i:02d}@example.org" for i in range(count)]
    people = tmp_path / "people.csv"
    people.write_text("email,topics\n" + "".join(f"{a},ai\n" for a in addresses))
    result = run_cli("subscribers", "import", str(people), "--config", str(config))
    assert result.exit_code == 0, result.output
    return addresses


class Running:
    """`feeds run` in a real subprocess, with its structured log."""

    def __init__(self, config: Path, tmp_path: Path, *args: str) -> None:
        self.log_path = tmp_path / f"daemon-{time.monotonic_ns()}.log"
        self.log_file = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "feeds", "--log-level", "info", "run", "--config", str(config), *args],
            stdout=self.log_file, stderr=subprocess.STDOUT)

    def events(self) -> list[dict[str, object]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def has(self, event: str, **fields: object) -> bool:
        return any(e.get("event") == event and all(e.get(k) == v for k, v in fields.items()) for e in self.events())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.log_file.close()
        return code


@pytest.fixture
def mail() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


def job_run(config: Path, job: str) -> state.JobRun | None:
    engine = state.open_state(load_config(config).state_db)
    return state.last_job_runs(engine).get(job)


# -------------------------------------------------------------------------- daemon


@pytest.mark.slow
def test_a_restart_after_a_missed_slot_sends_once(tmp_path: Path, mail: tuple[Recorder, int]) -> None:
    server, port = mail
    slot = (NOW - timedelta(minutes=10)).replace(second=0, microsecond=0)
    config = daemon_config(tmp_path, port, seeds=fresh_seeds(tmp_path))
    config.write_text(config.read_text().replace(f'daily_digest_at: "{DAILY_AT}"', f'daily_digest_at: "{slot:%H:%M}"'))
    addresses = subscribe_many(config, tmp_path, 3)
    # The daemon was down over three daily slots, the last of them ten minutes ago.
    set_next_run(load_config(config), str(config), "digest-daily", slot - timedelta(days=2))
    daemon = Running(config, tmp_path, "--no-serve")
    try:
        wait_for(lambda: (r := job_run(config, "digest-daily")) is not None and r.status == "ok",
                 what="the missed digest to run")
        time.sleep(1.0)  # would a second (uncoalesced) run follow? give it the chance
    finally:
        assert daemon.stop() == 0
    assert sorted(m["To"] for m in server.received()) == addresses  # once each, not three times
    run = job_run(config, "digest-daily")
    assert run is not None and run.summary.startswith("3 sent")

    again = Running(config, tmp_path, "--no-serve")  # and a plain restart sends nothing more
    try:
        wait_for(lambda: again.has("job scheduled", job="digest-daily"), what="the restart")
        time.sleep(1.0)
    finally:
        assert again.stop() == 0
    assert len(server.received()) == 3


def test_a_slot_missed_by_more_than_the_grace_time_is_skipped_and_logged(tmp_path: Path,
                                                                         mail: tuple[Recorder, int]) -> None:
    server, port = mail
    config = daemon_config(tmp_path, port, seeds=fresh_seeds(tmp_path), extra="  misfire_grace_minutes: 30\n")
    subscribe_many(config, tmp_path, 2)
    set_next_run(load_config(config), str(config), "digest-daily", NOW - timedelta(hours=3))
    daemon = Running(config, tmp_path, "--no-serve")
    try:
        wait_for(lambda: daemon.has("job missed", job="digest-daily"), what="the missed-run log line")
    finally:
        assert daemon.stop() == 0
    assert server.received() == []
    run = job_run(config, "digest-daily")
    assert run is not None and run.status == "missed"


@pytest.mark.slow
def test_a_failing_job_is_logged_and_the_next_run_retries(tmp_path: Path, mail: tuple[Recorder, int]) -> None:
    _, port = mail
    seeds = tmp_path / "not-yet"
    config = daemon_config(tmp_path, port, seeds=seeds)
    config.write_text(config.read_text().replace("build_every_minutes: 60", "build_every_minutes: 0.02"))
    daemon = Running(config, tmp_path, "--no-serve")
    try:
        wait_for(lambda: daemon.has("job failed", job="build"), what="the first failure")
        failure = next(e for e in daemon.events() if e.get("event") == "job failed")
        # An operator's fault: one line naming the folder; the traceback only at debug level.
        assert "no such folder of records" in str(failure["error"]) and "traceback" not in failure
        fresh_seeds(tmp_path).rename(seeds)
        wait_for(lambda: daemon.has("job done", job="build"), what="a later run to succeed")
        assert daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0
    assert (tmp_path / "out/topics/ai/rss.xml").is_file()


@pytest.mark.slow
def test_sigterm_during_a_send_loses_nothing(tmp_path: Path, mail: tuple[Recorder, int]) -> None:
    server, port = mail
    config = daemon_config(tmp_path, port, seeds=fresh_seeds(tmp_path))
    config.write_text(config.read_text().replace("rate_per_second: 1000", "rate_per_second: 20"))
    addresses = subscribe_many(config, tmp_path, 40)
    set_next_run(load_config(config), str(config), "digest-daily", NOW - timedelta(minutes=1))
    daemon = Running(config, tmp_path, "--no-serve")
    try:
        wait_for(lambda: len(server.received()) >= 5, what="sending to start")
    finally:
        assert daemon.stop(signal.SIGTERM) == 0  # graceful: finishes the message in flight
    received = [m["To"] for m in server.received()]
    assert 5 <= len(received) < 40
    engine = state.open_state(load_config(config).state_db)
    ledger = state.delivered_editions(engine, f"daily-{NOW.date().isoformat()}")
    recorded = sorted(p.email for p in state.list_subscribers(engine) if ledger.get(p.id) == "sent")
    assert recorded == sorted(received)  # every accepted message recorded, none lost

    result = run_cli("digest", "--send", "--config", str(config))  # the rest go next time
    assert result.exit_code == 0, result.output
    assert sorted(m["To"] for m in server.received()) == addresses  # each exactly once


@pytest.mark.slow
def test_a_second_daemon_on_the_same_database_refuses_to_start_jobs(tmp_path: Path, mail: tuple[Recorder, int]) -> None:
    _, port = mail
    config = daemon_config(tmp_path, port, seeds=fresh_seeds(tmp_path))
    first = Running(config, tmp_path, "--no-serve")
    try:
        wait_for(lambda: first.has("lease acquired"), what="the first daemon")
        second = subprocess.run([sys.executable, "-m", "feeds", "run", "--no-serve", "--config", str(config)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert "another feeds daemon" in second.stderr and "Not starting jobs" in second.stderr
        status = run_cli("status", "--config", str(config))
        assert status.exit_code == 0 and "Daemon: running" in status.stdout
        assert "digest-daily" in status.stdout and "build" in status.stdout
    finally:
        assert first.stop() == 0
    # Once the first has stopped, its lease is gone and a new daemon may start.
    assert "Daemon: not running" in run_cli("status", "--config", str(config)).stdout


def test_status_shows_next_runs_and_last_results(tmp_path: Path, mail: tuple[Recorder, int]) -> None:
    _, port = mail
    config = daemon_config(tmp_path, port, seeds=fresh_seeds(tmp_path))
    daemon = Running(config, tmp_path, "--no-serve")
    try:
        wait_for(lambda: daemon.has("job done", job="build"), what="the first build")
    finally:
        daemon.stop()
    out = run_cli("status", "--config", str(config)).stdout
    assert "Daemon: not running" in out
    assert "last ok at" in out and "3 records" in out
    assert f"local[{DAILY_AT} UTC]" in out
