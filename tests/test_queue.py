"""Digest delivery by `feeds worker` (issue 15): real worker processes on a Dramatiq queue in
a real redis-server, a real aiosmtpd server on loopback, the state on SQLite or on a real
PostgreSQL server, and `kill -9` in the middle of a batch."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from feeds import state
from feeds.config import load_config, with_environment
from feeds.queue import NAMESPACE, QUEUE, connect, queue_status
from tests.conftest import ROOT, run_cli
from tests.mail import Recorder, smtp_server
from tests.test_delivery import DATE, engine_of, recipients, write_site
from tests.test_digest import cli
from tests.test_operator import feeds, folder, free_port, one_error_line
from tests.test_postgres import database  # noqa: F401  # the fixture, for the kill test

if TYPE_CHECKING:
    from tests.redisserver import RedisServer


def queue_site(tmp_path: Path, port: int, redis_url: str, *, state_db: str | None = None,
               heartbeat: float = 2, batch_size: int = 10, domain_rate: float | None = None, **smtp: object) -> Path:
    """write_site's config and records, sent through the queue at ``redis_url``."""
    config = write_site(tmp_path, port, **smtp)
    text = config.read_text()
    if state_db:
        text = text.replace(f"state_db: {tmp_path / 'state.db'}", f"state_db: {state_db}")
    text += (f"queue:\n  url: {redis_url}\n  batch_size: {batch_size}\n  heartbeat_timeout_seconds: {heartbeat}\n"
             + (f"  domain_rate_per_second: {domain_rate}\n" if domain_rate else ""))
    config.write_text(text)
    return config


def import_people(config: Path, addresses: list[str]) -> None:
    people = config.parent / "people.csv"
    people.write_text("email,topics\n" + "".join(f"{a},ai\n" for a in addresses))
    code, out, err = cli(config, "subscribers", "import", str(people))
    assert code == 0, out + err


