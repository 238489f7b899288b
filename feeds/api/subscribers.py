"""Subscribers: checked addresses and topics in the state database."""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine

from feeds import state
from feeds.api.builds import Corpus, load_corpus
from feeds.config import CADENCES, Config
from feeds.errors import SubscriberError as SubscriberError  # defined there; exported here too
from feeds.normalise import slugify
from feeds.taxonomy import ALL


def known_topics(corpus: Corpus) -> dict[str, str]:
    """Slug -> name of every topic a subscriber may choose, ``all`` first."""
    return {ALL: "All topics", **{slug: t.name for slug, t in corpus.taxonomy.topics.items()}}


LOCAL_PART_OCTETS = 64  # RFC 5321's limit on the part of an address before the @


def check_subscription(email: str, topics: Sequence[str], cadence: str, known: Mapping[str, str],
                       names: Mapping[str, str] | None = None) -> tuple[str, tuple[str, ...]]:
    """The normalised address and topic slugs, or SubscriberError saying what is wrong.

    Addresses are checked by email-validator (syntax only: tests and the daemon must not
    depend on DNS). Topics may be given by slug or name, and, with ``names`` (a taxonomy's
    casefolded name -> slug), by any name a record may use: a definition's ``shortname`` or
    ``_id``. Unknown ones are refused with the list of known ones.
    """
    try:
        # Lower-cased whole: providers ignore case in practice, and one person must not
        # become two subscribers by typing a capital.
        address = validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as e:
        raise SubscriberError(f"{email!r} is not a valid e-mail address: {e}", email) from e
    # email-validator lets a longer one through; SMTP servers refuse it at RCPT (RFC 5321
    # 4.5.3.1.1), so every digest to it would fail. Counted in UTF-8 octets (RFC 6531).
    local = address.rpartition("@")[0]
    if len(local.encode()) > LOCAL_PART_OCTETS:
        raise SubscriberError(f"{email!r} is not a valid e-mail address: the part before the @-sign is "
                              f"{len(local.encode())} octets long, over the {LOCAL_PART_OCTETS} SMTP allows",
                              email)
    if cadence not in CADENCES:
        raise SubscriberError(f"cadence {cadence!r}: expected one of {', '.join(CADENCES)}", cadence)
    by_name = {**(names or {}), **{name.casefold(): slug for slug, name in known.items()}, **{s: s for s in known}}
    chosen: list[str] = []
    for topic in topics:
        slug = by_name.get(topic.strip().casefold()) or by_name.get(slugify(topic))
        if slug is None or slug not in known:
            raise SubscriberError(f"unknown topic {topic.strip()!r}; known topics: {', '.join(known)}",
                                  topic)
        if slug not in chosen:
            chosen.append(slug)
    if not chosen:
        raise SubscriberError(f"choose at least one topic; known topics: {', '.join(known)}")
    return address, tuple(chosen)


def split_topics(text: str) -> list[str]:
    """A CSV cell's topics: separated by commas or semicolons, never spaces, since topic
    names have them ("AI Ethics" is one topic)."""
    return [topic.strip() for topic in re.split(r"[,;]", text) if topic.strip()]


# What subscribing an address did; NOT_REACTIVATED: they left, and nobody said to bring them back.
ADDED, UPDATED, UNCHANGED, REACTIVATED, NOT_REACTIVATED = (
    "added", "updated", "unchanged", "reactivated", "not reactivated")


@dataclass(frozen=True, slots=True)
class Subscription:
    """The outcome of subscribing one address, and the subscriber as they now are."""

    subscriber: state.Subscriber
    outcome: str  # one of ADDED ... NOT_REACTIVATED
    left: str | None = None  # NOT_REACTIVATED: how they left, "unsubscribed (one-click)"

    def describe(self) -> str:
        """``ada@example.org: unsubscribed (one-click); not reactivated (use --reactivate)``"""
        return f"{self.subscriber.email}: {self.left}; not reactivated (use --reactivate)"


