"""The state database on PostgreSQL: the same code as on SQLite, against a real server.

Runs when FEEDS_TEST_POSTGRES_URL names a database (.ci/run starts one); elsewhere it
skips, unless FEEDS_REQUIRE_POSTGRES is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from feeds import state
from tests.conftest import SEEDS, run_cli
from tests.mail import smtp_server

URL = os.environ.get("FEEDS_TEST_POSTGRES_URL")


@pytest.fixture
def database() -> Iterator[str]:
    if not URL:
        if os.environ.get("FEEDS_REQUIRE_POSTGRES"):
            pytest.fail("FEEDS_REQUIRE_POSTGRES is set but FEEDS_TEST_POSTGRES_URL is not")
        pytest.skip("no PostgreSQL server (set FEEDS_TEST_POSTGRES_URL)")
    name = f"feeds_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        sa.create_engine(url).dispose()
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_subscribers_ledger_and_leases_on_postgres(database: str) -> None:
    engine = state.open_state(database)
    now = datetime(2020, 6, 18, tzinfo=UTC)
    assert state.add_subscriber(engine, "ada@example.org", ("ai",), "daily", now)
    assert not state.add_subscriber(engine, "ada@example.org", ("ai", "computer-vision"), "weekly", now)
    [ada] = state.list_subscribers(engine)
    assert ada.topics == ("ai", "computer-vision") and ada.cadence == "weekly"
    state.record_delivery(engine, subscriber_id=ada.id, edition="weekly-2020-06-18", message_id="<m@x>",
                          status="sent", period_end=now, now=now)
    assert state.delivered_editions(engine, "weekly-2020-06-18") == {ada.id: "sent"}
    assert state.last_period_ends(engine) == {ada.id: now}
    ttl = timedelta(seconds=30)
    assert state.acquire_lease(engine, "scheduler", "one", "host pid 1", now=now, ttl=ttl) is None
    held = state.acquire_lease(engine, "scheduler", "two", "host pid 2", now=now, ttl=ttl)
    assert held is not None and held.description == "host pid 1"
    assert state.acquire_lease(engine, "scheduler", "two", "host pid 2", now=now + 2 * ttl, ttl=ttl) is None
    assert state.secret(engine) == state.secret(engine)


def test_a_digest_sent_with_a_postgres_ledger_goes_once(database: str, tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        config = tmp_path / "feeds.yaml"
        config.write_text(f"seeds: {SEEDS}\nout: {tmp_path / 'out'}\nstate_db: {database}\n"
                          f"secret: a-test-secret-that-is-long-enough\n"
                          f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  rate_per_second: 1000\n")
        for address in ("ada@example.org", "bob@example.org"):
            assert run_cli("subscribers", "add", address, "--topics", "ai", "--cadence", "weekly",
                           "--config", str(config)).exit_code == 0
        for _ in range(2):
            result = run_cli("digest", "--date", "2020-06-18T00:00:00Z", "--send", "--config", str(config))
            assert result.exit_code == 0, result.output
        assert sorted(m["To"] for m in server.received()) == ["ada@example.org", "bob@example.org"]


def test_subscriber_statuses_on_postgres(database: str) -> None:
    from tests.test_state import check_statuses_and_history

    check_statuses_and_history(state.open_state(database))


def test_export_and_erase_on_postgres(database: str, tmp_path: Path) -> None:
    from tests.test_subscriber_data import check_export_and_erase

    check_export_and_erase(tmp_path, database)


def test_the_inbox_lookups_on_postgres(database: str) -> None:
    engine = state.open_state(database)
    now = datetime(2020, 6, 18, tzinfo=UTC)
    assert state.add_subscriber(engine, "ada@example.org", ("ai",), "daily", now)
    ada = state.find_subscriber(engine, "ada@example.org")
    assert ada is not None and state.find_subscriber(engine, "bob@example.org") is None
    state.record_delivery(engine, subscriber_id=ada.id, edition="daily-2020-06-18", message_id="<m@x>",
                          status="sent", period_end=now, now=now)
    assert state.message_subscriber(engine, "<m@x>") == ada.id
    assert state.message_subscriber(engine, "<other@x>") is None


@pytest.mark.slow
def test_two_senders_at_once_split_the_work_on_postgres(database: str, tmp_path: Path) -> None:
    from tests.test_delivery import check_two_senders_at_once

    check_two_senders_at_once(tmp_path, database)


def test_claims_and_retries_on_postgres(database: str) -> None:
    engine = state.open_state(database)
    now = datetime(2020, 6, 18, tzinfo=UTC)
    state.add_subscriber(engine, "ada@example.org", ("ai",), "daily", now)
    [ada] = state.list_subscribers(engine)
    claim = {"subscriber_id": ada.id, "edition": "daily-2020-06-18", "message_id": "<m@x>",
             "period_start": now - timedelta(days=1), "period_end": now, "now": now,
             "expires": now + timedelta(minutes=5)}
    assert state.claim_delivery(engine, holder="one", **claim) is None
    held = state.claim_delivery(engine, holder="two", **claim)
    assert held is not None and (held.status, held.claimed_by) == ("claimed", "one")
    assert state.finish_delivery(engine, subscriber_id=ada.id, edition="daily-2020-06-18", holder="one",
                                 status="deferred", now=now, detail="451 later")
    [row] = state.open_deliveries(engine)
    assert state.take_over_delivery(engine, row, holder="two", expires=now)
    assert not state.take_over_delivery(engine, row, holder="three", expires=now)  # only one wins
    assert state.ledger_ends(engine) == {ada.id: state.LedgerEnds(None, now)}
