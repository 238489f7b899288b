"""Running feeds as a service: the starter config, serving ``out/``, and the daemon's status.

The CLI calls these as it calls :func:`feeds.api.build`; :mod:`feeds.scheduler` holds the
daemon itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from feeds.config import Config, absolute_state_db, missing_state_db

if TYPE_CHECKING:  # the scheduler and the database toolkit load only when status is asked
    from feeds.queue import QueueStatus
    from feeds.scheduler import JobStatus
    from feeds.state import EditionProgress, Lease

__all__ = ["ServiceStatus", "init", "serve", "service_status"]


def init(folder: Path) -> Path:
    """Write a commented starter ``feeds.yaml`` into ``folder``; its path. Never
    overwrites one (ConfigExists)."""
    from feeds.starter import write_starter

    return write_starter(folder)


def serve(config: Config, *, listening: Callable[[str], None] = lambda url: None) -> None:
    """Serve ``config.out`` over HTTP until interrupted. The address is bound first:
    a taken port raises AddressInUse before ``listening(url)`` announces anything."""
    from feeds.serve import check_out, listen
    from feeds.serve import serve as serve_on

    check_out(config.out)
    sock = listen(config.serve.host, config.serve.port)
    with sock:
        host, port = sock.getsockname()[:2]
        serve_on(config, sock, lambda: listening(f"http://{_url_host(host)}:{port}/"))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class ServiceStatus:
    """Which files a command with this config uses, and the daemon's jobs on them."""

    config: Path | None  # None: no file, the defaults
    state_db: str  # its URL, password hidden
    cache_db: Path
    out: Path
    jobs: list[JobStatus]
    lease: Lease | None  # the daemon's claim, possibly expired
    queue: QueueStatus | None = None  # None: no queue.url, digests are sent inline (or queue_error)
    queue_error: str | None = None  # queue.url set and its Redis not answering: why, as one line
    editions: list[EditionProgress] = field(default_factory=list)  # the latest editions' deliveries
    state_missing: Path | None = None  # the SQLite file state_db names, when there is none yet


def service_status(config: Config) -> ServiceStatus:
    """What :class:`ServiceStatus` says. Reads only: a state database that is not there yet
    is reported (``state_missing``), not created, and has no jobs, lease or editions."""
    from feeds import state

    missing = missing_state_db(config.state_db)
    jobs: list[JobStatus] = []
    lease: Lease | None = None
    if missing is None:
        from feeds.scheduler import status

        jobs, lease = status(config)
    queue, queue_error = None, None
    if config.queue.url:
        from feeds.queue import QueueError, queue_status

        try:
            queue = queue_status(config)
        except QueueError as e:  # the rest is what the operator needs to see most then
            queue_error = str(e)
    return ServiceStatus(
        config=config.source.absolute() if config.source else None,
        state_db=state.safe_url(absolute_state_db(config.state_db)),
        cache_db=config.cache_db.absolute(),
        out=config.out.absolute(),
        jobs=jobs,
        lease=lease,
        queue=queue,
        queue_error=queue_error,
        editions=[] if missing else state.edition_progress(state.open_state(config.state_db)),
        state_missing=missing,
    )

