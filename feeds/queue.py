"""Digest delivery past one machine: batches of subscribers on a Dramatiq queue in Redis,
sent by ``feeds worker`` processes that share one state database.

Why Dramatiq on Redis (see the README's "Delivery by workers"): a message is acknowledged
only after its actor returned, and the RedisBroker gives a worker's unacknowledged messages
back to the queue once the worker has sent no heartbeat for ``queue.heartbeat_timeout_seconds``
(a ``kill -9``, a lost machine); its Retries middleware retries with exponential backoff.
Rate limits shared by every worker are the ``limits`` library's moving windows, in the same
Redis.

The queue only says who to serve; the ledger still decides what is owed. A worker runs the
same :class:`feeds.api.sending.Sending` as ``feeds digest --send`` does inline: each
(subscriber, edition) is claimed in the state database before its message is composed and
marked sent once the server accepted it. A batch given to a second worker (its first died
mid-way) finds the first one's sends recorded and takes over the one claim it left, whose
message goes again with the same Message-ID: at most that one message arrives twice.

The editions themselves are planned and rendered once, by whoever queues the run (the
daemon's digest job, or ``feeds digest --send``), which also writes their web copies; they
wait in Redis for the workers. A worker makes an edition itself only when Redis no longer
keeps it (Redis restarted, or an older edition retried past its expiry), from its own
records; a worker that cannot read them leaves the batch to the queue (SendingHalted).
Such an edition is neither written to the worker's ``out/`` nor archived (nobody serves a
worker's ``out/``): its email links to the planner's web copy if the archive has one, else
to none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from feeds import state
from feeds.api.digests import EditionMaker
from feeds.config import Config, QueueConfig
from feeds.errors import FeedsError, SendingHalted
from feeds.render.digest import RenderedEdition

if TYPE_CHECKING:
    import redis
    from dramatiq import Actor
    from dramatiq.brokers.redis import RedisBroker
    from limits import RateLimitItem
    from sqlalchemy.engine import Engine

    from feeds.api.sending import DigestReport
    from feeds.digest import Edition

log = logging.getLogger(__name__)

NAMESPACE = "feeds"  # every key this module and Dramatiq keep in Redis starts with "feeds:"
QUEUE = "digest"
ACTOR = "send_batch"
WORKERS = f"{NAMESPACE}:worker:"  # + a worker's id: where `feeds status` finds live workers
EDITIONS = f"{NAMESPACE}:edition:"  # + a hash of (topics, cadence, period): a planned edition
# Dramatiq's RedisBroker runs its maintenance (giving a dead worker's batches back to the
# queue) on this many of a million commands; its default, 1,000, leaves an idle worker
# polling once a second minutes to notice a dead one. A tenth costs a sorted-set range.
MAINTENANCE_CHANCE = 100_000
MAX_RETRIES = 20  # then the batch's deferred rows wait for the next planned run, as inline ones do
MAX_BACKOFF_MS = 3_600_000


class QueueError(FeedsError):
    """The queue cannot be used: no ``queue.url``, or Redis refuses or is unreachable."""


class WaitStopped(SendingHalted):
    """The worker was told to stop (SIGTERM) while a message waited for a shared rate
    limit: that message is deferred, as are the batch's others, and the batch goes back
    to the queue (see :meth:`BatchSender.send_batch`)."""


class QueueLost(QueueError, SendingHalted):
    """Redis went away after we had connected: a worker stops with it (see
    :func:`run_worker`), as does a batch in hand, whose unsent messages stay owed."""


def lost(url: str | None, error: BaseException) -> QueueLost:
    return QueueLost(f"queue {_safe_url(url or '')}: lost: {_first_line(error)}")


def _safe_url(url: str) -> str:
    """The URL without its password, for messages: redis-py takes one in the user part
    (``redis://:pw@host``) or as a query argument (``?password=pw``)."""
    head, _, query = url.partition("?")
    if query:
        query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", query)
    rest, at, tail = head.rpartition("@")
    if at:
        scheme, _, credentials = rest.partition("://")
        user = credentials.split(":", 1)[0]
        head = f"{scheme}://{user}:***@{tail}" if ":" in credentials else f"{scheme}://***@{tail}"
    return f"{head}?{query}" if query else head


def connect(config: QueueConfig) -> redis.Redis:
    """A client of ``config.url``, checked with a PING; QueueError naming the URL if not."""
    import redis

    if not config.url:
        raise QueueError("queue.url is not set: digests are sent inline by feeds digest --send and feeds run")
    try:
        client = redis.Redis.from_url(config.url, socket_connect_timeout=5, socket_timeout=30,
                                      health_check_interval=30)
        client.ping()
    except (redis.RedisError, ValueError, OSError) as e:
        raise QueueError(f"queue {_safe_url(config.url)}: cannot connect: {_first_line(e)}") from e
    return client


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Queue:
    """The digest queue on ``config.queue.url``: its broker, and the one actor that sends a
    batch. ``handler`` runs the batches (a worker); without one, this end only queues."""

    def __init__(self, config: Config, handler: Callable[..., None] | None = None) -> None:
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker

        self.config = config
        self.client = connect(config.queue)
        self.broker: RedisBroker = RedisBroker(  # type: ignore[no-untyped-call]  # its __init__ has no hints
            client=self.client, namespace=NAMESPACE, maintenance_chance=MAINTENANCE_CHANCE,
            heartbeat_timeout=int(config.queue.heartbeat_timeout_seconds * 1000),
        )
        self.handler = handler
        smtp = config.smtp
        self.actor: Actor[..., None] = dramatiq.Actor(
            self._run, broker=self.broker, actor_name=ACTOR, queue_name=QUEUE, priority=0,
            options={
                # 4xx refusals, and claims held elsewhere, come back after an exponential backoff.
                "max_retries": MAX_RETRIES, "min_backoff": max(1, int(smtp.backoff_seconds * 1000)),
                "max_backoff": MAX_BACKOFF_MS,
                # Dramatiq stops an actor after 10 minutes by default: a batch waiting on a
                # shared rate limit may need longer; a minute a subscriber is the worst case.
                "time_limit": max(3_600_000, config.queue.batch_size * 60_000),
            },
        )

    def _run(self, *args: Any) -> None:
        if self.handler is None:
            raise RuntimeError("this end of the queue only enqueues")
        self.handler(*args)

    def enqueue(self, end: datetime, ids: Sequence[int], owed_only: Sequence[int]) -> None:
        self.actor.send(end.isoformat(), list(ids), list(owed_only))


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Queued:
    subscribers: int
    batches: int
    editions: int  # editions planned and rendered for the workers


def planned_key(topics: Sequence[str], cadence: str, start: datetime, end: datetime) -> str:
    """Where a planned edition waits in Redis: not the ledger's edition key
    (:func:`feeds.digest.edition_key`, one per cadence and day), but one per distinct
    rendering, as topics and a catch-up period make editions of one key differ."""
    ident = json.dumps([list(topics), cadence, start.isoformat(), end.isoformat()])
    return EDITIONS + hashlib.sha256(ident.encode()).hexdigest()[:32]


def queue_run(config: Config, engine: Engine, maker: EditionMaker, people: Sequence[state.Subscriber],
              owed_only: set[int], *, end: datetime) -> Queued:
    """Plan a ``--send`` run for the workers: render each new edition ``people`` are due
    (and publish its web copy), keep it in Redis for them, and queue everyone in batches
    of ``queue.batch_size``, by id. Those in ``owed_only`` get only what earlier runs owe.
    QueueLost if Redis goes away meanwhile: nobody is lost, as the next run queues
    everyone again and the ledger says what each is still owed."""
    import redis
    from dramatiq.errors import BrokerConnectionError

    queue = Queue(config)
    ids = [p.id for p in people]
    size = config.queue.batch_size
    batches = [ids[i:i + size] for i in range(0, len(ids), size)]
    try:
        planned = _plan_editions(config, engine, queue.client, maker, people, owed_only, end=end)
        for batch in batches:
            queue.enqueue(end, batch, [i for i in batch if i in owed_only])
    except (redis.RedisError, BrokerConnectionError) as e:
        raise lost(config.queue.url, e) from e
    return Queued(len(ids), len(batches), planned)


def _plan_editions(config: Config, engine: Engine, client: redis.Redis, maker: EditionMaker,
                   people: Sequence[state.Subscriber], owed_only: set[int], *, end: datetime) -> int:
    """Render each edition ``people`` (but those in ``owed_only``) are due once, and keep
    it in Redis for the workers; returns how many there are."""
    from feeds.digest import is_due, period

    ends = state.ledger_ends(engine)
    ttl = timedelta(hours=config.smtp.retry_for_hours) + timedelta(days=1)
    planned: set[str] = set()
    for person in people:
        if person.id in owed_only:
            continue
        last = ends.get(person.id)
        if not is_due(person.cadence, end, last.last_made if last else None, maker.zone):
            continue
        start, period_end = period(person.cadence, end, last.last_sent if last else None)
        key = planned_key(person.topics, person.cadence, start, period_end)
        if key in planned:
            continue
        planned.add(key)
        rendered = maker.make_rendered(person.topics, person.cadence, start, period_end)
        if rendered is not None:
            client.set(key, json.dumps(asdict(rendered)), ex=ttl)
    return len(planned)


# ---------------------------------------------------------------------------- limits


def _per_second(rate: float) -> RateLimitItem:
    """``rate`` a second as a moving window: of 1 second for a whole rate, else of 10 or
    60 seconds, so that 2.5 a second is 25 in any 10 seconds, not 2 or 3 in each."""
    from limits import RateLimitItemPerSecond

    window = next((w for w in (1, 10, 60) if abs(rate * w - round(rate * w)) < 1e-9), 60)
    return RateLimitItemPerSecond(max(1, round(rate * window)), window)


class SharedLimits:
    """``smtp.rate_per_second`` for every worker together, and
    ``queue.domain_rate_per_second`` per recipient domain, kept in Redis by the ``limits``
    library (moving windows, checked and counted in one Lua call)."""

    def __init__(self, config: Config, sleep: Callable[[float], object],
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        from limits.storage import RedisStorage
        from limits.strategies import MovingWindowRateLimiter

        self.url = url = config.queue.url or ""
        # limits names a Unix socket redis+unix://, where redis-py says unix://.
        storage = RedisStorage("redis+unix://" + url.removeprefix("unix://") if url.startswith("unix://") else url)
        self.limiter = MovingWindowRateLimiter(storage)
        self.total = _per_second(config.smtp.rate_per_second)
        rate = config.queue.domain_rate_per_second
        self.per_domain = _per_second(rate) if rate else None
        self.sleep, self.should_stop = sleep, should_stop

    def wait(self, recipient: str) -> None:
        """Return once one more message to ``recipient`` keeps within both limits; the
        domain's first, so that a slot of the total is not held while its domain waits.
        QueueLost if Redis cannot be asked: no message may leave without counting;
        WaitStopped if ``should_stop`` says so meanwhile (a window may last a minute)."""
        import redis

        try:
            if self.per_domain is not None:
                self._take(self.per_domain, "domain", recipient.rpartition("@")[2].lower())
            self._take(self.total, "total")
        except redis.RedisError as e:
            raise lost(self.url, e) from e

    def _take(self, item: RateLimitItem, *key: str) -> None:
        import time

        while not self.limiter.hit(item, NAMESPACE, *key):
            if self.should_stop():
                raise WaitStopped("stopped while waiting for the rate limit: the rest stay owed")
            reset = self.limiter.get_window_stats(item, NAMESPACE, *key).reset_time
            self.sleep(min(max(reset - time.time(), 0.001), 1.0))


# ---------------------------------------------------------------------------- worker


def worker_id() -> str:
    """``host pid N #random``: what this worker records itself as in Redis and `feeds status`
    lists. Host and pid alone are not unique: containers of one image share a host name,
    and each worker in them is pid 1."""
    return f"{socket.gethostname()[:64]} pid {os.getpid()} #{secrets.token_hex(3)}"


class BatchSender:
    """A worker's side: sends each batch it is given with the ledger's claims, one SMTP
    connection per batch, within the shared limits."""

    def __init__(self, config: Config, queue: Queue) -> None:
        self.config, self.queue = config, queue
        self.engine = state.open_state(config.state_db)
        self.stopping = threading.Event()
        # A wait for a limit's window (up to a minute) ends at once when the worker stops.
        self.limits = SharedLimits(config, self.stopping.wait, self.stopping.is_set)
        self.lost: QueueLost | None = None  # Redis went away: the worker stops (see run_worker)
        self.on_lost: Callable[[], None] = lambda: None
        self.lock = threading.Lock()
        self.idle = threading.Condition()
        self.busy = 0  # batches being sent now
        self.editions: tuple[datetime, _SharedEditions] | None = None
        # One attempt per message: a 4xx goes back to the queue, whose backoff retries it.
        self.smtp = replace(config.smtp, retries=0)

    def editions_for(self, end: datetime) -> _SharedEditions:
        """The editions of the run ending at ``end``, kept while its batches come."""
        with self.lock:
            if self.editions is None or self.editions[0] != end:
                self.editions = (end, _SharedEditions(self.config, self.engine, self.queue.client))
            return self.editions[1]

    def lose(self, error: QueueLost) -> None:
        """Redis is gone: stop sending, and have the worker stop with ``error``."""
        self.lost = self.lost or error
        self.stopping.set()
        self.on_lost()

    def pace(self, recipient: str) -> None:
        try:
            self.limits.wait(recipient)
        except QueueLost as e:
            self.lose(e)
            raise

    def wait_idle(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no batch is being sent."""
        with self.idle:
            self.idle.wait_for(lambda: self.busy == 0, timeout)

    def send_batch(self, end_iso: str, ids: list[int], owed_only: list[int]) -> None:
        from dramatiq import Retry
        from sqlalchemy.exc import SQLAlchemyError

        with self.idle:
            self.busy += 1
        try:
            report = self._send(datetime.fromisoformat(end_iso), ids, set(owed_only))
        except (SQLAlchemyError, state.StateError) as e:
            # The database every worker shares is down or refusing: nobody here is at fault,
            # and a claim not taken is not owed. The queue's backoff tries the batch again; a
            # message sent and not recorded goes again once its claim expires, same Message-ID.
            log.error("state database unavailable; the batch goes back to the queue",
                      extra={"database": state.safe_url(self.config.state_db), "reason": _first_line(e)})
            raise Retry("state database unavailable") from None
        finally:
            with self.idle:
                self.busy -= 1
                self.idle.notify_all()
        if self.lost is not None:
            # Left unacknowledged, as a killed worker leaves it: a retry would ask the Redis
            # that is gone. Redis gives it to another worker once this one's heartbeat is
            # missed; a Redis that lost its data has it queued again by the next planned run.
            threading.Event().wait()
        if report.deferred or report.elsewhere or report.stopped:
            # Deferred rows are retried as they were (same Message-ID); a claim another
            # worker holds is finished by it, or expires and is taken over, by then.
            raise Retry(f"{len(report.deferred)} deferred, {len(report.elsewhere)} held elsewhere"
                        + (", stopped" if report.stopped else ""))

    def _send(self, end: datetime, ids: list[int], owed_only: set[int]) -> DigestReport:
        from feeds.api.digests import Letters, digest_secret, send_run
        from feeds.api.sending import DigestReport, Sending
        from feeds.deliver import SmtpSender

        now = datetime.now(UTC)
        maker = self.editions_for(end)
        letters = Letters(self.config, maker, digest_secret(self.config, self.engine), now)
        report = DigestReport()
        run = Sending(self.engine, self.smtp, end=end, now=now, clock=lambda: datetime.now(UTC), zone=maker.zone,
                      make_edition=maker.make_rendered, compose=letters.compose, message_id=letters.message_id,
                      report=report, only=ids)
        people = state.subscribers_by_id(self.engine, ids)
        send_run(run, people, SmtpSender(self.smtp, pace=self.pace), self.stopping.is_set, owed_only)
        log.info("batch done", extra={"end": end.isoformat(), "subscribers": len(ids), "sent": len(report.sent),
                                      "deferred": len(report.deferred), "failed": len(report.failed),
                                      "elsewhere": len(report.elsewhere), "already": len(report.already)})
        if report.stop_reason:  # asked to (SIGTERM in a limit's wait) is no error
            asked = self.stopping.is_set() and self.lost is None
            (log.info if asked else log.error)("batch stopped", extra={"reason": report.stop_reason})
        return report


class _SharedEditions(EditionMaker):
    """A worker's editions: the planner's, from Redis; any Redis no longer keeps made
    here, from this machine's records, read only then.

    A worker publishes nothing: web copies and the archive are the planner's, on the
    machine whose ``feeds serve`` shows them. An edition made here links to its web copy
    only if the archive has it (the planner published it); else to none, as its copy
    would be in this machine's ``out/`` alone, which nobody serves."""

    def __init__(self, config: Config, engine: Engine, client: redis.Redis) -> None:
        from feeds.api.builds import Corpus
        from feeds.taxonomy import build_taxonomy

        # No records until one is needed: a worker with the planner's editions needs none.
        # No engine: nothing made here is written to out/ or recorded in the archive.
        super().__init__(config, Corpus((), (), build_taxonomy(config.topics, ())), config.out, None)
        self.archive = engine
        self.client = client
        self.shared: dict[str, RenderedEdition] = {}
        self.read_records = False
        self.published: set[str] | None = None  # the archive's paths, read when first needed

    def web_url(self, edition: Edition) -> str | None:
        if self.published is None:
            self.published = {e.path for e in state.list_editions(self.archive)}
        return super().web_url(edition) if edition.web_path in self.published else None

    def make_rendered(self, topics: tuple[str, ...], cadence: str, start: datetime,
                      end: datetime) -> RenderedEdition | None:
        key = planned_key(topics, cadence, start, end)
        if key not in self.shared:
            found = cast(bytes | None, self.client.get(key))  # redis-py < 8 types every reply loosely
            if found is None:
                return self._make_here(topics, cadence, start, end)
            self.shared[key] = RenderedEdition(**json.loads(found))
        return self.shared[key]

    def _make_here(self, topics: tuple[str, ...], cadence: str, start: datetime,
                   end: datetime) -> RenderedEdition | None:
        from feeds.api.builds import load_corpus

        if not self.read_records:
            try:
                corpus = load_corpus(self.config)
            except FeedsError as e:  # this machine's fault, not the subscribers' (see SendingHalted)
                raise SendingHalted(f"{e}: this worker cannot make an edition the planner did not keep") from e
            self.use_corpus(corpus)
            self.read_records = True
        return super().make_rendered(topics, cadence, start, end)


def run_worker(config: Config, *, threads: int, stop: threading.Event,
               ready: Callable[[str], None] = lambda _: None) -> None:
    """Send queued batches with ``threads`` threads until ``stop`` is set; the batch in
    hand finishes its current message and goes back to the queue."""
    import dramatiq

    queue = Queue(config)
    sender = BatchSender(config, queue)
    queue.handler = sender.send_batch
    # A consumer with its batches in hand polls for the next with a backoff up to the worker
    # timeout (1 s by default): a second a batch of idle time, as long as sending 40
    # messages to a server taking 25 ms. A tenth of a second costs Redis 10 calls a second.
    worker = dramatiq.Worker(queue.broker, worker_threads=threads, worker_timeout=100)
    # One batch in hand per thread: batches are long, and a prefetched one waits idle while
    # another worker could be sending it.
    worker.queue_prefetch = threads
    sender.on_lost = stop.set
    worker.start()
    me = worker_id()
    presence = threading.Thread(target=_keep_presence, args=(queue, me, threads, stop, sender.lose), daemon=True)
    presence.start()
    ready(me)
    stop.wait()
    sender.stopping.set()
    if sender.lost is None:
        _check_reachable(queue, sender)
    if sender.lost is not None:
        # Dramatiq would retry acknowledging until Redis is back: the batches in hand are
        # left to Redis, as a killed worker's are, once the message in flight is done.
        sender.wait_idle(4 * config.smtp.timeout_seconds + 5)
        raise sender.lost
    worker.stop()
    queue.client.delete(WORKERS + me)


def _check_reachable(queue: Queue, sender: BatchSender) -> None:
    import redis

    try:
        queue.client.ping()
    except redis.RedisError as e:
        sender.lose(lost(queue.config.queue.url, e))


def _keep_presence(queue: Queue, me: str, threads: int, stop: threading.Event,
                   on_lost: Callable[[QueueLost], None]) -> None:
    """Say in Redis, while we run, that this worker is alive: what `feeds status` lists.
    Redis not answering (redis-py has retried by then) stops the worker, by ``on_lost``."""
    import redis

    timeout = queue.config.queue.heartbeat_timeout_seconds
    started = datetime.now(UTC).isoformat(timespec="seconds")
    while True:
        try:
            queue.client.set(WORKERS + me, json.dumps({
                "threads": threads, "started": started, "seen": datetime.now(UTC).isoformat(timespec="seconds"),
                "broker_id": queue.broker.broker_id, "pid": os.getpid()}), ex=max(1, round(timeout)))
        except redis.RedisError as e:
            on_lost(lost(queue.config.queue.url, e))
            return
        if stop.wait(timeout / 3):
            return


# ---------------------------------------------------------------------------- status


@dataclass(frozen=True)
class WorkerSeen:
    name: str  # host, pid and a random suffix (see worker_id)
    threads: int
    started: str
    seen: str
    pid: int
    broker_id: str  # Dramatiq's name for it: its batches in hand are in "feeds:__acks__.<broker_id>.digest"


@dataclass(frozen=True)
class QueueStatus:
    url: str  # password hidden
    waiting: int  # batches no worker has taken yet
    in_hand: int  # batches a worker has taken and not finished (or that a dead worker left)
    retrying: int  # batches waiting for their backoff before another try
    dead: int  # batches given up after MAX_RETRIES (their rows wait for the next run)
    workers: list[WorkerSeen]


def queue_status(config: Config) -> QueueStatus:
    client = connect(config.queue)
    base = f"{NAMESPACE}:{QUEUE}"
    # Any: redis-py 7 types these replies as maybe-awaitable, 8 as int.
    waiting, queued, retrying, dead = cast(Any, (
        client.llen(base), client.hlen(f"{base}.msgs"), client.hlen(f"{base}.DQ.msgs"), client.zcard(f"{base}.XQ")))
    return QueueStatus(_safe_url(config.queue.url or ""), int(waiting), max(0, int(queued) - int(waiting)),
                       int(retrying), int(dead), sorted(_workers(client), key=lambda w: w.name))


def _workers(client: redis.Redis) -> Iterator[WorkerSeen]:
    for key in client.scan_iter(match=WORKERS + "*"):
        raw = cast(bytes | None, client.get(key))
        if raw is None:
            continue
        seen = json.loads(raw)
        name = (key.decode() if isinstance(key, bytes) else str(key)).removeprefix(WORKERS)
        yield WorkerSeen(name, int(seen["threads"]), seen["started"], seen["seen"], int(seen["pid"]),
                         str(seen["broker_id"]))
