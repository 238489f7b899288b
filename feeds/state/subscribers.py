"""Subscribers: who gets which digest, their status (active, or how they left) and its history."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feeds.state.schema import (
    ACTIVE,
    ERASED,
    ERASED_PREFIX,
    LEFT,
    PAUSED,
    SOURCES,
    STATUSES,
    UNSUBSCRIBED,
    deliveries,
    job_runs,
    metadata,
    signups,
    subscriber_events,
    subscribers,
    transaction,
    utc,
)


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    topics: tuple[str, ...]
    cadence: str
    status: str = ACTIVE
    status_reason: str | None = None
    paused_until: date | None = None  # status "paused": mailed again from this edition day on

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
               reason: str | None = None, only_from: Collection[str] | None = None) -> bool:
    """Move a subscriber to ``status`` and keep the change in their history; True if it
    changed. Leaving wins over leaving: a bounced address that also unsubscribes stays
    bounced (the first reason is the one that matters); only ``active`` undoes a leaving,
    and callers make it so only on an operator's explicit say. ``only_from``: change only a
    subscriber whose status is one of these in this transaction (a caller that decided on
    a status it read earlier, such as a pause ending, must not act on a newer leaving)."""
    if status not in STATUSES or source not in SOURCES:
        raise ValueError(f"status {status!r} from {source!r}")
    with transaction(engine) as db:
        row = db.execute(sa.select(subscribers.c.status, subscribers.c.email)
                         .where(subscribers.c.id == subscriber_id)).first()
        if row is None or row.status == status or (status in LEFT and row.status in LEFT):
            return False
        if only_from is not None and row.status not in only_from:
            return False
        if row.email.startswith(ERASED_PREFIX):
            reason = None  # erased: no reason is kept (a late bounce's reply quotes the address)
        db.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(
            status=status, status_reason=reason, unsubscribed_at=None if status == ACTIVE else now,
            paused_until=None))
        db.execute(subscriber_events.insert().values(subscriber_id=subscriber_id, status=status, source=source,
                                                     reason=reason, at=now))
        return True


def update_choices(engine: Engine, subscriber_id: int, topics: Sequence[str], cadence: str) -> bool:
    """Set a subscriber's topics and cadence, whatever their status; True if they changed."""
    values = {"topics": ",".join(topics), "cadence": cadence}
    with transaction(engine) as db:
        changed = db.execute(subscribers.update().where(subscribers.c.id == subscriber_id).where(
            sa.or_(subscribers.c.topics != values["topics"], subscribers.c.cadence != cadence)).values(**values))
        return bool(changed.rowcount)


def pause(engine: Engine, subscriber_id: int, until: date, *, now: datetime, source: str = "preferences") -> bool:
    """Pause an active (or paused) subscriber until the edition day ``until``, kept in their
    history; True if it changed. Someone who left is not paused: that would be a way back
    to being mailed that skips resubscribing."""
    reason = f"until {until.isoformat()}"
    with transaction(engine) as db:
        row = db.execute(sa.select(subscribers.c.status, subscribers.c.paused_until)
                         .where(subscribers.c.id == subscriber_id)).first()
        if row is None or row.status not in (ACTIVE, PAUSED) or (row.status, row.paused_until) == (PAUSED, until):
            return False
        db.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(
            status=PAUSED, status_reason=reason, paused_until=until, unsubscribed_at=now))
        db.execute(subscriber_events.insert().values(subscriber_id=subscriber_id, status=PAUSED, source=source,
                                                     reason=reason, at=now))
        return True


def end_pauses(engine: Engine, day: date, now: datetime) -> list[Subscriber]:
    """Make active again everyone paused until ``day`` or earlier, each with a history
    event; returns them as they were (their ``paused_until`` says since when)."""
    with engine.connect() as db:
        due = [_subscriber(row) for row in db.execute(
            sa.select(subscribers).where(subscribers.c.status == PAUSED)
            .where(subscribers.c.paused_until <= day).order_by(subscribers.c.id))]
    ended = []
    for person in due:
        until = person.paused_until.isoformat() if person.paused_until else "?"
        if set_status(engine, person.id, ACTIVE, source="pause-ended", now=now, reason=f"paused until {until}",
                      only_from=(PAUSED,)):
            ended.append(person)
    return ended


def held_about(engine: Engine, subscriber_id: int, email: str) -> dict[str, list[dict[str, Any]]]:
    """Every row any table holds about one person, by table name: rows keyed by their
    ``subscriber_id``, and rows of any other table with an ``email`` column naming their
    address. Found by the tables' columns, so a table added later is included unasked."""
    held: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as db:
        for table in metadata.sorted_tables:
            where = _rows_about(table, subscriber_id, email)
            if where is None:
                continue
            order = list(table.primary_key.columns) or list(table.columns)[:1]
            held[table.name] = [{k: _plain(v) for k, v in row._mapping.items()}
                                for row in db.execute(sa.select(table).where(where).order_by(*order))]
    return held


