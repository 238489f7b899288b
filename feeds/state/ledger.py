"""The delivery ledger, the source of truth for what was sent: a (subscriber, edition) is
claimed before its message is sent and marked sent only after the SMTP server accepted it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feeds.errors import StateError
from feeds.state.schema import CLAIMED, DEFERRED, FAILED, SENT, deliveries, transaction, utc


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


def ledger_ends(engine: Engine, subscribers: Collection[int] | None = None) -> dict[int, LedgerEnds]:
    """Subscriber id -> :class:`LedgerEnds`, for everyone the ledger has (or those of
    ``subscribers``: a worker's batch needs its own, not a million rows)."""
    sent_end = sa.case((deliveries.c.status == SENT, deliveries.c.period_end))
    query = (sa.select(deliveries.c.subscriber_id, sa.func.max(sent_end).label("sent"),
                       sa.func.max(deliveries.c.period_end).label("made"))
             .group_by(deliveries.c.subscriber_id))
    if subscribers is not None:
        query = query.where(deliveries.c.subscriber_id.in_(tuple(subscribers)))
    with engine.connect() as db:
        rows = db.execute(query)
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


def open_deliveries(engine: Engine, editions: Sequence[str] = (),
                    subscribers: Collection[int] | None = None) -> list[Delivery]:
    """Every row still owed a message (deferred, or claimed by a sender that may have died),
    and every row of ``editions``; oldest period first. Only those of ``subscribers``, if given."""
    wanted: sa.ColumnElement[bool] = deliveries.c.status.in_((DEFERRED, CLAIMED))
    if editions:
        wanted = sa.or_(wanted, deliveries.c.edition.in_(tuple(editions)))
    if subscribers is not None:
        wanted = sa.and_(wanted, deliveries.c.subscriber_id.in_(tuple(subscribers)))
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
            raise StateError(f"ledger: the claim on {edition} for subscriber {subscriber_id} vanished",
                             engine.url.render_as_string(hide_password=True)) from None
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


@dataclass(frozen=True, slots=True)
class EditionProgress:
    """How far one edition has gone: its ledger rows by status (claimed, sent, deferred,
    failed), for ``feeds status``."""

    edition: str
    counts: dict[str, int]


def edition_progress(engine: Engine, *, limit: int = 5) -> list[EditionProgress]:
    """The ``limit`` latest editions (by the end of their period), newest first."""
    latest = (sa.select(deliveries.c.edition, sa.func.max(deliveries.c.period_end).label("end"))
              .group_by(deliveries.c.edition).order_by(sa.desc("end"), deliveries.c.edition).limit(limit)).subquery()
    with engine.connect() as db:
        rows = db.execute(
            sa.select(deliveries.c.edition, deliveries.c.status, sa.func.count().label("n"), latest.c.end)
            .join(latest, latest.c.edition == deliveries.c.edition)
            .group_by(deliveries.c.edition, deliveries.c.status, latest.c.end)
        ).all()
    found: dict[str, tuple[object, dict[str, int]]] = {}
    for row in rows:
        found.setdefault(row.edition, (row.end, {}))[1][row.status] = int(row.n)
    ordered = sorted(found.items(), key=lambda item: (str(item[1][0]), item[0]), reverse=True)
    return [EditionProgress(edition, counts) for edition, (_, counts) in ordered]
