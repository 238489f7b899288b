"""The state database: subscribers, the delivery ledger, editions and settings.

SQLAlchemy Core, so the same code runs on the default SQLite file and on PostgreSQL (any
SQLAlchemy URL in ``state_db``). The ledger is the source of truth for what was sent: a
(subscriber, edition) is claimed before its message is sent and marked sent only after the
SMTP server accepted it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from feeds.errors import FeedsError
from feeds.model import ArchivedEdition

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
    sa.Column("claimed_by", sa.String(128)),  # host/pid/run of the sender holding the claim
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

class StateError(FeedsError):
    """The state database cannot be opened or used."""


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
STATUSES = (ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED)
LEFT = frozenset({UNSUBSCRIBED, BOUNCED, COMPLAINED})  # never mailed again without an operator's say
# Where a status change came from, kept in subscriber_events.
SOURCES = ("operator", "import", "one-click", "mailto", "complaint", "bounce")


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    topics: tuple[str, ...]
    cadence: str
    status: str = ACTIVE
    status_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One row of a subscriber's history."""

    status: str
    source: str
    reason: str | None
    at: datetime


def open_state(url: str) -> Engine:
    """Connect to the state database and create its tables if they are missing."""
    try:
        engine = sa.create_engine(url, future=True)
        if engine.dialect.name == "sqlite":
            # Concurrent readers (the server, a status command) while a digest is sending.
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        metadata.create_all(engine)
        _add_status_columns(engine)
        _add_ledger_columns(engine)
    except (sa.exc.SQLAlchemyError, ValueError) as e:
        raise StateError(f"state database {safe_url(url)}: {e.__class__.__name__}: {_first_line(e)}") from e
    return engine


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


def _add_ledger_columns(engine: Engine) -> None:
    """Ledgers made before claims and retries: add the columns (create_all never adds
    columns). Their rows are sent or failed, which need none of them."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns("deliveries")}
    for name, kind in _LEDGER_COLUMNS.items():
        if name in columns:
            continue
        try:
            with transaction(engine) as db:
                db.execute(sa.text(f"ALTER TABLE deliveries ADD COLUMN {name} {kind}"))
        except sa.exc.DBAPIError:
            # Another process opening the same database added it first.
            if name not in {c["name"] for c in sa.inspect(engine).get_columns("deliveries")}:
                raise


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL survives a killed process (what the ledger must survive) without an
    # fsync per committed delivery; only a power cut may lose the last few commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as connection:
        yield connection


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; everything stored is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ------------------------------------------------------------------------ subscribers


def add_subscriber(engine: Engine, email: str, topics: Sequence[str], cadence: str, now: datetime,
                   *, source: str = "operator") -> bool:
    """Add or update a subscriber's topics and cadence; True when new. Their status is
    left as it is: someone who left stays gone (see :func:`set_status` to bring them back)."""
    values = {"topics": ",".join(topics), "cadence": cadence}
    with transaction(engine) as db:
        existing = db.execute(sa.select(subscribers.c.id).where(subscribers.c.email == email)).first()
        if existing:
            db.execute(subscribers.update().where(subscribers.c.id == existing.id).values(**values))
            return False
        inserted = db.execute(subscribers.insert().values(email=email, created_at=now, status=ACTIVE, **values))
        new_id = inserted.inserted_primary_key[0]  # type: ignore[index]  # one row, always a key
        db.execute(subscriber_events.insert().values(subscriber_id=new_id, status=ACTIVE, source=source,
                                                     reason="subscribed", at=now))
        return True


def set_status(engine: Engine, subscriber_id: int, status: str, *, source: str, now: datetime,
               reason: str | None = None) -> bool:
    """Move a subscriber to ``status`` and keep the change in their history; True if it
    changed. Leaving wins over leaving: a bounced address that also unsubscribes stays
    bounced (the first reason is the one that matters); only ``active`` undoes a leaving,
    and callers make it so only on an operator's explicit say."""
    if status not in STATUSES or source not in SOURCES:
        raise ValueError(f"status {status!r} from {source!r}")
    with transaction(engine) as db:
        row = db.execute(sa.select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).first()
        if row is None or row.status == status or (status in LEFT and row.status in LEFT):
            return False
        db.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(
            status=status, status_reason=reason, unsubscribed_at=None if status == ACTIVE else now))
        db.execute(subscriber_events.insert().values(subscriber_id=subscriber_id, status=status, source=source,
                                                     reason=reason, at=now))
        return True


