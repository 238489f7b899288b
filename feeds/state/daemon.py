"""The daemon's share of the database: the lease that lets one daemon at a time run the
jobs, and each job's last result, for ``feeds status``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feeds.state.schema import job_runs, leases, transaction, utc

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