@contextmanager
def workers(config: Path, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` real `feeds worker` processes, up and seen in Redis when the block starts;
    stopped with SIGTERM at its end (each must exit 0, without a traceback)."""
    command = [sys.executable, "-m", "feeds", "worker", "--config", str(config)]
    # Output to files, not pipes: a pipe nobody reads until the end blocks a worker that logs.
    logs = [(config.parent / f"worker{i}.out", config.parent / f"worker{i}.err") for i in range(count)]
    started = [subprocess.Popen(command, stdout=out.open("w"), stderr=err.open("w"), text=True) for out, err in logs]
    try:
        wait_for(lambda: len(queue_status(load_config(config)).workers) >= count, what="the workers to start",
                 processes=started)
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(timeout=60)
        results = [(p, out.read_text(), err.read_text()) for p, (out, err) in zip(started, logs, strict=True)]
    for process, out, err in results:
        if process.returncode != -signal.SIGKILL:
            assert process.returncode == 0 and "Traceback" not in err, out + err


def wait_for(predicate: Callable[[], object], *, what: str, timeout: float = 120,
             processes: Sequence[subprocess.Popen[str]] = (), detail: Callable[[], object] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"a worker exited ({process.returncode}) while waiting for {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} {detail()}")


def queue_empty(config: Path) -> bool:
    found = queue_status(load_config(config))
    return found.waiting + found.in_hand + found.retrying == 0


def by_address(server: Recorder) -> dict[str, list[str]]:
    """Each address and the Message-IDs it received, in order."""
    found: dict[str, list[str]] = {}
    for message in server.received():
        found.setdefault(str(message["To"]), []).append(str(message["Message-ID"]))
    return found


# ------------------------------------------------------------------------------ through workers


def test_a_digest_through_a_worker_goes_once_and_4xx_come_back_through_the_queue(
        tmp_path: Path, redis_url: str) -> None:
    """The same digest as inline: everyone once, a 451 retried by the queue's backoff with
    the same Message-ID, a 550 failed and bounced; a second run sends nothing."""
    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url, batch_size=4, backoff_seconds=0.2)
        addresses = [f"reader{i:02d}@example.org" for i in range(10)]
        import_people(config, addresses)
        server.scripted["reader03@example.org"] = ["451 4.3.0 Greylisted"] * 2
        server.scripted["reader07@example.org"] = ["550 5.1.1 No such user"]
        with workers(config, 1):
            code, out, err = cli(config, "digest", "--date", DATE, "--send")
            assert code == 0, out + err
            assert "Queued 10 subscribers in 3 batches for feeds worker" in out, out + err
            assert "Web copies:" in out  # the planner made the edition, once
            wait_for(lambda: len(server.received()) == 9 and queue_empty(config), what="9 messages")
            status = run_status(config)
            assert re.search(r"Workers: 1 seen", status), status
            assert "Edition daily-2020-06-18: 0 claimed, 9 sent, 0 deferred, 1 failed" in status, status

            code, out, err = cli(config, "digest", "--date", DATE, "--send")  # again: nothing new
            assert code == 0 and "Queued 9 subscribers" in out, out + err  # the bounced one is suppressed
            time.sleep(1)
            wait_for(lambda: queue_empty(config), what="the queue to empty")
        received = by_address(server)
    assert sorted(received) == sorted(a for a in addresses if a != "reader07@example.org")
    assert all(len(ids) == 1 for ids in received.values()), received
    engine = engine_of(tmp_path)
    reader03 = next(s for s in state.list_subscribers(engine) if s.email == "reader03@example.org")
    row = state.get_delivery(engine, reader03.id, "daily-2020-06-18")
    assert row is not None and row.status == "sent" and row.attempts == 3  # two 451s, then the queue's third try
    assert received["reader03@example.org"] == [row.message_id]
    statuses = {s.email: s.status for s in state.list_subscribers(engine)}
    assert statuses["reader07@example.org"] == "bounced"


def worker_site(config: Path, *, seeds: Path | None = None) -> Path:
    """``config`` as a worker on another machine has it: the same queue, state database and
    SMTP server, but an ``out/`` of its own (and, given ``seeds``, records of its own)."""
    machine = config.parent / "worker-machine"
    machine.mkdir()
    text = config.read_text().replace(f"out: {config.parent / 'out'}", f"out: {machine / 'out'}")
    if seeds is not None:
        text = text.replace(f"seeds: {config.parent / 'seeds'}", f"seeds: {seeds}")
    (machine / "feeds.yaml").write_text(text)
    return machine / "feeds.yaml"


def text_of(message: object) -> str:
    import email.message

    assert isinstance(message, email.message.Message)
    text = next(part for part in message.walk() if part.get_content_type() == "text/plain")
    body = text.get_payload(decode=True)
    assert isinstance(body, bytes)
    return body.decode()


def web_links(message: object) -> set[str]:
    """Every link to a web copy of the edition (under /newsletter/) in a message's text part."""
    return set(re.findall(r"https://news\.example\.org/newsletter/\S+", text_of(message)))


def test_a_worker_makes_an_edition_the_planner_did_not_keep_from_its_own_records(
        tmp_path: Path, redis_url: str) -> None:
    """The planner's editions wait in Redis; one that is not there (expired, or never
    planned: a catch-up period, an older edition's retry) is made by the worker itself,
    the same edition. The worker, on a machine of its own, publishes nothing: its message
    links to the web copy the planner wrote and archived, which the serving machine has."""
    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url)
        import_people(config, ["ada@example.org", "bob@example.org"])
        code, out, err = cli(config, "digest", "--date", DATE, "--send")  # queued; no worker yet
        assert code == 0 and "Queued 2 subscribers in 1 batch " in out, out + err
        client = connect(load_config(config).queue)
        planned = list(client.scan_iter(match=f"{NAMESPACE}:edition:*"))
        assert len(planned) == 1
        subject = json.loads(client.get(planned[0]) or "{}")["subject"]
        client.delete(*planned)
        archived = state.list_editions(engine_of(tmp_path))
        elsewhere = worker_site(config)
        with workers(elsewhere, 1):
            wait_for(lambda: len(server.received()) == 2 and queue_empty(config), what="2 messages")
    assert sorted(recipients(server)) == ["ada@example.org", "bob@example.org"]
    assert {str(m["Subject"]) for m in server.received()} == {subject}
    [path] = [e.path for e in archived]
    assert all(web_links(m) == {f"https://news.example.org/{path}"} for m in server.received())
    assert (tmp_path / "out" / path / "index.html").is_file()  # the planner's, on the serving machine
    assert not (elsewhere.parent / "out").exists()  # the worker wrote nothing of its own
    assert state.list_editions(engine_of(tmp_path)) == archived


def test_an_edition_only_a_worker_could_make_is_sent_without_a_web_copy_or_archive_entry(
        tmp_path: Path, redis_url: str) -> None:
    """The planner's records have no story for the period, so it planned and published no
    edition; a worker whose records have one makes it and sends it. Its web copy would be
    on the worker's machine alone, which `feeds serve` on the scheduler does not have: the
    worker writes none and archives none, and the message does not link to one."""
    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url)
        worker_seeds = tmp_path / "worker-seeds"
        shutil.copytree(tmp_path / "seeds", worker_seeds)
        (tmp_path / "seeds" / "a.md").unlink()  # the planner lacks the 17th's story
        import_people(config, ["ada@example.org"])
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0 and "Queued 1 subscriber in 1 batch " in out, out + err
        assert "Web copies:" not in out, out
        elsewhere = worker_site(config, seeds=worker_seeds)
        with workers(elsewhere, 1):
            wait_for(lambda: len(server.received()) == 1 and queue_empty(config), what="the message")
    [message] = server.received()
    assert "Robots learn to fold laundry" in text_of(message)  # the worker's edition
    assert web_links(message) == set()
    assert not (elsewhere.parent / "out").exists()
    assert state.list_editions(engine_of(tmp_path)) == []
    code, out, err = cli(config, "digest", "--date", DATE, "--send")  # the archive links to nothing missing
    assert code == 0, out + err
    assert "newsletter/2020" not in (tmp_path / "out" / "newsletter" / "atom.xml").read_text()


def test_a_worker_mails_who_is_still_active_with_their_own_preferences_and_unsubscribe_links(
        tmp_path: Path, redis_url: str) -> None:
    """Issue 14 meets 15: people who pause, unsubscribe or are erased after the run was
    queued are skipped by the worker; a queued digest links to its subscriber's own
    preferences page (HTML and text) and unsubscribe URL, as an inline one does."""
    from datetime import UTC, date, datetime

    from feeds.digest import verify_preferences_token
    from tests.test_digest import SECRET
    from tests.test_preferences import preferences_link

    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url)
        import_people(config, ["ada@example.org", "bob@example.org", "cy@example.org", "dee@example.org"])
        code, out, err = cli(config, "digest", "--date", DATE, "--send")  # queued; no worker yet
        assert code == 0 and "Queued 4 subscribers in 1 batch " in out, out + err
        engine = engine_of(tmp_path)
        ids = {s.email: s.id for s in state.list_subscribers(engine)}
        now = datetime.now(UTC)
        state.unsubscribe(engine, ids["bob@example.org"], now)
        assert state.pause(engine, ids["cy@example.org"], date(2020, 7, 1), now=now)
        code, out, err = cli(config, "subscribers", "erase", "dee@example.org")
        assert code == 0, out + err
        with workers(config, 1):
            wait_for(lambda: len(server.received()) >= 1 and queue_empty(config), what="the batch")
    [message] = server.received()
    assert str(message["To"]) == "ada@example.org"
    link = urlsplit(preferences_link(message))  # the same in the text and HTML parts
    assert (link.netloc, link.path) == ("news.example.org", "/preferences")
    ada = ids["ada@example.org"]
    assert verify_preferences_token(SECRET, parse_qs(link.query)["token"][0], {ada: "ada@example.org"}.get) == ada
    assert str(message["List-Unsubscribe"]).startswith("<https://news.example.org/unsubscribe?token=")


def test_a_state_database_that_refuses_sends_the_batch_back_without_a_traceback(
        tmp_path: Path, redis_url: str) -> None:
    """The state database refusing a worker (here SQLite locked past its busy timeout, as
    a PostgreSQL gone away refuses): the batch goes back to the queue, logged as one line,
    and is sent once the database answers again, each message once."""
    import sqlite3

    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url)
        addresses = ["ada@example.org", "bob@example.org"]
        import_people(config, addresses)
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0, out + err
        lock = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # readers go on (WAL); every write waits, then fails
        try:
            with workers(config, 1):
                time.sleep(12)  # past the worker's 10 s busy timeout
                lock.execute("ROLLBACK")
                wait_for(lambda: len(server.received()) == 2 and queue_empty(config), what="2 messages")
        finally:
            lock.close()
        log = (tmp_path / "worker0.err").read_text()
    assert "state database" in log, log
    assert sorted(recipients(server)) == addresses


def test_a_worker_without_the_records_fails_nobody_and_tries_again(tmp_path: Path, redis_url: str) -> None:
    """A worker that must make an edition itself (Redis lost the planner's) on a machine
    without the records cannot make it: nobody's fault, so nobody is failed for good; the
    batch goes back to the queue, and once the records are there it is sent, once each."""
    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url)
        addresses = ["ada@example.org", "bob@example.org"]
        import_people(config, addresses)
        code, out, err = cli(config, "digest", "--date", DATE, "--send")  # queued; no worker yet
        assert code == 0, out + err
        client = connect(load_config(config).queue)
        client.delete(*client.scan_iter(match=f"{NAMESPACE}:edition:*"))
        seeds = tmp_path / "seeds"
        seeds.rename(tmp_path / "elsewhere")
        with workers(config, 1):
            log = tmp_path / "worker0.err"
            engine = engine_of(tmp_path)
            wait_for(lambda: "batch stopped" in log.read_text() or state.delivered_editions(engine, "daily-2020-06-18"),
                     what="the batch to stop")
            assert "no such folder of records" in log.read_text()
            assert Counter(state.delivered_editions(engine, "daily-2020-06-18").values())["failed"] == 0
            (tmp_path / "elsewhere").rename(seeds)
            wait_for(lambda: len(server.received()) == 2 and queue_empty(config), what="2 messages")
        received = by_address(server)
    assert sorted(received) == addresses and all(len(ids) == 1 for ids in received.values()), received


def test_two_planners_at_once_queue_twice_and_everyone_gets_one_message(tmp_path: Path, redis_url: str) -> None:
    """The daemon's digest job and a manual `feeds digest --send` at the same time queue
    every batch twice: the claims still give each subscriber one message."""
    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url, batch_size=5)
        addresses = [f"reader{i:02d}@example.org" for i in range(40)]
        import_people(config, addresses)
        command = ["digest", "--date", DATE, "--send", "--config", str(config)]
        with workers(config, 2):
            planners = [subprocess.Popen([sys.executable, "-m", "feeds", *command], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True) for _ in range(2)]
            for planner in planners:
                out, err = planner.communicate(timeout=120)
                assert planner.returncode == 0 and "Queued 40 subscribers in 8 batches" in out, out + err
            wait_for(lambda: len(server.received()) >= 40 and queue_empty(config), what="both runs' batches")
            time.sleep(1)
        received = by_address(server)
    assert sorted(received) == addresses and all(len(ids) == 1 for ids in received.values()), received


def test_two_workers_with_one_host_name_and_pid_are_two_in_status(tmp_path: Path, redis_url: str) -> None:
    """Two containers of one image: the same host name, and each worker pid 1 in its own PID
    namespace (here real ones, by unshare). Each records itself under an id of its own, and
    `feeds status` lists both."""
    import os
    import socket

    probe = subprocess.run(["unshare", "--pid", "--fork", "--user", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no PID namespaces here: {probe.stderr.decode().strip()}")
    config = queue_site(tmp_path, free_port(), redis_url)
    command = ["unshare", "--pid", "--fork", "--user", "--map-root-user",
               sys.executable, "-m", "feeds", "worker", "--config", str(config)]
    logs = [tmp_path / f"container{i}.err" for i in range(2)]
    started = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True,
                                start_new_session=True) for log in logs]
    try:
        wait_for(lambda: all("worker running" in log.read_text() for log in logs), what="both workers",
                 processes=started)
        time.sleep(0.5)
        status = run_status(config)
        names = [w.name for w in queue_status(load_config(config)).workers]
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)  # unshare waits; its pid 1, the worker, stops
        for process in started:
            process.wait(timeout=60)
    assert len(names) == 2 and len(set(names)) == 2, names
    assert all(name.startswith(f"{socket.gethostname()} pid 1 ") for name in names), names
    assert "Workers: 2 seen" in status and all(f"  {name}, 1 thread" in status for name in names), status
    assert all(p.returncode == 0 for p in started), [log.read_text() for log in logs]


def run_status(config: Path) -> str:
    code, out, err = cli(config, "status")
    assert code == 0, out + err
    return out


@pytest.mark.slow
def test_two_workers_keep_the_global_and_per_domain_rates_together(tmp_path: Path, redis_url: str) -> None:
    """smtp.rate_per_second and queue.domain_rate_per_second are for all workers together:
    in no second do the two send more than the rate between them."""
    arrivals: list[tuple[float, str]] = []
    lock = threading.Lock()

    def note(address: str) -> None:
        with lock:
            arrivals.append((time.monotonic(), address.rpartition("@")[2]))

    with smtp_server() as (server, port):
        server.on_rcpt = note
        config = queue_site(tmp_path, port, redis_url, batch_size=5, rate_per_second=12, domain_rate=4)
        addresses = [f"r{i:02d}@{'slow' if i % 4 == 0 else 'fast'}.example.org" for i in range(48)]
        import_people(config, addresses)
        with workers(config, 2):
            code, out, err = cli(config, "digest", "--date", DATE, "--send")
            assert code == 0, out + err
            wait_for(lambda: len(server.received()) == 48 and queue_empty(config), what="48 messages")
    assert sorted(recipients(server)) == sorted(addresses)
    # The limiter counts when a send starts; RCPT arrives a few milliseconds later, so a
    # window here may hold one more than the limit where the limiter's held the limit.
    assert most_in_a_second(arrivals) <= 12 + 1, arrivals
    assert most_in_a_second([a for a in arrivals if a[1] == "slow.example.org"]) <= 4 + 1, arrivals
    assert arrivals[-1][0] - arrivals[0][0] >= 2.5  # 12 slow ones at 4 a second, 48 at 12 a second


def test_sigterm_interrupts_a_wait_on_a_slow_domain_limit(tmp_path: Path, redis_url: str) -> None:
    """A domain limit of 3 a minute (a moving window of 60 s): the worker sends 3 and waits
    for the window. SIGTERM stops it at once, not once the window has passed; the message
    in hand is deferred (nobody failed), its batch goes back to the queue, and a worker
    without that limit then sends the rest, each once."""
    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url, domain_rate=0.05, backoff_seconds=0.2)
        addresses = [f"reader{i}@slow.example.org" for i in range(6)]
        import_people(config, addresses)
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0 and "Queued 6 subscribers in 1 batch " in out, out + err
        worker, log = start_worker(config, "limited")
        try:
            wait_for(lambda: len(server.received()) == 3, what="the window's 3 messages", processes=[worker])
            time.sleep(1)  # the worker now waits for the window
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=20)  # without the interrupt: when the 60 s window ends
        finally:
            if worker.poll() is None:
                worker.kill()
        stderr = log.read_text()
        assert worker.returncode == 0 and "Traceback" not in stderr, stderr
        assert len(server.received()) == 3
        statuses = Counter(state.delivered_editions(engine_of(tmp_path), "daily-2020-06-18").values())
        assert statuses == {"sent": 3, "deferred": 1}, statuses

        unlimited = tmp_path / "unlimited"
        unlimited.mkdir()
        (unlimited / "feeds.yaml").write_text(
            "\n".join(line for line in config.read_text().splitlines() if "domain_rate" not in line) + "\n")
        with workers(unlimited / "feeds.yaml", 1):
            wait_for(lambda: len(server.received()) == 6 and queue_empty(config), what="the rest")
        received = by_address(server)
    assert sorted(received) == addresses and all(len(ids) == 1 for ids in received.values()), received


def most_in_a_second(arrivals: list[tuple[float, str]]) -> int:
    times = sorted(t for t, _ in arrivals)
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


@pytest.mark.slow
def test_the_daemons_digest_job_queues_the_run_for_the_workers(tmp_path: Path, redis_url: str) -> None:
    from datetime import timedelta

    from feeds.scheduler import set_next_run
    from tests.test_daemon import NOW, Running, daemon_config, fresh_seeds, job_run, subscribe_many

    with smtp_server() as (server, port):
        slot = (NOW - timedelta(minutes=10)).replace(second=0, microsecond=0)
        config = daemon_config(tmp_path, port, seeds=fresh_seeds(tmp_path),
                               extra=f"queue:\n  url: {redis_url}\n  batch_size: 2\n")
        text = config.read_text()
        config.write_text(re.sub(r'daily_digest_at: "[^"]*"', f'daily_digest_at: "{slot:%H:%M}"', text))
        addresses = subscribe_many(config, tmp_path, 5)
        set_next_run(load_config(config), str(config), "digest-daily", slot)
        with workers(config, 1):
            daemon = Running(config, tmp_path, "--no-serve")
            try:
                wait_for(lambda: (r := job_run(config, "digest-daily")) is not None and r.status == "ok",
                         what="the digest job")
                wait_for(lambda: len(server.received()) == 5 and queue_empty(config), what="5 messages")
            finally:
                assert daemon.stop() == 0
    run = job_run(config, "digest-daily")
    assert run is not None and run.summary.startswith("5 subscribers queued in 3 batches for feeds worker"), run
    assert sorted(recipients(server)) == addresses


# ------------------------------------------------------------------------------ kill -9


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nobody_and_repeats_at_most_its_message_in_flight(
        tmp_path: Path, redis_url: str, database: str) -> None:  # noqa: F811
    """2,000 subscribers over 3 workers sharing a PostgreSQL state database; one worker is
    killed with SIGKILL mid-batch. Its batch goes to another worker once its heartbeat is
    missed: everyone gets the edition, the one message in flight at most twice with the
    same Message-ID, and a second run sends nothing."""
    count = 2000
    addresses = [f"reader{i:04d}@example.org" for i in range(count)]
    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis_url, state_db=database, batch_size=50, heartbeat=2,
                            rate_per_second=1000)
        import_people(config, addresses)
        with workers(config, 3) as started:
            code, out, err = cli(config, "digest", "--date", DATE, "--send")
            assert code == 0 and f"Queued {count} subscribers in 40 batches" in out, out + err
            wait_for(lambda: len(server.received()) >= 400, what="400 messages", processes=started)
            victim = started[0]
            # Mid-batch: the victim has a batch in hand (taken, not acknowledged) when killed.
            wait_for(lambda: batches_in_hand(config, victim.pid), what="the victim to take a batch",
                     processes=started)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            assert len(server.received()) < count, "the run ended before the kill: nothing was tested"
            wait_for(lambda: len(set(recipients(server))) == count and queue_empty(config),
                     what="everyone's edition", timeout=180, processes=started[1:],
                     detail=lambda: (len(set(recipients(server))), queue_status(load_config(config))))
            first_run = by_address(server)
            assert f"Edition daily-2020-06-18: 0 claimed, {count} sent, 0 deferred, 0 failed" in run_status(config)

            code, out, err = cli(config, "digest", "--date", DATE, "--send")  # a rerun sends nothing
            assert code == 0 and f"Queued {count} subscribers" in out, out + err
            time.sleep(1)
            wait_for(lambda: queue_empty(config), what="the rerun's batches", processes=started[1:])
            time.sleep(1)
        assert len(server.received()) == sum(len(ids) for ids in first_run.values())
    assert sorted(first_run) == addresses  # nobody missed
    repeats = {address: ids for address, ids in first_run.items() if len(ids) > 1}
    assert len(repeats) <= 1, repeats  # at most the one message in flight at the kill
    for ids in repeats.values():
        assert len(ids) == 2 and len(set(ids)) == 1, ids  # and with the same Message-ID
    assert Counter(state.delivered_editions(state.open_state(database), "daily-2020-06-18").values()) == {"sent": count}


def batches_in_hand(config: Path, pid: int) -> int:
    """How many batches the worker ``pid`` has taken and not acknowledged (Dramatiq keeps
    them in a set of that worker's, until it acknowledges them or is found dead)."""
    loaded = load_config(config)
    [seen] = [w for w in queue_status(loaded).workers if w.pid == pid]
    return int(connect(loaded.queue).scard(f"{NAMESPACE}:__acks__.{seen.broker_id}.{QUEUE}"))


# ------------------------------------------------------------------------------ operator faults


@pytest.mark.parametrize("command", [["worker"], ["digest", "--send"], ["status"]])
def test_an_unreachable_queue_is_one_line(tmp_path: Path, command: list[str]) -> None:
    conf = folder(tmp_path / "conf")
    closed = free_port()
    (conf / "feeds.yaml").write_text(f"secret: a-test-secret-that-is-long-enough\nseeds: {conf}\n"
                                     f"queue:\n  url: redis://:hunter2@127.0.0.1:{closed}/0\n")
    result = feeds(*command, "--config", str(conf / "feeds.yaml"), cwd=tmp_path, timeout=60)
    one_error_line(result, f"queue redis://:***@127.0.0.1:{closed}/0: cannot connect")
    assert "hunter2" not in result.stderr


def test_status_with_redis_down_still_shows_the_rest(tmp_path: Path) -> None:
    """`feeds status` is what an operator runs when something is down: Redis not
    answering is its one error line (exit 1), after the daemon, jobs and editions."""
    conf = folder(tmp_path / "conf")
    closed = free_port()
    (conf / "feeds.yaml").write_text(f"secret: a-test-secret-that-is-long-enough\nseeds: {conf}\n"
                                     f"state_db: {tmp_path / 'state.db'}\nqueue:\n  url: redis://127.0.0.1:{closed}/0\n")
    result = feeds("status", "--config", str(conf / "feeds.yaml"), cwd=tmp_path, timeout=60)
    one_error_line(result, f"queue redis://127.0.0.1:{closed}/0: cannot connect")
    assert "State database:" in result.stdout and "Daemon: not running" in result.stdout, result.stdout


@pytest.mark.parametrize("url, shown", [
    ("redis://:hunter2@127.0.0.1:{port}/0", "redis://:***@127.0.0.1:{port}/0"),
    ("redis://feeds:hunter2@127.0.0.1:{port}/0", "redis://feeds:***@127.0.0.1:{port}/0"),
    ("redis://127.0.0.1:{port}/0?password=hunter2", "redis://127.0.0.1:{port}/0?password=***"),
    ("redis://127.0.0.1:{port}/0?socket_timeout=5&password=hunter2", "redis://127.0.0.1:{port}/0?socket_timeout=5&password=***"),
])
def test_a_queue_password_is_hidden_wherever_the_url_has_it(tmp_path: Path, url: str, shown: str) -> None:
    """redis-py takes a password in the URL's user part or as ?password=: neither is shown."""
    closed = free_port()
    (tmp_path / "feeds.yaml").write_text(f"queue:\n  url: {url.format(port=closed)}\n")
    result = feeds("worker", "--config", str(tmp_path / "feeds.yaml"), cwd=tmp_path, timeout=60)
    one_error_line(result, f"queue {shown.format(port=closed)}: cannot connect")
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("queue, reason", [
    ("url: http://127.0.0.1:6379/", "queue: url: expected a Redis URL"),
    ("batch_size: 0", "queue: batch_size: expected a whole number of at least 1"),
    ("heartbeat_timeout_seconds: -1", "queue: heartbeat_timeout_seconds: expected a number greater than 0"),
    ("domain_rate_per_second: no", "queue: domain_rate_per_second: expected a number greater than 0"),
    ("urls: redis://x", "queue: unknown key 'urls'"),
])
def test_a_bad_queue_key_is_one_line(tmp_path: Path, queue: str, reason: str) -> None:
    (tmp_path / "feeds.yaml").write_text(f"queue:\n  {queue}\n")
    one_error_line(feeds("worker", "--config", str(tmp_path / "feeds.yaml"), cwd=tmp_path), reason)


def test_feeds_queue_url_in_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "feeds.yaml").write_text("queue:\n  url: redis://file.example:6379/0\n  batch_size: 7\n")
    config = with_environment(load_config(tmp_path / "feeds.yaml"), {"FEEDS_QUEUE_URL": "redis://:pw@env.example/1"})
    assert (config.queue.url, config.queue.batch_size) == ("redis://:pw@env.example/1", 7)


def test_a_worker_without_a_queue_says_so(tmp_path: Path) -> None:
    (tmp_path / "feeds.yaml").write_text("title: Mine\n")
    one_error_line(feeds("worker", "--config", str(tmp_path / "feeds.yaml"), cwd=tmp_path), "queue.url is not set")


def test_without_a_queue_status_says_inline(tmp_path: Path) -> None:
    (tmp_path / "feeds.yaml").write_text("title: Mine\n")
    assert "Queue: none (digests are sent inline)" in run_status(tmp_path / "feeds.yaml")


def start_worker(config: Path, name: str) -> tuple[subprocess.Popen[str], Path]:
    """One `feeds worker` process, its stderr in a file named ``name``; not waited for."""
    err = config.parent / f"{name}.err"
    process = subprocess.Popen([sys.executable, "-m", "feeds", "worker", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=err.open("w"), text=True)
    return process, err


def test_redis_lost_mid_batch_stops_the_worker_with_one_line_and_fails_nobody(
        tmp_path: Path, redis: RedisServer) -> None:
    """Redis crashes while a worker sends a batch: the worker stops with one line and
    exit status 1 (no traceback), the subscribers it had not mailed stay owed (none is
    failed), and once Redis is back a later run mails each of them once."""
    with smtp_server() as (server, port):
        config = queue_site(tmp_path, port, redis.url, batch_size=50, heartbeat=2, rate_per_second=10)
        addresses = [f"reader{i:02d}@example.org" for i in range(30)]
        import_people(config, addresses)
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0 and "Queued 30 subscribers in 1 batch " in out, out + err
        worker, log = start_worker(config, "lost")
        try:
            wait_for(lambda: len(server.received()) >= 5, what="5 messages", processes=[worker])
            redis.kill()
            worker.wait(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
        stderr = log.read_text()
        assert worker.returncode == 1 and "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1].startswith(f"Error: queue {redis.url}: lost"), stderr
        sent_before = len(server.received())
        assert sent_before < len(addresses)
        statuses = Counter(state.delivered_editions(engine_of(tmp_path), "daily-2020-06-18").values())
        assert statuses["failed"] == 0 and statuses["sent"] == sent_before, statuses

        redis.start()  # empty: the queue and its batch are gone; the next run queues them again
        with workers(config, 1):
            code, out, err = cli(config, "digest", "--date", DATE, "--send")
            assert code == 0, out + err
            wait_for(lambda: len(set(recipients(server))) == len(addresses) and queue_empty(config),
                     what="everyone's edition")
        received = by_address(server)
    assert sorted(received) == addresses and all(len(ids) == 1 for ids in received.values()), received


def test_redis_lost_while_queueing_is_one_line_and_the_next_run_queues_everyone(
        tmp_path: Path, redis: RedisServer) -> None:
    """Redis crashes while `feeds digest --send` queues its batches: one line, exit status
    1, no traceback; nothing was claimed, so the next run (Redis back) queues everyone."""
    import redis as redis_py

    config = queue_site(tmp_path, free_port(), redis.url, batch_size=1)
    count = 3000
    import_people(config, [f"reader{i:04d}@example.org" for i in range(count)])
    client = redis_py.Redis.from_url(redis.url)

    def kill_once_queueing() -> None:
        wait_for(lambda: client.llen(f"{NAMESPACE}:{QUEUE}") > 0, what="the first batch", timeout=60)
        redis.kill()

    killer = threading.Thread(target=kill_once_queueing)
    killer.start()
    result = feeds("digest", "--date", DATE, "--send", "--config", str(config), cwd=tmp_path, timeout=120)
    killer.join()
    one_error_line(result, f"queue {redis.url}: lost")
    assert Counter(state.delivered_editions(engine_of(tmp_path), "daily-2020-06-18").values()) == {}

    redis.start()
    code, out, err = cli(config, "digest", "--date", DATE, "--send")
    assert code == 0 and f"Queued {count} subscribers in {count} batches" in out, out + err


# ------------------------------------------------------------------------------ deploy


UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_each_systemd_unit_is_in_the_readme_and_runs_a_real_command(unit: Path) -> None:
    text = unit.read_text(encoding="utf-8")
    shown = text[text.index("[Unit]"):].strip()  # the README shows it without its opening comments
    assert shown in (ROOT / "README.md").read_text(encoding="utf-8"), unit.name
    [command] = re.findall(r"^ExecStart=\S+/feeds (.*)$", text, flags=re.M)
    result = run_cli(*command.split(), "--help")  # every flag it gives is one the command takes
    assert result.exit_code == 0, result.output