def status_history(engine: Engine, subscriber_id: int) -> list[StatusChange]:
    """Every status change of a subscriber, oldest first."""
    with engine.connect() as db:
        rows = db.execute(sa.select(subscriber_events).where(subscriber_events.c.subscriber_id == subscriber_id)
                          .order_by(subscriber_events.c.at, subscriber_events.c.id))
        return [StatusChange(row.status, row.source, row.reason, utc(row.at)) for row in rows]  # type: ignore[arg-type]


def remove_subscriber(engine: Engine, email: str) -> bool:
    """Delete a subscriber, their ledger and history; True if there was one."""
    with transaction(engine) as db:
        row = db.execute(sa.select(subscribers.c.id).where(subscribers.c.email == email)).first()
        if row is None:
            return False
        db.execute(deliveries.delete().where(deliveries.c.subscriber_id == row.id))
        db.execute(subscriber_events.delete().where(subscriber_events.c.subscriber_id == row.id))
        db.execute(subscribers.delete().where(subscribers.c.id == row.id))
        return True


def unsubscribe(engine: Engine, subscriber_id: int, now: datetime, *, source: str = "one-click",
                reason: str | None = None) -> bool:
    """Mark a subscriber unsubscribed (kept, so a late click still finds them); True if
    they were active."""
    return set_status(engine, subscriber_id, UNSUBSCRIBED, source=source, now=now, reason=reason)


def get_subscriber(engine: Engine, subscriber_id: int) -> Subscriber | None:
    with engine.connect() as db:
        row = db.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _subscriber(row) if row else None


def find_subscriber(engine: Engine, email: str) -> Subscriber | None:
    """The subscriber with this (normalised) address, whatever their status."""
    with engine.connect() as db:
        row = db.execute(sa.select(subscribers).where(subscribers.c.email == email)).first()
    return _subscriber(row) if row else None


def list_subscribers(engine: Engine, *, active_only: bool = False) -> list[Subscriber]:
    query = sa.select(subscribers).order_by(subscribers.c.email)
    if active_only:
        query = query.where(subscribers.c.status == ACTIVE)
    with engine.connect() as db:
        return [_subscriber(row) for row in db.execute(query)]


def _subscriber(row: sa.Row) -> Subscriber:  # type: ignore[type-arg]
    return Subscriber(
        id=row.id, email=row.email, topics=tuple(t for t in row.topics.split(",") if t),
        cadence=row.cadence, status=row.status, status_reason=row.status_reason,
    )


# ----------------------------------------------------------------------------- ledger


def delivered_editions(engine: Engine, edition: str) -> dict[int, str]:
    """Subscriber id -> status, for everyone the ledger has for ``edition``."""
    with engine.connect() as db:
        rows = db.execute(sa.select(deliveries.c.subscriber_id, deliveries.c.status)
                          .where(deliveries.c.edition == edition))
        return {row.subscriber_id: row.status for row in rows}


def message_subscriber(engine: Engine, message_id: str) -> int | None:
    """The subscriber the ledger sent ``message_id`` to, if any: how a bounce or complaint
    quoting one of our messages finds its subscriber."""
    with engine.connect() as db:
        row = db.execute(sa.select(deliveries.c.subscriber_id).where(deliveries.c.message_id == message_id)
                         .limit(1)).first()
    return int(row.subscriber_id) if row else None


def last_period_ends(engine: Engine) -> dict[int, datetime]:
    """Subscriber id -> the end of the period their last delivered (sent) edition covered:
    an edition deferred or failed does not count, so its stories are still owed."""
    return {sid: ends.last_sent for sid, ends in ledger_ends(engine).items() if ends.last_sent}


