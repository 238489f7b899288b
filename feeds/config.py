"""YAML config file -> frozen :class:`Config`, layered over the defaults.

Every key is optional; with no file at all the defaults make a working build. Relative
paths in the file, and the default paths when there is a file, are resolved against the
file's folder, so a config works from any current directory. :func:`find_config` says which
file a command uses; each key is checked by its function in :data:`VALIDATORS`.
Command-line flags are applied over the result by the CLI (:func:`dataclasses.replace`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from feeds import fastyaml
from feeds.errors import ConfigError, RecordError, RecordNotice

if TYPE_CHECKING:  # imported where Topics are made: a rebuild with nothing to do never needs it
    from feeds.model import Topic

CADENCES = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}  # a digest's period

DEFAULT_BASE_URL = "http://localhost:8000/"  # where `feeds serve` listens by default


SMTP_SECURITY = ("none", "starttls", "tls")


@dataclass(frozen=True)
class SmtpConfig:
    """Where ``feeds digest --send`` hands messages over. The password comes only from the
    environment (``FEEDS_SMTP_PASSWORD``), never from a file that may be committed."""

    host: str = "localhost"
    port: int = 25
    security: str = "none"  # none | starttls | tls
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    rate_per_second: float = 10.0
    retries: int = 3
    backoff_seconds: float = 2.0  # first wait after a 4xx; doubles each retry
    timeout_seconds: float = 30.0
    # A deferred message is retried by later runs for this long after its first attempt,
    # then given up as failed.
    retry_for_hours: float = 72.0


@dataclass(frozen=True)
class ScheduleConfig:
    """When ``feeds run`` rebuilds feeds and sends digests. Times are local to the
    config's ``timezone``; ``None`` turns a job off."""

    build_every_minutes: float | None = 15.0
    build_cron: str | None = None  # crontab line; wins over build_every_minutes
    daily_digest_at: str | None = "07:00"
    weekly_digest_at: str | None = "mon 07:00"
    misfire_grace_minutes: float = 120.0  # a run missed by more than this is skipped
    lease_seconds: float = 60.0  # how long a daemon's claim on the state database lasts


@dataclass(frozen=True)
class QueueConfig:
    """Where digests are delivered from: inline by ``feeds digest --send`` and the daemon
    (no ``url``, the default), or by ``feeds worker`` processes fed through a Dramatiq
    queue on Redis (``url: redis://...``). See :mod:`feeds.queue`."""

    url: str | None = None  # redis://[:password@]host:port/db, rediss://..., or unix:///path
    batch_size: int = 100  # subscribers per queued message
    # A worker silent this long is taken for dead: its unfinished batches go to another
    # worker (Dramatiq's RedisBroker heartbeat_timeout).
    heartbeat_timeout_seconds: float = 60.0
    domain_rate_per_second: float | None = None  # messages to one recipient domain, all workers together


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    cache_seconds: int = 300


@dataclass(frozen=True)
class SignupConfig:
    """Readers' own sign-up on ``feeds serve`` (double opt-in). Rates are the ``limits``
    library's notation ("10/hour", "3 per minute")."""

    confirm_within_hours: float = 48.0  # a confirmation link works this long
    resend_after_hours: float = 12.0  # at most one confirmation mail per address per this
    purge_after_hours: float = 168.0  # unconfirmed addresses are deleted this long after their first request
    rate_per_ip: str = "10/hour"  # sign-up requests per client address
    rate_per_email: str = "5/hour"  # sign-up requests per e-mail address
    rate_limit_storage: str = "memory://"  # a limits storage URI: memory://, redis://host:6379, ...


_TIME_OF_DAY = re.compile(r"(?:(mon|tue|wed|thu|fri|sat|sun) )?([01]?\d|2[0-3]):([0-5]\d)")


def parse_time_of_day(value: str) -> tuple[int | None, int, int]:
    """``"07:00"`` -> (None, 7, 0); ``"mon 07:00"`` -> (0, 7, 0). Raises ValueError."""
    match = _TIME_OF_DAY.fullmatch(value.strip().lower())
    if not match:
        raise ValueError(f"{value!r} is not a time such as 07:00 or mon 07:00")
    day, hour, minute = match.groups()
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun").index(day) if day else None
    return weekday, int(hour), int(minute)


