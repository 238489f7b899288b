"""The state database's subscriber statuses, on a real SQLite file (and PostgreSQL in
tests/test_postgres.py): who left stays gone, and every change is kept."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feeds import state

NOW = datetime(2020, 6, 18, tzinfo=UTC)


def check_statuses_and_history(engine: Engine) -> None:
    """Shared with the PostgreSQL test: the same promises on either database."""
    assert state.add_subscriber(engine, "ada@example.org", ("ai",), "daily", NOW)
    [ada] = state.list_subscribers(engine)
    assert ada.status == state.ACTIVE and ada.active
    later = NOW + timedelta(hours=1)
    assert state.set_status(engine, ada.id, state.BOUNCED, source="bounce", now=later, reason="550 5.1.1 no such user")
    # Leaving again changes nothing: the first reason stands.
    assert not state.unsubscribe(engine, ada.id, later + timedelta(hours=1), source="mailto")
    # Signing up again (an import, the operator's add) changes topics, never the status.
    assert not state.add_subscriber(engine, "ada@example.org", ("ai", "robots"), "weekly", later, source="import")
    [ada] = state.list_subscribers(engine)
    assert (ada.status, ada.status_reason, ada.topics) == (state.BOUNCED, "550 5.1.1 no such user", ("ai", "robots"))
    assert state.list_subscribers(engine, active_only=True) == []
    # Only an explicit change back to active brings them back, and it is kept too.
    assert state.set_status(engine, ada.id, state.ACTIVE, source="operator", now=later + timedelta(hours=2),
                            reason="reactivated by the operator")
    assert [(c.status, c.source, c.reason) for c in state.status_history(engine, ada.id)] == [
        (state.ACTIVE, "operator", "subscribed"),
        (state.BOUNCED, "bounce", "550 5.1.1 no such user"),
        (state.ACTIVE, "operator", "reactivated by the operator"),
    ]
    assert [c.at for c in state.status_history(engine, ada.id)] == [NOW, later, later + timedelta(hours=2)]
    with pytest.raises(ValueError):
        state.set_status(engine, ada.id, "gone fishing", source="operator", now=NOW)


def test_statuses_and_their_history(tmp_path: Path) -> None:
    check_statuses_and_history(state.open_state(f"sqlite:///{tmp_path / 'feeds.db'}"))


def test_a_database_from_before_statuses_keeps_who_left(tmp_path: Path) -> None:
    path = tmp_path / "feeds.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE subscribers (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL UNIQUE, topics TEXT NOT NULL,
            cadence VARCHAR(16) NOT NULL, created_at DATETIME NOT NULL, unsubscribed_at DATETIME);
        INSERT INTO subscribers VALUES (1, 'stays@example.org', 'ai', 'daily', '2020-06-01 00:00:00', NULL);
        INSERT INTO subscribers VALUES (2, 'left@example.org', 'ai', 'daily', '2020-06-01 00:00:00',
                                        '2020-06-10 00:00:00');
    """)
    old.close()
    engine = state.open_state(f"sqlite:///{path}")
    statuses = {p.email: p.status for p in state.list_subscribers(engine)}
    assert statuses == {"stays@example.org": state.ACTIVE, "left@example.org": state.UNSUBSCRIBED}
    assert [p.email for p in state.list_subscribers(engine, active_only=True)] == ["stays@example.org"]
    state.open_state(f"sqlite:///{path}")  # and opening it again changes nothing
    with sa.create_engine(f"sqlite:///{path}").connect() as db:
        assert db.execute(sa.text("SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'")).scalar() == 1


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """The daemon starting while an operator adds a subscriber: both create the tables.
    Threads stand in for the processes; a barrier lines them up, and several rounds make
    the race (which lost every round before the fix) certain to be run."""
    import threading

    failures: list[str] = []
    for round_ in range(10):
        url = f"sqlite:///{tmp_path / f'state-{round_}.db'}"
        barrier = threading.Barrier(6)

        def open_it(url: str = url, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                state.open_state(url)
            except state.StateError as e:
                failures.append(str(e))

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://feeds:hunter2@db.example/feeds",
    "postgresql+psycopg://feeds@db.example/feeds?password=hunter2",
    "postgresql+psycopg://feeds@db.example/feeds?sslmode=require&password=hunter2&connect_timeout=5",
])
def test_a_state_url_in_messages_never_shows_its_password(url: str) -> None:
    """libpq (and psycopg) take the password in the query too; messages name the database
    by this URL, so it must hide both."""
    shown = state.safe_url(url)
    assert "hunter2" not in shown and "***" in shown and "db.example/feeds" in shown


def test_a_pause_ending_never_brings_back_someone_who_left_while_it_looked(tmp_path: Path) -> None:
    """end_pauses reads who is due, then makes each active: someone who unsubscribes in
    between (a one-click in the server while the digest job runs) must stay unsubscribed."""
    engine = state.open_state(f"sqlite:///{tmp_path / 'state.db'}")
    now = datetime(2020, 6, 18, 9, 0, tzinfo=UTC)
    state.add_subscriber(engine, "ada@example.org", ["ai"], "daily", now)
    ada = state.find_subscriber(engine, "ada@example.org")
    assert ada is not None and state.pause(engine, ada.id, now.date() + timedelta(days=2), now=now)
    left: list[bool] = []

    @sa.event.listens_for(engine, "after_cursor_execute")
    def leave_meanwhile(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "paused_until <=" in statement and not left:  # the read of who is due: they leave just after it
            left.append(state.unsubscribe(engine, ada.id, now + timedelta(days=2), source="one-click"))

    assert state.end_pauses(engine, now.date() + timedelta(days=2), now + timedelta(days=2, minutes=1)) == []
    assert left == [True]
    after = state.get_subscriber(engine, ada.id)
    assert after is not None and after.status == state.UNSUBSCRIBED