@dataclass(frozen=True, slots=True)
class LedgerEnds:
    """Where a subscriber's ledger stands: the end of the last edition sent to them (the
    next period starts there) and of the last one made for them in any status (the
    cadence promise counts from it)."""

    last_sent: datetime | None
    last_made: datetime


def ledger_ends(engine: Engine) -> dict[int, LedgerEnds]:
    """Subscriber id -> :class:`LedgerEnds`, for everyone the ledger has."""
    sent_end = sa.case((deliveries.c.status == SENT, deliveries.c.period_end))
    with engine.connect() as db:
        rows = db.execute(
            sa.select(deliveries.c.subscriber_id, sa.func.max(sent_end).label("sent"),
                      sa.func.max(deliveries.c.period_end).label("made"))
            .group_by(deliveries.c.subscriber_id)
        )
        return {row.subscriber_id: LedgerEnds(utc(row.sent), utc(row.made)) for row in rows}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ledger row: a (subscriber, edition) and what became of it."""

    subscriber_id: int
    edition: str
    message_id: str
    status: str
    period_start: datetime | None
    period_end: datetime
    attempts: int
    first_attempt_at: datetime | None
    detail: str | None
    claimed_by: str | None
    claim_expires: datetime | None


def _delivery(row: sa.Row) -> Delivery:  # type: ignore[type-arg]
    return Delivery(
        subscriber_id=row.subscriber_id, edition=row.edition, message_id=row.message_id, status=row.status,
        period_start=utc(row.period_start), period_end=utc(row.period_end), attempts=row.attempts,  # type: ignore[arg-type]
        first_attempt_at=utc(row.first_attempt_at), detail=row.detail, claimed_by=row.claimed_by,
        claim_expires=utc(row.claim_expires),
    )


def open_deliveries(engine: Engine, editions: Sequence[str] = ()) -> list[Delivery]:
    """Every row still owed a message (deferred, or claimed by a sender that may have died),
    and every row of ``editions``; oldest period first."""
    wanted: sa.ColumnElement[bool] = deliveries.c.status.in_((DEFERRED, CLAIMED))
    if editions:
        wanted = sa.or_(wanted, deliveries.c.edition.in_(tuple(editions)))
    with engine.connect() as db:
        rows = db.execute(sa.select(deliveries).where(wanted)
                          .order_by(deliveries.c.period_end, deliveries.c.subscriber_id))
        return [_delivery(row) for row in rows]


def get_delivery(engine: Engine, subscriber_id: int, edition: str) -> Delivery | None:
    with engine.connect() as db:
        row = db.execute(sa.select(deliveries).where(deliveries.c.subscriber_id == subscriber_id,
                                                     deliveries.c.edition == edition)).first()
    return _delivery(row) if row else None


def claim_delivery(
    engine: Engine, *, subscriber_id: int, edition: str, message_id: str, period_start: datetime,
    period_end: datetime, holder: str, now: datetime, expires: datetime,
) -> Delivery | None:
    """Claim a new (subscriber, edition) for ``holder``: None when the claim is ours, else
    the row someone already has (sent, failed, deferred, or claimed by another sender).

    The insert is the claim: the primary key lets exactly one of several senders have it,
    on SQLite and PostgreSQL alike."""
    try:
        with transaction(engine) as db:
            db.execute(_CLAIM, {
                "subscriber_id": subscriber_id, "edition": edition, "message_id": message_id, "status": CLAIMED,
                "period_start": period_start, "period_end": period_end, "recorded_at": now, "attempts": 1,
                "first_attempt_at": now, "claimed_by": holder, "claim_expires": expires,
            })
        return None
    except sa.exc.IntegrityError:
        existing = get_delivery(engine, subscriber_id, edition)
        if existing is None:  # the other claim vanished (its subscriber was removed): let it be
            raise StateError(f"ledger: the claim on {edition} for subscriber {subscriber_id} vanished") from None
        return existing


def take_over_delivery(engine: Engine, row: Delivery, *, holder: str, expires: datetime) -> bool:
    """Claim a deferred row, or one whose sender died, for another attempt; True if ours.
    Only the row as ``row`` saw it is taken, so of two senders trying, one wins."""
    with transaction(engine) as db:
        taken = db.execute(
            deliveries.update()
            .where(deliveries.c.subscriber_id == row.subscriber_id, deliveries.c.edition == row.edition,
                   deliveries.c.status == row.status, deliveries.c.attempts == row.attempts)
            .values(status=CLAIMED, claimed_by=holder, claim_expires=expires, attempts=row.attempts + 1)
        )
        return bool(taken.rowcount)


def finish_delivery(engine: Engine, *, subscriber_id: int, edition: str, holder: str, status: str,
                    now: datetime, detail: str | None = None) -> bool:
    """Record what became of our claim (sent, deferred or failed) and release it; False if
    the claim was no longer ours (it expired and another sender took it)."""
    if status not in (SENT, DEFERRED, FAILED):
        raise ValueError(f"finish a delivery as {status!r}")
    with transaction(engine) as db:
        done = db.execute(_FINISH, {"key_subscriber": subscriber_id, "key_edition": edition, "key_holder": holder,
                                    "new_status": status, "new_detail": detail, "new_at": now})
        return bool(done.rowcount)


# Claiming and finishing happen once per message: statements built once and given their
# values as parameters cost a fifth of one built per call (SQLAlchemy's cache key and
# compile), which keeps the ledger's share of a digest run small.
_CLAIM = deliveries.insert()
_FINISH = (
    deliveries.update()
    .where(deliveries.c.subscriber_id == sa.bindparam("key_subscriber"),
           deliveries.c.edition == sa.bindparam("key_edition"),
           deliveries.c.claimed_by == sa.bindparam("key_holder"), deliveries.c.status == CLAIMED)
    .values(status=sa.bindparam("new_status"), detail=sa.bindparam("new_detail"),
            recorded_at=sa.bindparam("new_at"), claimed_by=None, claim_expires=None)
)


def fail_delivery(engine: Engine, row: Delivery, *, now: datetime, reason: str) -> bool:
    """Give up on a row as ``row`` saw it (deferred too long); False if it changed since."""
    with transaction(engine) as db:
        done = db.execute(
            deliveries.update()
            .where(deliveries.c.subscriber_id == row.subscriber_id, deliveries.c.edition == row.edition,
                   deliveries.c.status == row.status, deliveries.c.attempts == row.attempts)
            .values(status=FAILED, detail=reason, recorded_at=now, claimed_by=None, claim_expires=None)
        )
        return bool(done.rowcount)


def record_delivery(
    engine: Engine, *, subscriber_id: int, edition: str, message_id: str, status: str,
    period_end: datetime, now: datetime, detail: str | None = None,
) -> None:
    """Write one finished (subscriber, edition) straight into the ledger, without a claim
    (for imports and tests; a digest run claims, then finishes)."""
    with transaction(engine) as db:
        # No row exists yet: a run skips (subscriber, edition) pairs the ledger already has.
        db.execute(deliveries.insert().values(
            subscriber_id=subscriber_id, edition=edition, message_id=message_id, status=status,
            detail=detail, period_end=period_end, recorded_at=now,
        ))


# --------------------------------------------------------------------------- editions


def record_edition(engine: Engine, edition: ArchivedEdition) -> None:
    """Keep (or replace) an edition's web copy in the archive. Two digest runs at once make
    the same editions: the one whose insert collides tries again, replacing the other's."""
    for attempt in range(2):
        try:
            with transaction(engine) as db:
                db.execute(editions.delete().where(editions.c.path == edition.path))
                db.execute(editions.insert().values(
                    path=edition.path, date=edition.date, topics=",".join(edition.topics),
                    subject=edition.subject, summary=edition.summary, period_end=edition.period_end,
                ))
            return
        except sa.exc.IntegrityError:
            if attempt:
                raise