@dataclass(frozen=True)
class Config:
    """Everything a build needs to know besides the records. Keys match the YAML file."""

    title: str = "feeds"
    description: str = "The best stories per topic, ranked by quality and recency."
    base_url: str = DEFAULT_BASE_URL
    language: str = "en"
    items_per_feed: int = 50
    half_life_hours: float = 48.0
    max_items_per_provider: int | None = None
    max_age_days: float | None = None
    max_record_bytes: int = 1_048_576
    seeds: Path = Path("seeds")
    out: Path = Path("out")
    topics: tuple[Topic, ...] = ()
    # Topic files of a ``topics`` folder that could not be used: each is skipped like a bad
    # record (reported by the build, fatal under --strict), and the other topics stand.
    topic_errors: tuple[RecordError, ...] = ()
    # What a topics folder's files gave that was used with a note (a key given twice).
    topic_notes: tuple[RecordNotice, ...] = ()
    state_db: str = "sqlite:///feeds.db"
    cache_db: Path = Path("feeds-cache.db")
    timezone: str = "UTC"
    digest_items_per_topic: int = 5
    mail_from: str = "feeds <feeds@localhost>"
    reply_to: str | None = None
    secret: str | None = field(default=None, repr=False)
    smtp: SmtpConfig = SmtpConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    serve: ServeConfig = ServeConfig()
    signup: SignupConfig = SignupConfig()
    queue: QueueConfig = QueueConfig()
    source: Path | None = None  # the file this came from, for messages

    @property
    def half_life(self) -> timedelta:
        return timedelta(hours=self.half_life_hours)

    @property
    def max_age(self) -> timedelta | None:
        return timedelta(days=self.max_age_days) if self.max_age_days is not None else None