def erase_subscriber(engine: Engine, subscriber_id: int, email: str, key: str, now: datetime, *,
                     only_from: Collection[str] | None = None) -> None:
    """Forget a person but for what "never mail again" and exactly-once delivery need.

    Their row stays under the same id with the address replaced by ``key`` (a keyed hash
    of it, see :func:`feeds.api.subscribers.erased_key`), their topics and every reason
    (replies quote addresses) blanked. Someone who had left keeps that status, so the same
    address added again is recognised and stays suppressed; anyone else becomes ``erased``.
    Their history keeps its statuses, sources and times; their ledger rows keep editions,
    Message-IDs and statuses (so an edition already sent is never sent again) without the
    server's replies. Rows of any other table about them are deleted, and their address
    blanked out of text that names others too (a digest job's summary of failures).
    ``only_from``: erase only a subscriber whose status is one of these when the
    transaction runs (the purge must not erase someone who confirmed since it looked)."""
    with transaction(engine) as db:
        row = db.execute(sa.select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).first()
        if row is None or (only_from is not None and row.status not in only_from):
            return
        status = row.status if row.status in LEFT else ERASED
        # Every optional column is blanked, not only those known here: a column added
        # later (sign-up's, say) is personal until shown otherwise.
        blanked = {c.name: None for c in subscribers.c if c.nullable and c.name not in _KEPT_COLUMNS}
        db.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(
            **blanked, email=key, topics="", status=status,
            unsubscribed_at=now if status == ERASED else subscribers.c.unsubscribed_at))
        db.execute(subscriber_events.update().where(subscriber_events.c.subscriber_id == subscriber_id)
                   .values(reason=None))
        db.execute(subscriber_events.insert().values(subscriber_id=subscriber_id, status=status, source="erase",
                                                     reason=None, at=now))
        db.execute(deliveries.update().where(deliveries.c.subscriber_id == subscriber_id).values(detail=None))
        for table in metadata.sorted_tables:
            where = _rows_about(table, subscriber_id, email)
            if where is None or table.name in _KEPT_ON_ERASE:
                continue
            if table.name in _MENTIONS:
                column = table.c[_MENTIONS[table.name]]
                db.execute(table.update().where(where).values({column: sa.func.replace(column, email, ERASED_MENTION)}))
            else:
                db.execute(table.delete().where(where))


# Kept by erase_subscriber on the person's row: when they came and left, nothing about who.
_KEPT_COLUMNS = frozenset({"created_at", "unsubscribed_at"})
# Kept (scrubbed) by erase_subscriber: the person's row, history and ledger.
_KEPT_ON_ERASE = frozenset({subscribers.name, subscriber_events.name, deliveries.name})
# Text that may name an address among others' (a digest job's failures): the address is
# blanked out there, the rows kept.
_MENTIONS = {job_runs.name: "summary"}
ERASED_MENTION = "[erased address]"


def restore_erased(engine: Engine, subscriber_id: int, email: str, topics: Sequence[str], cadence: str,
                   now: datetime, *, source: str) -> None:
    """Give an erased row its address back, subscribed and active: the same id, so its
    ledger still says which editions they were sent. Only on a subscribing act (see
    :func:`feeds.api.subscribers.subscribe`)."""
    with transaction(engine) as db:
        db.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(
            email=email, topics=",".join(topics), cadence=cadence, status=ACTIVE, status_reason=None,
            unsubscribed_at=None, paused_until=None))
        db.execute(subscriber_events.insert().values(subscriber_id=subscriber_id, status=ACTIVE, source=source,
                                                     reason="subscribed again after being erased", at=now))


def _rows_about(table: sa.Table, subscriber_id: int, email: str) -> sa.ColumnElement[bool] | None:
    if table.name == subscribers.name:
        return subscribers.c.id == subscriber_id
    if table.name in _MENTIONS:
        return table.c[_MENTIONS[table.name]].contains(email, autoescape=True)
    if "subscriber_id" in table.c:
        return table.c.subscriber_id == subscriber_id
    if "email" in table.c:
        return table.c.email == email
    return None


def _plain(value: object) -> object:
    """A column's value as JSON has it: times in UTC ISO 8601, dates ISO 8601."""
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


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
        db.execute(signups.delete().where(signups.c.subscriber_id == row.id))
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


def subscriber_status(engine: Engine, subscriber_id: int) -> str | None:
    """A subscriber's status now (None: removed): the one column a run re-checks per message."""
    with engine.connect() as db:
        return db.execute(sa.select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).scalar()


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


def subscribers_by_id(engine: Engine, ids: Sequence[int]) -> list[Subscriber]:
    """The subscribers of ``ids`` that still exist, whatever their status, by id: a
    worker's batch (the sending run re-checks each status before mailing)."""
    with engine.connect() as db:
        rows = db.execute(sa.select(subscribers).where(subscribers.c.id.in_(tuple(ids))).order_by(subscribers.c.id))
        return [_subscriber(row) for row in rows]


def _subscriber(row: sa.Row) -> Subscriber:  # type: ignore[type-arg]
    return Subscriber(
        id=row.id, email=row.email, topics=tuple(t for t in row.topics.split(",") if t),
        cadence=row.cadence, status=row.status, status_reason=row.status_reason,
        paused_until=row.paused_until,
    )