def list_editions(engine: Engine) -> list[ArchivedEdition]:
    """Every edition's web copy, newest first."""
    with engine.connect() as db:
        rows = db.execute(sa.select(editions).order_by(editions.c.period_end.desc(), editions.c.path))
        return [
            ArchivedEdition(row.path, row.date, tuple(t for t in row.topics.split(",") if t), row.subject,
                       row.summary, utc(row.period_end))  # type: ignore[arg-type]
            for row in rows
        ]


# --------------------------------------------------------------------------- settings


def secret(engine: Engine) -> str:
    """The secret that signs unsubscribe tokens when the config and environment give none:
    made once, at random, and kept in the database so tokens stay valid across runs."""
    try:
        with transaction(engine) as db:
            row = db.execute(sa.select(settings.c.value).where(settings.c.name == "secret")).first()
            if row:
                return str(row.value)
            value = secrets.token_urlsafe(32)
            db.execute(settings.insert().values(name="secret", value=value))
            return value
    except (sa.exc.IntegrityError, sa.exc.OperationalError):
        # Another process made it first (on SQLite a write after a stale read is refused
        # as "locked"): theirs is the one.
        with engine.connect() as db:
            made = db.execute(sa.select(settings.c.value).where(settings.c.name == "secret")).first()
        if made is None:
            raise
        return str(made.value)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable URL>"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""


