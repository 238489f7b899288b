"""Readers' own sign-ups (issue 14): an unconfirmed subscriber per new address, when a
confirmation was last mailed, and when it was confirmed.

The rules that need the database's word, so that they hold across processes and
restarts: one subscriber per address however many requests race (the address is unique),
and at most one confirmation mail per address per period (a conditional UPDATE: of many
concurrent requests, one wins)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from feeds.state.schema import (
    ACTIVE,
    ERASED,
    ERASED_PREFIX,
    LEFT,
    UNCONFIRMED,
    UNSUBSCRIBED,
    deliveries,
    signups,
    subscriber_events,
    subscribers,
    transaction,
    utc,
)
from feeds.state.subscribers import Subscriber, _subscriber


@dataclass(frozen=True, slots=True)
class SignUpRecord:
    """What the sign-up of one subscriber left: all UTC; None for what has not happened."""

    subscriber_id: int
    requested_at: datetime
    mailed_at: datetime | None
    confirmed_at: datetime | None


def request_signup(engine: Engine, email: str, topics: Sequence[str], cadence: str, now: datetime,
                   wait: timedelta) -> Subscriber:
    """The subscriber with ``email``, made ``unconfirmed`` (with these topics and cadence,
    and a ``sign-up`` event) if the address is new; an existing one is left as they are,
    whatever their status: what they asked for takes effect only when they confirm.

    ``requested_at`` keeps when the current wait for confirmation began (see
    :func:`_start_wait`), not the latest request: asking again never pushes the purge back."""
    for _ in range(2):  # a concurrent request may insert the same address first: then read theirs
        try:
            with transaction(engine) as db:
                row = db.execute(sa.select(subscribers).where(subscribers.c.email == email)).first()
                if row is None:
                    row = _insert_unconfirmed(db, email, topics, cadence, now)
                _start_wait(db, row.id, now, wait)
                return _subscriber(row)
        except sa.exc.IntegrityError:
            continue
    raise RuntimeError(f"could not record the sign-up of {email}")  # pragma: no cover - two lost races


def _insert_unconfirmed(db: Connection, email: str, topics: Sequence[str], cadence: str,
                        now: datetime) -> sa.Row:  # type: ignore[type-arg]
    inserted = db.execute(subscribers.insert().values(
        email=email, topics=",".join(topics), cadence=cadence, created_at=now, status=UNCONFIRMED,
        unsubscribed_at=now, status_reason="waiting for confirmation"))
    new_id = inserted.inserted_primary_key[0]  # type: ignore[index]  # one row, always a key
    db.execute(subscriber_events.insert().values(subscriber_id=new_id, status=UNCONFIRMED, source="sign-up",
                                                 reason="signed up on the web", at=now))
    row = db.execute(sa.select(subscribers).where(subscribers.c.id == new_id)).first()
    assert row is not None
    return row


def reclaim_erased(engine: Engine, subscriber_id: int, email: str, now: datetime) -> None:
    """An erased row whose address signs up again gets the address back, so that the
    sign-up goes on on the same row (its ledger still says which editions were sent).
    Erased while subscribed: they become ``unconfirmed``, like anyone new; erased after
    unsubscribing: still unsubscribed, back only by confirming. (Someone erased after a
    bounce or complaint is never reclaimed: see :func:`feeds.api.signup.sign_up`.)"""
    with transaction(engine) as db:
        row = db.execute(sa.select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).first()
        if row is None:
            return
        values: dict[str, object] = {"email": email}
        if row.status == ERASED:
            values.update(status=UNCONFIRMED, status_reason="waiting for confirmation")
            db.execute(subscriber_events.insert().values(subscriber_id=subscriber_id, status=UNCONFIRMED,
                                                         source="sign-up", reason="signed up again after being "
                                                         "erased", at=now))
        db.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(**values))


def _start_wait(db: Connection, subscriber_id: int, now: datetime, wait: timedelta) -> None:
    """Start a wait for confirmation at ``now`` unless one is going on: the first request
    of an address starts it, and later ones leave it be, so that a stranger sending the form
    again and again cannot keep an unconfirmed address stored (the purge counts from here).
    A new wait starts only after the last one was confirmed, or is over (``wait``, the
    purge's delay, has passed: the purge has not run yet, and would have deleted the row).
    ``mailed_at`` is kept, so the resend period holds across a new wait."""
    row = db.execute(sa.select(signups.c.requested_at, signups.c.confirmed_at)
                     .where(signups.c.subscriber_id == subscriber_id)).first()
    if row is None:
        db.execute(signups.insert().values(subscriber_id=subscriber_id, requested_at=now))
        return
    began, confirmed = utc(row.requested_at), utc(row.confirmed_at)
    if (confirmed is not None and confirmed >= began) or began + wait <= now:  # type: ignore[operator]
        db.execute(signups.update().where(signups.c.subscriber_id == subscriber_id).values(requested_at=now))


def claim_confirmation_mail(engine: Engine, subscriber_id: int, now: datetime, every: timedelta) -> bool:
    """Take the right to mail ``subscriber_id`` a confirmation now: True at most once per
    ``every``, however many processes ask at once."""
    with transaction(engine) as db:
        claimed = db.execute(signups.update().where(
            signups.c.subscriber_id == subscriber_id,
            sa.or_(signups.c.mailed_at.is_(None), signups.c.mailed_at <= now - every),
        ).values(mailed_at=now))
        return bool(claimed.rowcount)


def release_confirmation_mail(engine: Engine, subscriber_id: int, claimed_at: datetime,
                              previous: datetime | None) -> None:
    """Give back a claim whose mail could not be sent, so that the next request may try."""
    with transaction(engine) as db:
        db.execute(signups.update().where(signups.c.subscriber_id == subscriber_id,
                                          signups.c.mailed_at == claimed_at).values(mailed_at=previous))


def get_signup(engine: Engine, subscriber_id: int) -> SignUpRecord | None:
    with engine.connect() as db:
        row = db.execute(sa.select(signups).where(signups.c.subscriber_id == subscriber_id)).first()
    if row is None:
        return None
    return SignUpRecord(row.subscriber_id, utc(row.requested_at), utc(row.mailed_at),  # type: ignore[arg-type]
                        utc(row.confirmed_at))


def confirm_signup(engine: Engine, subscriber_id: int, topics: Sequence[str], cadence: str, now: datetime) -> bool:
    """Make the subscriber active with the topics and cadence they confirmed, and keep the
    confirmation's time; False if they were not unconfirmed or unsubscribed (someone who
    bounced or complained is never brought back by a link)."""
    with transaction(engine) as db:
        changed = db.execute(subscribers.update().where(
            subscribers.c.id == subscriber_id, subscribers.c.status.in_((UNCONFIRMED, UNSUBSCRIBED)),
        ).values(status=ACTIVE, status_reason=None, unsubscribed_at=None, topics=",".join(topics), cadence=cadence))
        if not changed.rowcount:
            return False
        db.execute(subscriber_events.insert().values(subscriber_id=subscriber_id, status=ACTIVE, source="confirmed",
                                                     reason="confirmed by the link in the confirmation mail", at=now))
        db.execute(signups.update().where(signups.c.subscriber_id == subscriber_id).values(confirmed_at=now))
        return True


def stale_unconfirmed(engine: Engine, before: datetime) -> list[tuple[int, str, bool]]:
    """Every sign-up nobody confirmed whose wait began before ``before``:
    (id, address, whether to erase it rather than delete it), by address.

    Two kinds: subscribers still ``unconfirmed``, erased only if the ledger has deliveries
    to them (someone erased while subscribed who signed up again); and people who had left
    and were erased, whose address a sign-up put back on their row (:func:`reclaim_erased`)
    and who have not been active since. Those are always erased again: whoever typed
    their address into the form must not undo an erasure without the person's confirmation."""
    erases, events = subscriber_events.alias("erases"), subscriber_events.alias("events")
    last_erase = (sa.select(sa.func.max(erases.c.at))
                  .where(erases.c.subscriber_id == subscribers.c.id, erases.c.source == "erase")
                  .correlate(subscribers).scalar_subquery())
    active_since = sa.exists().where(events.c.subscriber_id == subscribers.c.id, events.c.status == ACTIVE,
                                     events.c.at > last_erase).correlate(subscribers)
    reclaimed = sa.and_(subscribers.c.status.in_(LEFT), ~subscribers.c.email.startswith(ERASED_PREFIX),
                        last_erase.is_not(None), ~active_since)
    with engine.connect() as db:
        rows = db.execute(sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.status)
                          .join(signups, signups.c.subscriber_id == subscribers.c.id, isouter=True)
                          .where(sa.or_(subscribers.c.status == UNCONFIRMED, reclaimed),
                                 sa.func.coalesce(signups.c.requested_at, subscribers.c.created_at) < before)
                          .order_by(subscribers.c.email)).all()
        mailed = set(db.execute(sa.select(deliveries.c.subscriber_id).distinct()
                                .where(deliveries.c.subscriber_id.in_([r.id for r in rows]))).scalars())
    return [(row.id, row.email, row.id in mailed or row.status != UNCONFIRMED) for row in rows]


def delete_unconfirmed(engine: Engine, ids: Sequence[int]) -> None:
    """Delete these subscribers, if still unconfirmed, with their sign-up and history.
    Never mailed a digest: nothing of exactly-once delivery depends on them."""
    with transaction(engine) as db:
        ids = list(db.execute(sa.select(subscribers.c.id).where(
            subscribers.c.id.in_(list(ids)), subscribers.c.status == UNCONFIRMED)).scalars())
        if ids:
            for table, column in ((signups, signups.c.subscriber_id),
                                  (subscriber_events, subscriber_events.c.subscriber_id)):
                db.execute(table.delete().where(column.in_(ids)))
            db.execute(subscribers.delete().where(subscribers.c.id.in_(ids)))
