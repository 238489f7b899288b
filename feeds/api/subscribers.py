"""Subscribers: checked addresses and topics in the state database."""

from __future__ import annotations

import csv
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.parser import HeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine

from feeds import state
from feeds.api.builds import Corpus, load_corpus
from feeds.config import CADENCES, Config, missing_state_db
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
        address = normalised_address(email)
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


def normalised_address(email: str) -> str:
    """The one form an address is stored in: email-validator's (a Unicode domain, NFC),
    lower-cased whole: providers ignore case in practice, and one person must not become
    two subscribers by typing a capital. EmailNotValidError if it is no address."""
    return validate_email(email.strip(), check_deliverability=False).normalized.lower()


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
    if existing.email != address:  # an erased person, recognised by the keyed hash
        return _subscribe_erased(engine, address, slugs, cadence, now=now, erased=existing,
                                 reactivate=reactivate, source=source)
    if existing.status == state.UNCONFIRMED:
        # Signed up on the web but not confirmed: the operator's (or an import's) say is
        # the confirmation, as for anyone they add.
        state.add_subscriber(engine, address, slugs, cadence, now, source=source)
        state.set_status(engine, existing.id, state.ACTIVE, source=source, now=now, reason="added by the operator")
        return Subscription(_fresh(engine, address), ADDED)
    # A paused subscriber has not left: their choices are updated and their pause kept.
    receiving = existing.status in (state.ACTIVE, state.PAUSED)
    if not receiving and not reactivate:
        return Subscription(existing, NOT_REACTIVATED, how_they_left(engine, existing))
    changed = (existing.topics, existing.cadence) != (slugs, cadence)
    if changed:
        state.add_subscriber(engine, address, slugs, cadence, now, source=source)
    if not receiving:
        state.set_status(engine, existing.id, state.ACTIVE, source="operator", now=now,
                         reason="reactivated by the operator")
        return Subscription(_fresh(engine, address), REACTIVATED)
    return Subscription(_fresh(engine, address) if changed else existing, UPDATED if changed else UNCHANGED)


def _subscribe_erased(engine: Engine, address: str, slugs: tuple[str, ...], cadence: str, *, now: datetime,
                      erased: state.Subscriber, reactivate: bool, source: str) -> Subscription:
    """Subscribing an address that was erased. Erased while subscribed: they are new again
    (erasure forgot them; it did not refuse mail), on the same row so the ledger still
    knows what they were sent. Erased after leaving: they stay gone, as anyone who left,
    unless ``reactivate``."""
    if erased.status in state.LEFT and not reactivate:
        left = f"{how_they_left(engine, erased)}, then erased"
        return Subscription(replace(erased, email=address), NOT_REACTIVATED, left)
    state.restore_erased(engine, erased.id, address, slugs, cadence, now,
                         source="operator" if erased.status in state.LEFT else source)
    return Subscription(_fresh(engine, address), REACTIVATED if erased.status in state.LEFT else ADDED)