# ----------------------------------------------------------------------------- leases


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    description: str
    expires_at: datetime


def acquire_lease(engine: Engine, name: str, holder: str, description: str, *, now: datetime,
                  ttl: timedelta) -> Lease | None:
    """Claim ``name`` for ``holder`` until ``now + ttl``. Returns None on success, or the
    lease someone else holds. Only an expired lease (its daemon died) is taken over."""
    expires = now + ttl
    with transaction(engine) as db:
        row = db.execute(sa.select(leases).where(leases.c.name == name)).first()
        if row is None:
            try:
                with db.begin_nested():
                    db.execute(leases.insert().values(name=name, holder=holder, description=description,
                                                      expires_at=expires))
                return None
            except sa.exc.IntegrityError:
                row = db.execute(sa.select(leases).where(leases.c.name == name)).first()
                assert row is not None
        current = Lease(row.holder, row.description, utc(row.expires_at))  # type: ignore[arg-type]
        if current.holder != holder and current.expires_at > now:
            return current
        # Ours, or expired: take it, unless someone else took it since we looked.
        taken = db.execute(
            leases.update()
            .where(leases.c.name == name, leases.c.holder == row.holder, leases.c.expires_at == row.expires_at)
            .values(holder=holder, description=description, expires_at=expires)
        )
        return None if taken.rowcount else current


def renew_lease(engine: Engine, name: str, holder: str, *, now: datetime, ttl: timedelta) -> bool:
    """Extend our lease; False if it is no longer ours."""
    with transaction(engine) as db:
        result = db.execute(leases.update().where(leases.c.name == name, leases.c.holder == holder)
                            .values(expires_at=now + ttl))
        return bool(result.rowcount)


def release_lease(engine: Engine, name: str, holder: str) -> None:
    with transaction(engine) as db:
        db.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))


def current_lease(engine: Engine, name: str) -> Lease | None:
    with engine.connect() as db:
        row = db.execute(sa.select(leases).where(leases.c.name == name)).first()
    return Lease(row.holder, row.description, utc(row.expires_at)) if row else None  # type: ignore[arg-type]


# --------------------------------------------------------------------------- job runs


@dataclass(frozen=True, slots=True)
class JobRun:
    job_id: str
    status: str
    summary: str
    scheduled_for: datetime | None
    finished_at: datetime


def record_job_run(engine: Engine, run: JobRun) -> None:
    """Keep the last result of each job, for ``feeds status``."""
    with transaction(engine) as db:
        db.execute(job_runs.delete().where(job_runs.c.job_id == run.job_id))
        db.execute(job_runs.insert().values(
            job_id=run.job_id, status=run.status, summary=run.summary[:2000],
            scheduled_for=run.scheduled_for, finished_at=run.finished_at))


def last_job_runs(engine: Engine) -> dict[str, JobRun]:
    with engine.connect() as db:
        rows = db.execute(sa.select(job_runs))
        return {row.job_id: JobRun(row.job_id, row.status, row.summary, utc(row.scheduled_for),
                                   utc(row.finished_at)) for row in rows}  # type: ignore[arg-type]
