"""Subscribers: who gets which digest, their status (active, or how they left) and its history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feeds.state.schema import (
    ACTIVE,
    LEFT,
    SOURCES,
    STATUSES,
    UNSUBSCRIBED,
    deliveries,
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
    )