def subscribe(engine: Engine, address: str, slugs: tuple[str, ...], cadence: str, *, now: datetime,
              existing: state.Subscriber | None, reactivate: bool = False, source: str = "operator") -> Subscription:
    """Add ``address`` or update their topics and cadence, given who the database has
    (``existing``). Someone who unsubscribed, complained or bounced is left as they are
    unless ``reactivate``: an import after a one-click unsubscribe must not mail them again.
    Reactivating is the operator's explicit act, kept in the subscriber's history."""
    if existing is None:
        state.add_subscriber(engine, address, slugs, cadence, now, source=source)
        return Subscription(_fresh(engine, address), ADDED)
    if existing.status == state.UNCONFIRMED:
        # Signed up on the web but not confirmed: the operator's (or an import's) say is
        # the confirmation, as for anyone they add.
        state.add_subscriber(engine, address, slugs, cadence, now, source=source)
        state.set_status(engine, existing.id, state.ACTIVE, source=source, now=now, reason="added by the operator")
        return Subscription(_fresh(engine, address), ADDED)
    if not existing.active and not reactivate:
        return Subscription(existing, NOT_REACTIVATED, how_they_left(engine, existing))
    changed = (existing.topics, existing.cadence) != (slugs, cadence)
    if changed:
        state.add_subscriber(engine, address, slugs, cadence, now, source=source)
    if not existing.active:
        state.set_status(engine, existing.id, state.ACTIVE, source="operator", now=now,
                         reason="reactivated by the operator")
        return Subscription(_fresh(engine, address), REACTIVATED)
    return Subscription(_fresh(engine, address) if changed else existing, UPDATED if changed else UNCHANGED)


def how_they_left(engine: Engine, person: state.Subscriber) -> str:
    """``unsubscribed (one-click)``: the status and the source of the change that made it."""
    changes = [c for c in state.status_history(engine, person.id) if c.status == person.status]
    return f"{person.status} ({changes[-1].source})" if changes else person.status


def _fresh(engine: Engine, address: str) -> state.Subscriber:
    person = state.find_subscriber(engine, address)
    assert person is not None, address  # written by this process a moment ago
    return person


def add_subscriber(config: Config, email: str, topics: Sequence[str], cadence: str, *, now: datetime,
                   reactivate: bool = False) -> Subscription:
    """Subscribe (or update) ``email``; see :func:`subscribe` for who is left alone."""
    corpus = load_corpus(config)
    address, slugs = check_subscription(email, topics, cadence, known_topics(corpus), corpus.taxonomy.names)
    engine = state.open_state(config.state_db)
    return subscribe(engine, address, slugs, cadence, now=now, existing=state.find_subscriber(engine, address),
                     reactivate=reactivate)


@dataclass(frozen=True)
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    reactivated: int = 0
    not_reactivated: tuple[str, ...] = ()  # Subscription.describe() of each
    errors: tuple[str, ...] = ()  # "people.csv:4: reason"


def import_subscribers(config: Config, path: Path, *, now: datetime, reactivate: bool = False) -> ImportReport:
    """Subscribe everyone in a CSV file with columns ``email``, ``topics`` (separated by
    commas or semicolons) and optionally ``cadence``. A bad row is reported with its line
    number and skipped; the others are imported. People who left are not reactivated
    unless ``reactivate`` (see :func:`subscribe`)."""
    corpus = load_corpus(config)
    known, names = known_topics(corpus), corpus.taxonomy.names
    engine = state.open_state(config.state_db)
    people = {person.email: person for person in state.list_subscribers(engine)}
    counts: Counter[str] = Counter()
    left: list[str] = []
    errors: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = {"email", "topics"} - set(reader.fieldnames or ())
            if missing:
                raise SubscriberError(f"{path}: needs the columns email and topics "
                                      f"(missing: {', '.join(sorted(missing))})", path)
            for row in reader:
                cadence = (row.get("cadence") or "daily").strip().lower()
                try:
                    address, slugs = check_subscription(
                        row.get("email") or "", split_topics(row.get("topics") or ""), cadence, known, names)
                except SubscriberError as e:
                    errors.append(f"{path}:{reader.line_num}: {e}")
                    continue
                done = subscribe(engine, address, slugs, cadence, now=now, existing=people.get(address),
                                 reactivate=reactivate, source="import")
                people[address] = done.subscriber
                counts[done.outcome] += 1
                if done.outcome == NOT_REACTIVATED:
                    left.append(done.describe())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SubscriberError(f"{path}: cannot read as CSV: {e}", path) from e
    return ImportReport(counts[ADDED], counts[UPDATED], counts[UNCHANGED], counts[REACTIVATED],
                        tuple(left), tuple(errors))


def remove_subscriber(config: Config, email: str) -> bool:
    return state.remove_subscriber(state.open_state(config.state_db), email.strip().lower())


def list_subscribers(config: Config) -> list[state.Subscriber]:
    return state.list_subscribers(state.open_state(config.state_db))