_LANGUAGE = re.compile(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*")


CONFIG_NAME = "feeds.yaml"  # looked for in the current folder when no config is named


def find_config(given: Path | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The config file to use: ``--config``, else ``FEEDS_CONFIG``, else ``./feeds.yaml``
    if there is one, else None (the defaults, with the current folder as base)."""
    if given is not None:
        return given
    if environ.get("FEEDS_CONFIG"):
        return Path(environ["FEEDS_CONFIG"])
    here = Path(CONFIG_NAME)
    return here if here.exists() else None


def load_config(path: Path | None) -> Config:
    """Read ``path`` (YAML) over the defaults; ``None`` gives the defaults.

    Every relative path, the defaults' included, is resolved against the file's folder:
    a config works from any current folder (a systemd unit's WorkingDirectory, a shell).
    Raises ConfigError naming the file and the key for anything it cannot use, including
    unknown keys, which are almost always typos.
    """
    if path is None:
        return with_environment(Config())
    raw = _read_mapping(path)
    unknown = sorted(set(map(str, raw)) - _KEYS)
    if unknown:
        raise ConfigError(path, f"unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_KEYS))}",
                          key=unknown[0])
    values = {key: _parse(key, value, path) for key, value in raw.items()}
    for key, default in DEFAULT_PATHS.items():  # beside the file, not wherever it was run from
        values.setdefault(key, _parse(key, default, path))
    if "topics" in values:
        values["topics"], values["topic_errors"], values["topic_notes"] = values["topics"]
    return with_environment(Config(source=path, **values))


def _read_mapping(path: Path) -> Mapping[str, Any]:
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(path, f"cannot read: {e.strerror or e}") from e
    except ValueError as e:  # not YAML, not UTF-8, or a date that does not exist
        raise ConfigError(path, f"not valid YAML: {_first_line(e)}") from e
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(path, "expected a mapping of keys at the top level")
    return raw


def with_environment(config: Config, environ: Mapping[str, str] = os.environ) -> Config:
    """Secrets from the environment win over the file: ``FEEDS_SECRET`` signs unsubscribe
    tokens, ``FEEDS_SMTP_PASSWORD`` logs in to the SMTP server, ``FEEDS_QUEUE_URL`` (with
    its password) names the queue's Redis."""
    changes: dict[str, Any] = {}
    if environ.get("FEEDS_SECRET"):
        changes["secret"] = environ["FEEDS_SECRET"]
    if environ.get("FEEDS_SMTP_PASSWORD"):
        changes["smtp"] = replace(config.smtp, password=environ["FEEDS_SMTP_PASSWORD"])
    if environ.get("FEEDS_QUEUE_URL"):  # its password, if any, stays out of the file
        changes["queue"] = replace(config.queue, url=environ["FEEDS_QUEUE_URL"])
    return replace(config, **changes) if changes else config


Fail = Callable[[str], ConfigError]


class _Key(NamedTuple):
    """Where a value came from: its file and key, for messages and relative paths (a
    named tuple: a frozen dataclass costs every command ~0.3 ms to define)."""

    path: Path
    key: str

    @property
    def here(self) -> Path:
        return self.path.parent

    def fail(self, reason: str) -> ConfigError:
        return ConfigError(self.path, f"{self.key}: {reason}", key=self.key)


def _parse(key: str, value: Any, path: Path) -> Any:
    return VALIDATORS[key](value, _Key(path, key))


def _nullable(check: Callable[[Any, _Key], Any]) -> Callable[[Any, _Key], Any]:
    """``check``, and null (YAML's ``null`` or ``~``) for "none"."""
    return lambda value, at: None if value is None else check(value, at)


def _text(value: Any, at: _Key) -> str:
    if not isinstance(value, str) or not value.strip():
        raise at.fail("expected non-empty text")
    return value.strip()


def _base_url(value: Any, at: _Key) -> str:
    from feeds.normalise import (
        clean_url,  # only here: a build that has nothing to do never needs it
    )

    url = clean_url(value)
    if url is None:
        raise at.fail("expected an absolute http(s) URL, such as https://example.com/feeds/")
    return url if url.endswith("/") else url + "/"


def _language(value: Any, at: _Key) -> str:
    if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
        raise at.fail("expected a language tag such as en or en-GB")
    return value


def _count(value: Any, at: _Key) -> int:
    if not _is_whole(value, 1):
        raise at.fail("expected a whole number of at least 1")
    return int(value)


def _cap(value: Any, at: _Key) -> int | None:
    if value is not None and not _is_whole(value, 1):
        raise at.fail("expected a whole number of at least 1, or null for no cap")
    return value  # type: ignore[no-any-return]


def _positive(value: Any, at: _Key) -> float:
    if not _is_positive(value):
        raise at.fail("expected a number greater than 0")
    return float(value)


def _folder(value: Any, at: _Key) -> Path:
    if not isinstance(value, str) or not value:
        raise at.fail("expected a folder path")
    return at.here / Path(value).expanduser()


def _file(value: Any, at: _Key) -> Path:
    if not isinstance(value, str) or not value:
        raise at.fail("expected a file path")
    return at.here / Path(value).expanduser()


# sqlite:///relative.db is relative to the current folder in SQLAlchemy; sqlite:////abs is not.
_SQLITE_URL = re.compile(r"(sqlite(?:\+\w+)?:///)([^?]*)(.*)", re.S)


def _state_db(value: Any, at: _Key) -> str:
    """A SQLite file path, or an SQLAlchemy URL. A relative SQLite file, named either way,
    is beside the config: the daemon, ``status`` and ``subscribers`` must all find it."""
    if not isinstance(value, str) or not value:
        raise at.fail("expected a SQLite file path or an SQLAlchemy URL")
    if "://" not in value:
        return f"sqlite:///{at.here / Path(value).expanduser()}"
    sqlite = _SQLITE_URL.fullmatch(value)
    if sqlite is None or sqlite[2] in ("", ":memory:") or sqlite[2].startswith("/"):
        return value
    return f"{sqlite[1]}{at.here / Path(sqlite[2]).expanduser()}{sqlite[3]}"


def absolute_state_db(url: str, base: Path | None = None) -> str:
    """``url`` with a relative SQLite file made absolute (against ``base``, or the current
    folder), for messages that must say which file is meant; other URLs as they are."""
    sqlite = _SQLITE_URL.fullmatch(url)
    if sqlite is None or sqlite[2] in ("", ":memory:") or sqlite[2].startswith("/"):
        return url
    return f"{sqlite[1]}{(base or Path()).absolute() / Path(sqlite[2]).expanduser()}{sqlite[3]}"


def missing_state_db(url: str) -> Path | None:
    """The SQLite file ``url`` names, absolute, if there is none yet; else None (it exists,
    or it is a server's database, which the operator makes). Read-only commands ask this
    first: opening the state database creates the file and its tables."""
    sqlite = _SQLITE_URL.fullmatch(url)
    if sqlite is None or sqlite[2] in ("", ":memory:") or sqlite[2].startswith("file:"):
        return None
    path = Path(sqlite[2]).expanduser().absolute()
    return None if path.exists() else path


_TopicsFound = tuple[tuple["Topic", ...], tuple[RecordError, ...], tuple[RecordNotice, ...]]


def _topics(value: Any, at: _Key) -> _TopicsFound:
    return _topic_definitions(value, at.here, at.fail)


def _timezone(value: Any, at: _Key) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only when the config names one

    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise at.fail(f"unknown time zone {value!r}; use an IANA name such as Europe/London") from e
    return str(value)


def _mailbox(value: Any, at: _Key) -> str:
    if not isinstance(value, str) or not _is_mailbox(value):
        raise at.fail("expected an address such as 'AI Digest <digest@example.org>'")
    return value


def _secret(value: Any, at: _Key) -> str:
    if not isinstance(value, str) or len(value) < 16:
        raise at.fail("expected a random string of at least 16 characters")
    return value


# Each key of the file and the function that checks and converts its value; a key missing
# here is unknown. Each raises ``at.fail(reason)``, which names the file and the key.
VALIDATORS: dict[str, Callable[[Any, _Key], Any]] = {
    "title": _text,
    "description": _text,
    "base_url": _base_url,
    "language": _language,
    "items_per_feed": _count,
    "half_life_hours": _positive,
    "max_items_per_provider": _cap,
    "max_age_days": _nullable(_positive),
    "max_record_bytes": _count,
    "seeds": _folder,
    "out": _folder,
    "topics": _topics,
    "state_db": _state_db,
    "cache_db": _file,
    "timezone": _timezone,
    "digest_items_per_topic": _count,
    "mail_from": _mailbox,
    "reply_to": _nullable(_mailbox),
    "secret": _nullable(_secret),  # null: made once and kept in the state database
    "smtp": lambda value, at: _smtp(value, at.fail),
    "schedule": lambda value, at: _schedule(value, at.fail),
    "serve": lambda value, at: _serve(value, at.fail),
    "signup": lambda value, at: _signup(value, at.fail),
    "queue": lambda value, at: _queue(value, at.fail),
}
_KEYS = set(VALIDATORS)

# The defaults that are paths, as a file would give them: with a file, they are resolved
# against its folder like any path in it.
DEFAULT_PATHS = {"seeds": "seeds", "out": "out", "cache_db": "feeds-cache.db", "state_db": "feeds.db"}


def _smtp(value: Any, fail: Fail) -> SmtpConfig:
    if not isinstance(value, Mapping):
        raise fail("expected a mapping with host, port, security, user, ...")
    known = {f.name for f in fields(SmtpConfig)} - {"password"}
    unknown = sorted(set(map(str, value)) - known)
    if unknown:
        hint = " (the password comes from FEEDS_SMTP_PASSWORD)" if "password" in unknown else ""
        raise fail(f"unknown key {unknown[0]!r}{hint}; known keys: {', '.join(sorted(known))}")
    smtp = SmtpConfig(**value)
    if not isinstance(smtp.host, str) or not smtp.host:
        raise fail("host: expected a host name")
    if not _is_whole(smtp.port, 1, 65535):
        raise fail("port: expected a port number")
    if smtp.security not in SMTP_SECURITY:
        raise fail(f"security: expected one of {', '.join(SMTP_SECURITY)}")
    for name in ("rate_per_second", "timeout_seconds", "backoff_seconds"):
        number = getattr(smtp, name)
        if not _is_positive(number):
            raise fail(f"{name}: expected a number greater than 0")
    if not _is_whole(smtp.retries, 0):
        raise fail("retries: expected a whole number of at least 0")
    if isinstance(smtp.retry_for_hours, bool) or not isinstance(smtp.retry_for_hours, int | float) \
            or smtp.retry_for_hours < 0:
        raise fail("retry_for_hours: expected a number of hours, 0 or more")
    return smtp


def _section(value: Any, cls: type, fail: Fail) -> Any:
    if not isinstance(value, Mapping):
        raise fail("expected a mapping of keys")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(map(str, value)) - known)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    return cls(**value)


def _schedule(value: Any, fail: Fail) -> ScheduleConfig:
    schedule: ScheduleConfig = _section(value, ScheduleConfig, fail)
    if schedule.build_every_minutes is not None and not _is_positive(schedule.build_every_minutes):
        raise fail("build_every_minutes: expected a number greater than 0, or null")
    if schedule.build_cron is not None:
        from apscheduler.triggers.cron import CronTrigger
        try:
            CronTrigger.from_crontab(str(schedule.build_cron))
        except ValueError as e:
            raise fail(f"build_cron: {e}") from e
    for name in ("daily_digest_at", "weekly_digest_at"):
        at = getattr(schedule, name)
        if at is None:
            continue
        try:
            weekday, _, _ = parse_time_of_day(str(at))
        except ValueError as e:
            raise fail(f"{name}: {e}") from e
        if (weekday is None) != (name == "daily_digest_at"):
            wanted = "HH:MM" if name == "daily_digest_at" else "a day and HH:MM, such as mon 07:00"
            raise fail(f"{name}: expected {wanted}")
    for name in ("misfire_grace_minutes", "lease_seconds"):
        number = getattr(schedule, name)
        if not _is_positive(number):
            raise fail(f"{name}: expected a number greater than 0")
    return schedule


def _serve(value: Any, fail: Fail) -> ServeConfig:
    serve: ServeConfig = _section(value, ServeConfig, fail)
    if not isinstance(serve.host, str) or not serve.host:
        raise fail("host: expected a host name or address")
    if not _is_whole(serve.port, 0, 65535):
        raise fail("port: expected a port number")
    if not _is_whole(serve.cache_seconds, 0):
        raise fail("cache_seconds: expected a whole number of seconds")
    return serve


# Ten years: far past any use, and far from where "now - hours" overflows datetime (and .inf
# timedelta), which would be a traceback on every sign-up and every hourly purge.
MAX_SIGNUP_HOURS = 24 * 366 * 10


def _signup(value: Any, fail: Fail) -> SignupConfig:
    signup: SignupConfig = _section(value, SignupConfig, fail)
    for name in ("confirm_within_hours", "resend_after_hours", "purge_after_hours"):
        hours = getattr(signup, name)
        if not _is_positive(hours) or hours > MAX_SIGNUP_HOURS:
            raise fail(f"{name}: expected a number of hours greater than 0 and at most {MAX_SIGNUP_HOURS}")
    if signup.purge_after_hours < signup.confirm_within_hours:
        raise fail("purge_after_hours: must be at least confirm_within_hours, or a valid link would find nobody")
    from limits import parse  # only when the config has a signup section

    for name in ("rate_per_ip", "rate_per_email"):
        try:
            parse(str(getattr(signup, name)))
        except ValueError as e:
            raise fail(f"{name}: expected a rate such as 10/hour ({e})") from e
    if not isinstance(signup.rate_limit_storage, str) or "://" not in signup.rate_limit_storage:
        raise fail("rate_limit_storage: expected a storage URI such as memory:// or redis://localhost:6379")
    return signup
# What redis-py's from_url takes: TCP, TLS, or a Unix socket.
QUEUE_SCHEMES = ("redis://", "rediss://", "unix://")


def _queue(value: Any, fail: Fail) -> QueueConfig:
    queue: QueueConfig = _section(value, QueueConfig, fail)
    if queue.url is not None and (not isinstance(queue.url, str) or not queue.url.startswith(QUEUE_SCHEMES)):
        raise fail("url: expected a Redis URL such as redis://localhost:6379/0, or null for inline sending")
    if not _is_whole(queue.batch_size, 1):
        raise fail("batch_size: expected a whole number of at least 1")
    if not _is_positive(queue.heartbeat_timeout_seconds):
        raise fail("heartbeat_timeout_seconds: expected a number greater than 0")
    if queue.domain_rate_per_second is not None and not _is_positive(queue.domain_rate_per_second):
        raise fail("domain_rate_per_second: expected a number greater than 0, or null for no limit")
    return queue


_MAILBOX = re.compile(r"(?:[^<>]*<)?([^@\s<>]+@[^@\s<>]+)>?")


def _is_whole(value: Any, low: int, high: int | None = None) -> bool:
    """An int (not a bool, which YAML also gives for yes/no) from ``low`` to ``high``."""
    return (not isinstance(value, bool) and isinstance(value, int) and value >= low
            and (high is None or value <= high))


def _is_positive(value: Any) -> bool:
    """A number greater than 0 (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def _is_mailbox(value: str) -> bool:
    """``digest@example.org`` or ``AI Digest <digest@example.org>``. (A regex rather than
    email.utils: config loading is on the path of every no-change rebuild.)"""
    return bool(_MAILBOX.fullmatch(value.strip()))


def _topic_definitions(value: Any, here: Path, fail: Any) -> _TopicsFound:
    """``topics:`` is a folder or file of definitions (Smartable's ``topics/*.yaml``), or a
    list of definitions and paths. Returns the definitions, the files of a folder that
    were skipped, and notes on the files (a key given twice); anything else wrong (a
    missing path, a bad inline definition, a file named on its own) is the config's error."""
    entries = value if isinstance(value, list) else [value]
    topics: list[Topic] = []
    skipped: list[RecordError] = []
    notes: list[RecordNotice] = []
    defined: dict[str, Path | None] = {}  # slug -> the file defining it (None: the config itself)
    for entry in entries:
        defined.update((t.slug, defined.get(t.slug)) for t in topics)
        if isinstance(entry, Mapping):
            topics.append(topic_from_definition(entry, fail))
        elif isinstance(entry, str):
            path = here / Path(entry).expanduser()
            if path.is_dir():
                found, errors = _topics_from_folder(path, fail, defined, notes)
                topics.extend(found)
                skipped.extend(errors)
            else:
                try:
                    topics.extend(topics_from_file(path, notes))
                except RecordError as e:  # named on its own: the config's error
                    raise fail(str(e)) from e
        else:
            raise fail("expected a folder, a file or a list of topic definitions")
    slugs = [t.slug for t in topics]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    if dupes:
        raise fail(f"topic {dupes[0]!r} is defined more than once")
    return tuple(topics), tuple(skipped), tuple(notes)


def _topics_from_folder(
    folder: Path, fail: Any, defined: dict[str, Path | None], notes: list[RecordNotice]
) -> tuple[list[Topic], list[RecordError]]:
    """Every ``*.yaml``/``*.yml`` file of ``folder``, in name order. One file that cannot
    be used costs its own topics only: it is skipped with the reason, as a bad record is.

    That includes a file defining a topic already defined (``defined``: slug -> the file
    that did, None for the config itself): the first definition stands, in name order,
    rather than one copied file stopping the whole build."""
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
    except OSError as e:
        raise fail(f"cannot read {folder}: {e.strerror or e}") from e
    topics: list[Topic] = []
    skipped: list[RecordError] = []
    for file in files:
        try:
            if file.exists() and not file.is_file():  # a FIFO would block the build for good
                raise RecordError(file, "cannot read: not a regular file")
            noted: list[RecordNotice] = []
            found = topics_from_file(file, noted)
            _check_new(file, found, defined)
        except RecordError as e:
            skipped.append(e)
            continue
        topics.extend(found)
        notes.extend(noted)
        defined.update((t.slug, file) for t in found)
    return topics, skipped


def _check_new(file: Path, found: list[Topic], defined: dict[str, Path | None]) -> None:
    """Raise RecordError naming ``file`` if it defines a topic twice or one already defined."""
    slugs: set[str] = set()
    for topic in found:
        if topic.slug in slugs:
            raise RecordError(file, f"defines topic {topic.slug!r} more than once")
        slugs.add(topic.slug)
        if topic.slug in defined:
            first = defined[topic.slug]
            where = f"in {first}" if first is not None else "in the config"
            raise RecordError(file, f"topic {topic.slug!r} is already defined {where}")


def topics_from_file(file: Path, notes: list[RecordNotice] | None = None) -> list[Topic]:
    """The definitions in one topic file: a mapping, or a list of them. Raises RecordError
    naming the file for anything it cannot use; adds to ``notes`` what it used with a note
    (a key given twice: the last value stands, as for a record)."""
    try:
        raw, duplicates = read_yaml_noting(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise RecordError(file, f"cannot read: {e.strerror or e}") from e
    except ValueError as e:  # not YAML, not UTF-8, or more than one document
        raise RecordError(file, f"not valid YAML: {_first_line(e)}") from e
    if notes is not None:
        notes.extend(RecordNotice(file, note) for note in fastyaml.duplicate_notes(duplicates))
    topics: list[Topic] = []
    for entry in raw if isinstance(raw, list) else [raw]:
        if not isinstance(entry, Mapping):
            raise RecordError(file, "expected a topic definition (a mapping)")
        topics.append(topic_from_definition(entry, lambda reason, f=file: RecordError(f, reason)))
    return topics


def topic_from_definition(raw: Mapping[str, Any], fail: Any) -> Topic:
    """One definition in Smartable's taxonomy format; extra keys (hashtags, services) are
    ignored."""
    from feeds.normalise import MAX_TOPIC_LENGTH, Notes, clean_text, slugify

    # Cleaned as a record's text is: the name and description reach the OPML list, the
    # index and every feed, which cannot carry controls or lone surrogates ("\uD800").
    ident, ignored = raw.get("_id"), Notes()
    name = clean_text(raw.get("name"), "name", ignored)
    if not name:
        raise fail(f"topic definition {ident or raw!r} has no name")
    if len(name) > MAX_TOPIC_LENGTH:  # as a record's topic: a label, not a page in the OPML list
        raise fail(f"topic name {name[:40]!r}… is longer than {MAX_TOPIC_LENGTH} characters")

    slug = slugify(ident if isinstance(ident, str) and ident.strip() else name)
    aliases = tuple(
        a.strip() for a in (ident, raw.get("shortname")) if isinstance(a, str) and a.strip()
    )
    parent = raw.get("parent")
    keywords = raw.get("keywords") or ()
    from feeds.model import Topic

    return Topic(
        slug=slug,
        name=name,
        parent=parent.strip() if isinstance(parent, str) and parent.strip() else None,
        description=clean_text(str(raw.get("description") or ""), "description", ignored) or "",
        keywords=tuple(str(k) for k in keywords) if isinstance(keywords, list) else (),
        aliases=aliases,
    )


def read_yaml(text: str) -> Any:
    """The document in ``text`` as ``yaml.safe_load`` reads it, read by
    :mod:`feeds.fastyaml` when it is in its plain subset: every command reads the config,
    and then need not import PyYAML. Malformed YAML raises ValueError.

    Empty documents are no documents: Smartable's own topic files often end with a ``---``
    line, which starts an empty second one. A second document that holds anything is an
    error, since one of the two would be silently ignored."""
    return read_yaml_noting(text)[0]


def read_yaml_noting(text: str) -> tuple[Any, list[str]]:
    """:func:`read_yaml`, and the keys the document gives twice (the last value stands)."""
    try:
        return fastyaml.load(text), []  # it steps aside on a key given twice
    except fastyaml.Unsupported:
        pass
    import yaml

    try:
        found, duplicates = fastyaml.load_all_noting(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from e
    documents = [d for d in found if d is not None]
    if len(documents) > 1:
        raise ValueError(f"holds {len(documents)} YAML documents (separated by '---' lines); expected one")
    return (documents[0] if documents else None), duplicates


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
