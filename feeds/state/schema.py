"""The state database's tables, the values their status columns take, and opening it:
connecting, creating the tables and bringing an older database's columns up to date."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from feeds.errors import StateError

metadata = sa.MetaData()

subscribers = sa.Table(
    "subscribers", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("topics", sa.Text, nullable=False),  # slugs joined by ","
    sa.Column("cadence", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("unsubscribed_at", sa.DateTime(timezone=True)),  # when they stopped being active
    # One of STATUSES; only "active" subscribers are mailed. The reason is the last
    # change's, for `subscribers list` ("550 5.1.1 no such user", "one-click").
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("status_reason", sa.Text),
    sa.Column("paused_until", sa.Date),  # status "paused": mailed again from this edition day on
)

# Every change of a subscriber's status, with its time and source: who left, when and how
# is what an operator (and the person) may ask, and what "never mail again" rests on.
subscriber_events = sa.Table(
    "subscriber_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),  # one of SOURCES
    sa.Column("reason", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# A reader's own sign-up (issue 14): when their wait for confirmation began (the first
# request since; the purge counts from it), when a confirmation was last mailed (at most
# one per signup.resend_after_hours, whoever asks how often) and when they confirmed.
# One row per subscriber; no IP address or browser detail is kept.
signups = sa.Table(
    "signups", metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),  # the first of this wait
    sa.Column("mailed_at", sa.DateTime(timezone=True)),  # the latest confirmation mailed
    sa.Column("confirmed_at", sa.DateTime(timezone=True)),
)

# The ledger. Its primary key is the claim: a sender inserts (subscriber, edition) as
# "claimed" before composing the message, so two senders at once split the work instead of
# both sending. A claim expires (claim_expires) so that a killed sender's is taken over.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("edition", sa.String(64), primary_key=True),  # e.g. "daily-2020-06-18"
    sa.Column("message_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # one of DELIVERY_STATUSES
    sa.Column("detail", sa.Text),  # the server's last reply, or why it failed
    sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    # Added with claims and retries (see _add_ledger_columns for older databases).
    sa.Column("period_start", sa.DateTime(timezone=True)),  # a retry sends the same period
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("first_attempt_at", sa.DateTime(timezone=True)),  # retries stop retry_for_hours after it
    sa.Column("claimed_by", sa.String(128)),  # host/pid/run/pid-space of the sender holding the claim
    sa.Column("claim_expires", sa.DateTime(timezone=True)),
)

editions = sa.Table(
    "editions", metadata,
    sa.Column("path", sa.String(255), primary_key=True),  # under out/, e.g. newsletter/2020-06-18/ai/
    sa.Column("date", sa.String(10), nullable=False),
    sa.Column("topics", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
)

settings = sa.Table(
    "settings", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),  # host and pid, for messages
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

job_runs = sa.Table(
    "job_runs", metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # ok | error | missed
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("scheduled_for", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
)

# The ledger's statuses for one (subscriber, edition).
CLAIMED = "claimed"  # a sender is composing or sending it now
SENT = "sent"  # the server accepted it
DEFERRED = "deferred"  # refused for now (4xx), interrupted or crashed: a later run retries it
FAILED = "failed"  # refused for good (5xx), unsendable, or deferred past smtp.retry_for_hours
DELIVERY_STATUSES = (CLAIMED, SENT, DEFERRED, FAILED)


ACTIVE = "active"
UNSUBSCRIBED = "unsubscribed"  # they asked to leave (one-click, mailto, the operator)
BOUNCED = "bounced"  # the receiving server refused the address for good (5xx, a DSN)
COMPLAINED = "complained"  # they reported a digest as spam (an ARF report)
UNCONFIRMED = "unconfirmed"  # signed up on the web, not yet confirmed: never mailed a digest
PAUSED = "paused"  # they asked for no digest until paused_until (the preferences page)
ERASED = "erased"  # erased while subscribed: address replaced by a keyed hash, never mailed
ERASED_PREFIX = "erased:"  # how an erased row's address column begins (feeds.api.subscribers.erased_key)
STATUSES = (ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED, UNCONFIRMED, PAUSED, ERASED)
LEFT = frozenset({UNSUBSCRIBED, BOUNCED, COMPLAINED})  # never mailed again without an operator's say
# Where a status change came from, kept in subscriber_events.
SOURCES = ("operator", "import", "one-click", "mailto", "complaint", "bounce", "sign-up", "confirmed",
           "preferences", "pause-ended", "erase")


def open_state(url: str) -> Engine:
    """Connect to the state database and create its tables if they are missing."""
    try:
        engine = sa.create_engine(url, future=True)
        if engine.dialect.name == "sqlite":
            # Concurrent readers (the server, a status command) while a digest is sending.
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        _create_tables(engine)
        _add_status_columns(engine)
        _add_columns(engine, "subscribers", _SUBSCRIBER_COLUMNS)
        _add_columns(engine, "deliveries", _LEDGER_COLUMNS)
    except (sa.exc.SQLAlchemyError, ValueError) as e:
        raise StateError(f"state database {safe_url(url)}: {e.__class__.__name__}: {_first_line(e)}",
                         safe_url(url)) from e
    return engine


def _create_tables(engine: Engine) -> None:
    """create_all looks, then creates: two processes opening a new database at once (the
    daemon starting and a `subscribers add`) may both decide to create a table, and the
    second one's CREATE fails. Then the table exists, so looking again settles it."""
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            return
        except sa.exc.DBAPIError:
            if attempt == 4:
                raise


