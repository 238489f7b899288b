"""What the database keeps besides people and messages: the editions' web copies, and
the secret that signs unsubscribe tokens."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feeds.model import ArchivedEdition
from feeds.state.schema import editions, settings, transaction, utc

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