def how_they_left(engine: Engine, person: state.Subscriber) -> str:
    """``unsubscribed (one-click)``: the status and the source of the change that made it."""
    changes = [c for c in state.status_history(engine, person.id)
               if c.status == person.status and c.source != "erase"]  # erasing is not how they left
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
    return subscribe(engine, address, slugs, cadence, now=now, existing=find_person(config, engine, address),
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
    key = _erased_keys(config, engine)
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
                known_as = people.get(address) or people.get(key(address))
                done = subscribe(engine, address, slugs, cadence, now=now, existing=known_as,
                                 reactivate=reactivate, source="import")
                people[address] = done.subscriber
                if done.outcome in (ADDED, REACTIVATED):
                    people.pop(key(address), None)  # an erased row given its address back
                counts[done.outcome] += 1
                if done.outcome == NOT_REACTIVATED:
                    left.append(done.describe())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SubscriberError(f"{path}: cannot read as CSV: {e}", path) from e
    return ImportReport(counts[ADDED], counts[UPDATED], counts[UNCHANGED], counts[REACTIVATED],
                        tuple(left), tuple(errors))


def remove_subscriber(config: Config, email: str) -> bool:
    if missing_state_db(config.state_db):  # nobody to remove, and no database to make
        return False
    return state.remove_subscriber(state.open_state(config.state_db), email.strip().lower())


def list_subscribers(config: Config) -> list[state.Subscriber]:
    return state.list_subscribers(state.open_state(config.state_db))


def list_histories(config: Config) -> list[tuple[state.Subscriber, list[state.StatusChange]]]:
    """Every subscriber, by address, with their status history, oldest change first. No
    state database yet: nobody (and none is created by looking)."""
    if missing_state_db(config.state_db):
        return []
    engine = state.open_state(config.state_db)
    return [(person, state.status_history(engine, person.id)) for person in state.list_subscribers(engine)]


def describe_status(person: state.Subscriber) -> str:
    """``active``, ``paused until 2020-06-25``, ``bounced: 550 5.1.1 User unknown``."""
    if person.status == state.PAUSED and person.paused_until is not None:
        return f"paused until {person.paused_until.isoformat()}"
    return f"{person.status}: {person.status_reason}" if person.status_reason and not person.active else person.status


# ------------------------------------------------------------------ their data: export, erase

ERASED_PREFIX = state.ERASED_PREFIX


def erased_key(secret: str, address: str) -> str:
    """What an erased address is kept as: ``erased:`` and its HMAC-SHA256 under the state
    secret, so the address is not in clear but the same address is recognised when added
    or signing up again. Without the secret nobody can test guesses against it."""
    return ERASED_PREFIX + hmac.new(secret.encode(), f"erase:{address}".encode(), hashlib.sha256).hexdigest()


def _erased_keys(config: Config, engine: Engine) -> Callable[[str], str]:
    from feeds.api.digests import digest_secret  # the secret the tokens use

    secret = digest_secret(config, engine)
    return lambda address: erased_key(secret, address)


def find_person(config: Config, engine: Engine, address: str) -> state.Subscriber | None:
    """The subscriber with this (normalised) address, or the erased row it was, if any."""
    found = state.find_subscriber(engine, address)
    return found or state.find_subscriber(engine, _erased_keys(config, engine)(address))


def _address(email: str) -> str:
    """An address given to export or erase, or found in a mail's To, in the form it is
    stored in (:func:`normalised_address`: any case, a punycode or Unicode domain, any
    Unicode normalisation); text that is no address, stripped and lower-cased."""
    try:
        return normalised_address(email)
    except EmailNotValidError:
        return email.strip().lower()


def _existing_state(config: Config, email: str) -> Engine:
    """The state database, to look ``email`` up in; SubscriberError, naming the file looked
    for, if there is none yet: looking someone up must not create it."""
    missing = missing_state_db(config.state_db)
    if missing:
        raise SubscriberError(f"{email.strip()} is not a subscriber: no state database yet at {missing}", email)
    return state.open_state(config.state_db)


def _person(config: Config, engine: Engine, email: str) -> state.Subscriber:
    person = find_person(config, engine, _address(email))
    if person is None:
        raise SubscriberError(f"{email.strip()} is not a subscriber (nor an erased one)", email)
    return person


def export_subscriber(config: Config, email: str) -> dict[str, Any]:
    """Everything held about one person, as JSON-ready data: their row, its status history
    and every ledger row (under their table names), anything else any table keys to them,
    and the digest files in ``out/outbox/`` addressed to them. SubscriberError if unknown."""
    engine = _existing_state(config, email)
    person = _person(config, engine, email)
    held = state.held_about(engine, person.id, person.email)
    return {
        "email": _address(email),
        "erased": person.email != _address(email),
        "subscriber": held.pop("subscribers")[0],
        "status_history": held.pop("subscriber_events", []),
        "deliveries": held.pop("deliveries", []),
        "other": held,
        "outbox_files": [str(path) for path in outbox_files(config.out, _address(email))],
    }


def erase_subscriber(config: Config, email: str, *, now: datetime) -> state.Subscriber:
    """Erase one person (see :func:`feeds.state.erase_subscriber` for what is kept) and
    delete the digest files in ``out/outbox/`` addressed to them; the row as it now is.
    SubscriberError if unknown. Erasing again changes nothing."""
    engine = _existing_state(config, email)
    person = _person(config, engine, email)
    address = _address(email)
    if person.email == address:
        state.erase_subscriber(engine, person.id, address, _erased_keys(config, engine)(address), now)
    state.drop_old_pages(engine)
    for path in outbox_files(config.out, address):
        path.unlink(missing_ok=True)
    erased = state.get_subscriber(engine, person.id)
    assert erased is not None, person.id  # kept, by design
    return erased


def outbox_files(out: Path, *addresses: str) -> list[Path]:
    """The ``.eml`` files under ``out/outbox/`` whose To is one of ``addresses`` (headers
    only read, each file once however many addresses)."""
    wanted = {_address(address) for address in addresses}
    parser = HeaderParser(policy=default_policy)
    found = []
    for path in sorted((out / "outbox").glob("*/*.eml")):
        try:
            to = parser.parsestr(_header_block(path)).get("To")
        except OSError:
            continue
        if any(_address(mailbox.addr_spec) in wanted for mailbox in getattr(to, "addresses", ())):
            found.append(path)
    return found


def _header_block(path: Path) -> str:
    """A mail file's headers as text. Decoded as UTF-8 here: a SMTPUTF8 mail has its To in
    raw UTF-8 (RFC 6532), which the bytes parser would keep as undecodable surrogates."""
    lines = []
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                break
            lines.append(line)
    return b"".join(lines).decode("utf-8", "replace")