def _add_status_columns(engine: Engine) -> None:
    """Databases made before subscribers had a status: add the columns, and call everyone
    who had unsubscribed by then unsubscribed (create_all adds tables, never columns)."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns("subscribers")}
    if "status" in columns:
        return
    with transaction(engine) as db:
        db.execute(sa.text("ALTER TABLE subscribers ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'active'"))
        db.execute(sa.text("ALTER TABLE subscribers ADD COLUMN status_reason TEXT"))
        db.execute(subscribers.update().where(subscribers.c.unsubscribed_at.is_not(None))
                   .values(status=UNSUBSCRIBED, status_reason="before statuses were kept"))


# Columns the ledger gained with claims and retries, as SQL both SQLite and PostgreSQL take.
_LEDGER_COLUMNS = {
    "period_start": "TIMESTAMP WITH TIME ZONE",
    "attempts": "INTEGER NOT NULL DEFAULT 1",
    "first_attempt_at": "TIMESTAMP WITH TIME ZONE",
    "claimed_by": "VARCHAR(128)",
    "claim_expires": "TIMESTAMP WITH TIME ZONE",
}


# Columns subscribers gained later, all nullable: older rows need none of them.
_SUBSCRIBER_COLUMNS = {
    "paused_until": "DATE",
}


def _add_columns(engine: Engine, table: str, wanted: dict[str, str]) -> None:
    """Tables made before some of their columns: add them (create_all never adds columns).
    Ledger rows made before claims and retries are sent or failed, which need none of them."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns(table)}
    for name, kind in wanted.items():
        if name in columns:
            continue
        try:
            with transaction(engine) as db:
                db.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))
        except sa.exc.DBAPIError:
            # Another process opening the same database added it first.
            if name not in {c["name"] for c in sa.inspect(engine).get_columns(table)}:
                raise


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL survives a killed process (what the ledger must survive) without an
    # fsync per committed delivery; only a power cut may lose the last few commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted and overwritten content is zeroed, not left in free pages: an erased address
    # must not stay in the file. (Debian's SQLite does this by default; not every build does.)
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def drop_old_pages(engine: Engine) -> None:
    """After an erase: on SQLite, fold the write-ahead log into the database and empty it,
    so the pages from before (the address in clear) are gone from ``state.db-wal`` too.
    Without it they stay there while any process (``feeds serve``) keeps the database
    open. Best effort: a reader in the middle of a transaction leaves part for the next
    checkpoint. Other databases: nothing to do here (PostgreSQL's VACUUM reclaims)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as db:
            db.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as connection:
        yield connection


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; everything stored is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def safe_url(url: str) -> str:
    """The URL without its password, for messages: the user part's, and libpq's
    ``?password=`` (which psycopg takes as well)."""
    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        return re.sub(r"([?&]password=)[^&]*", r"\1***", shown)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable URL>"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""
