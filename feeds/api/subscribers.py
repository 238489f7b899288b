"""Subscribers: checked addresses and topics in the state database."""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from feeds import state
from feeds.api.builds import Corpus, load_corpus
from feeds.config import CADENCES, Config
from feeds.errors import FeedsError
from feeds.normalise import slugify
from feeds.taxonomy import ALL


class SubscriberError(FeedsError):
    """An address or a topic choice that cannot be used."""


def known_topics(corpus: Corpus) -> dict[str, str]:
    """Slug -> name of every topic a subscriber may choose, ``all`` first."""
    return {ALL: "All topics", **{slug: t.name for slug, t in corpus.taxonomy.topics.items()}}


def check_subscription(email: str, topics: Sequence[str], cadence: str, known: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """The normalised address and topic slugs, or SubscriberError saying what is wrong.

    Addresses are checked by email-validator (syntax only: tests and the daemon must not
    depend on DNS). Topics may be given by slug or name; unknown ones are refused with the
    list of known ones.
    """
    try:
        # Lower-cased whole: providers ignore case in practice, and one person must not
        # become two subscribers by typing a capital.
        address = validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as e:
        raise SubscriberError(f"{email!r} is not a valid e-mail address: {e}") from e
    if cadence not in CADENCES:
        raise SubscriberError(f"cadence {cadence!r}: expected one of {', '.join(CADENCES)}")
    by_name = {name.casefold(): slug for slug, name in known.items()} | {s: s for s in known}
    chosen: list[str] = []
    for topic in topics:
        slug = by_name.get(topic.strip().casefold()) or by_name.get(slugify(topic))
        if slug is None:
            raise SubscriberError(f"unknown topic {topic.strip()!r}; known topics: {', '.join(known)}")
        if slug not in chosen:
            chosen.append(slug)
    if not chosen:
        raise SubscriberError(f"choose at least one topic; known topics: {', '.join(known)}")
    return address, tuple(chosen)


def add_subscriber(config: Config, email: str, topics: Sequence[str], cadence: str, *, now: datetime) -> tuple[state.Subscriber, bool]:
    """Subscribe (or update) ``email``; returns the subscriber and whether they are new."""
    address, slugs = check_subscription(email, topics, cadence, known_topics(load_corpus(config)))
    engine = state.open_state(config.state_db)
    created = state.add_subscriber(engine, address, slugs, cadence, now)
    subscriber = next(s for s in state.list_subscribers(engine) if s.email == address)
    return subscriber, created


@dataclass(frozen=True)
class ImportReport:
    added: int = 0
    updated: int = 0
    errors: tuple[str, ...] = ()  # "people.csv:4: reason"


def import_subscribers(config: Config, path: Path, *, now: datetime) -> ImportReport:
    """Subscribe everyone in a CSV file with columns ``email``, ``topics`` (separated by
    commas, semicolons or spaces) and optionally ``cadence``. A bad row is reported with
    its line number and skipped; the others are imported."""
    known = known_topics(load_corpus(config))
    engine = state.open_state(config.state_db)
    added = updated = 0
    errors: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = {"email", "topics"} - set(reader.fieldnames or ())
            if missing:
                raise SubscriberError(f"{path}: needs the columns email and topics (missing: {', '.join(sorted(missing))})")
            for row in reader:
                line = reader.line_num
                try:
                    topics = [t for t in re.split(r"[,; ]+", row.get("topics") or "") if t]
                    address, slugs = check_subscription(
                        row.get("email") or "", topics, (row.get("cadence") or "daily").strip().lower(), known)
                except SubscriberError as e:
                    errors.append(f"{path}:{line}: {e}")
                    continue
                if state.add_subscriber(engine, address, slugs, (row.get("cadence") or "daily").strip().lower(), now):
                    added += 1
                else:
                    updated += 1
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SubscriberError(f"{path}: cannot read as CSV: {e}") from e
    return ImportReport(added, updated, tuple(errors))


def remove_subscriber(config: Config, email: str) -> bool:
    return state.remove_subscriber(state.open_state(config.state_db), email.strip().lower())


def list_subscribers(config: Config) -> list[state.Subscriber]:
    return state.list_subscribers(state.open_state(config.state_db))
