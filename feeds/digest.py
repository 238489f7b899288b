"""What goes into a digest edition, and the tokens and ids that make delivery exactly-once.

Pure: the period's end, the articles and the secret are arguments. An edition has one
section per chosen topic, each ranked by the same selector as the feeds; a story appears
once in the whole edition, in the section where it ranks best.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from email.utils import parseaddr

from feeds.config import CADENCES
from feeds.model import Article, Story, Topic
from feeds.select import select
from feeds.taxonomy import ALL, Taxonomy

ALL_TOPICS = Topic(ALL, "All topics")


@dataclass(frozen=True, slots=True)
class Section:
    topic: Topic
    stories: tuple[Story, ...]


@dataclass(frozen=True, slots=True)
class Edition:
    """One edition's content. Subscribers with the same topics, cadence and period share
    it: it is rendered once and personalised only in its links."""

    day: date  # the edition's date, in the configured time zone
    cadence: str
    start: datetime  # exclusive
    end: datetime  # inclusive
    topics: tuple[str, ...]  # slugs, in the subscriber's order
    sections: tuple[Section, ...]
    # Every topic the subscriber chose that the taxonomy knows, in their order, news or
    # not: the header and footer name these, not only the sections that had stories.
    chosen: tuple[Topic, ...] = ()

    @property
    def stories(self) -> tuple[Story, ...]:
        return tuple(s for section in self.sections for s in section.stories)

    @property
    def is_empty(self) -> bool:
        return not self.stories

    @property
    def key(self) -> str:
        """The edition's name in the ledger: one delivery per subscriber and key."""
        return edition_key(self.cadence, self.day)

    @property
    def is_catch_up(self) -> bool:
        """A period shortened to start after the subscriber's previous edition (see :func:`period`)."""
        return self.start != self.end - CADENCES[self.cadence]

    @property
    def web_path(self) -> str:
        """Where the web copy lives under ``out/``; "view in browser" links there. A catch-up
        edition gets a folder of its own inside the standard one's: the standard edition of
        the day ranks a longer period and may hold none of the catch-up's stories, and may
        never be made at all."""
        path = f"newsletter/{self.day.isoformat()}/{combo_slug(self.topics, self.cadence)}/"
        if self.is_catch_up:
            path += f"since-{self.start.astimezone(UTC):%Y%m%dT%H%M%SZ}/"
        return path


def edition_key(cadence: str, day: date) -> str:
    return f"{cadence}-{day.isoformat()}"


def combo_slug(topics: Sequence[str], cadence: str = "daily") -> str:
    """A folder name for a set of topics: ``ai+computer-vision``; weekly editions get
    ``-weekly``. Long combinations are shortened with a hash so paths stay short."""
    name = "+".join(sorted(set(topics))) or ALL
    if len(name) > 80:
        name = name[:60].rstrip("+-") + "-" + hashlib.sha256(name.encode()).hexdigest()[:10]
    return name if cadence == "daily" else f"{name}-{cadence}"


def period(cadence: str, end: datetime, previous_end: datetime | None = None) -> tuple[datetime, datetime]:
    """``(start, end]`` of an edition: the last day or week, or since the subscriber's
    previous edition if that is later, so no story is sent twice."""
    start = end - CADENCES[cadence]
    if previous_end is not None and start < previous_end < end:
        start = previous_end
    return start, end


def edition_day(end: datetime, zone: tzinfo) -> date:
    return end.astimezone(zone).date()


def is_due(cadence: str, end: datetime, last_made: datetime | None, zone: tzinfo) -> bool:
    """The cadence promise: a subscriber gets a new edition ending at ``end`` only if their
    last edition (``last_made``, in any status) is a whole cadence of days older, counted in
    edition days so that a daily run at 07:00:01 after one at 07:00:03 still goes out.
    However often a digest runs, a daily subscriber gets at most one edition a day and a
    weekly one at most one in 7 days."""
    if last_made is None:
        return True
    return (edition_day(end, zone) - edition_day(last_made, zone)).days >= CADENCES[cadence].days


def next_due_day(cadence: str, last_made: datetime, zone: tzinfo) -> date:
    """The first edition day :func:`is_due` allows after ``last_made``."""
    return edition_day(last_made, zone) + timedelta(days=CADENCES[cadence].days)


def edition_cadence(key: str) -> str:
    """``weekly-2020-06-18`` -> ``weekly``."""
    return key.split("-", 1)[0]


def plan_edition(
    articles: Sequence[Article],
    taxonomy: Taxonomy,
    topics: Sequence[str],
    *,
    cadence: str,
    start: datetime,
    end: datetime,
    zone: tzinfo,
    half_life: timedelta,
    per_topic: int,
    max_per_provider: int | None = None,
    memberships: Mapping[str, frozenset[str]] | None = None,
) -> Edition:
    """The sections of one edition: the top stories published in ``(start, end]`` for each
    topic, and each story once, in the section where it ranks best (ties: the topic the
    subscriber listed first). A story is known by all its records and the articles they
    name in `related`, so it is not shown again under another of its records."""
    in_period = [a for a in articles if start < a.published <= end]
    if memberships is None:  # article id -> the topic feeds it belongs to; callers may share it
        memberships = {a.id: taxonomy.feeds_for(a) for a in in_period}
    ranked: list[tuple[int, int, Story]] = []
    chosen_topics: list[Topic] = []
    for order, slug in enumerate(dict.fromkeys(topics)):
        topic = ALL_TOPICS if slug == ALL else taxonomy.topics.get(slug)
        if topic is None:
            continue
        chosen_topics.append(topic)
        pool = in_period if slug == ALL else [a for a in in_period if slug in memberships[a.id]]
        stories = select(pool, now=end, half_life=half_life, limit=per_topic, max_per_provider=max_per_provider)
        ranked.extend((rank, order, story) for rank, story in enumerate(stories))

    placed: dict[int, list[Story]] = {}
    shown: set[str] = set()  # ids of the articles of stories placed so far
    named: set[str] = set()  # ids those articles name in `related`
    for _, order, story in sorted(ranked, key=lambda t: (t[0], t[1])):
        articles = (story.lead, *story.also)
        ids = {a.id for a in articles}
        names = {i for a in articles for i in a.related_ids}
        # One story, as the selector folds it: the same article, or one that names (or is
        # named by) an article shown already; a topic may lack the record that led it elsewhere.
        if not (shown.isdisjoint(ids) and named.isdisjoint(ids) and shown.isdisjoint(names)):
            continue
        shown |= ids
        named |= names
        placed.setdefault(order, []).append(story)
    sections = tuple(
        Section(topic, tuple(placed[order]))
        for order, topic in enumerate(chosen_topics) if placed.get(order)
    )
    return Edition(edition_day(end, zone), cadence, start, end, tuple(topics), sections, tuple(chosen_topics))


def stories_left_out(full: Edition, shown: Edition) -> int:
    """How many of ``full``'s stories a trimmed ``shown`` edition leaves out."""
    return len({s.lead.id for s in full.stories} - {s.lead.id for s in shown.stories})


# ------------------------------------------------------------------ tokens and ids


def _mac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def unsubscribe_token(secret: str, subscriber_id: int, email: str) -> str:
    """``<id>.<hmac>``: names the subscriber and proves the link came from us. The address
    is signed too, so a recycled id never honours an old token."""
    return f"{subscriber_id}.{_mac(secret, f'unsubscribe:{subscriber_id}:{email.casefold()}')[:32]}"


def token_subscriber(token: str) -> int | None:
    """The subscriber id a token claims, before checking it; None if it is malformed."""
    match = re.fullmatch(r"(\d{1,12})\.[0-9a-f]{32}", token or "")
    return int(match.group(1)) if match else None


def verify_token(secret: str, token: str, subscriber_id: int, email: str) -> bool:
    return hmac.compare_digest(token, unsubscribe_token(secret, subscriber_id, email))


def preferences_token(secret: str, subscriber_id: int, email: str) -> str:
    """``<id>.<hmac>`` for the preferences page. It never expires (every digest carries
    it) and has a purpose of its own in the HMAC, so it is no unsubscribe token, nor one
    of sign-up's confirmation tokens; the address is signed, as in :func:`unsubscribe_token`."""
    return f"{subscriber_id}.{_mac(secret, f'preferences:{subscriber_id}:{email.casefold()}')[:32]}"


def verify_preferences_token(secret: str, token: str, email_of: Callable[[int], str | None]) -> int | None:
    """The subscriber id a preferences token names if it is genuine, else None.
    ``email_of`` looks up the address the id has now (None: no such subscriber), so a
    token for an erased or recycled id is refused."""
    subscriber_id = token_subscriber(token)
    if subscriber_id is None:
        return None
    email = email_of(subscriber_id)
    if email is None or not hmac.compare_digest(token, preferences_token(secret, subscriber_id, email)):
        return None
    return subscriber_id


def message_id(secret: str, subscriber_id: int, edition: str, domain: str) -> str:
    """The same Message-ID every time this subscriber's edition is sent, so a message
    resent after a crash is recognisably the same message."""
    digest = _mac(secret, f"message:{subscriber_id}:{edition}")[:24]
    return f"<{edition}.{digest}@{domain}>"


# VERP (variable envelope return path): each subscriber's messages go out with their own
# envelope sender, so a bounce names its subscriber even when it quotes nothing of the
# message. The address is signed like the unsubscribe token (over the id and address, so
# a recycled id is not taken for its former owner): a forged bounce changes nothing.
_VERP = re.compile(r"\+bounce-(\d{1,12})-([0-9a-f]{16})@", re.IGNORECASE)


def verp_sender(mail_from: str, subscriber_id: int, email: str, secret: str) -> str:
    """``digest+bounce-<id>-<mac>@news.example.org`` for a From of ``digest@news.example.org``
    (a display name in ``mail_from`` is dropped): the envelope sender (Return-Path) of this
    subscriber's messages."""
    local, _, domain = parseaddr(mail_from)[1].rpartition("@")
    return f"{local}+bounce-{subscriber_id}-{_verp_mac(secret, subscriber_id, email)}@{domain}"


def verp_subscriber(address: str) -> int | None:
    """The subscriber id a VERP address claims (``<...>`` and case are ignored, as MTAs
    may lower-case it), before checking it with :func:`verify_verp`; None if it is not one."""
    match = _VERP.search(address or "")
    return int(match.group(1)) if match else None


def verify_verp(secret: str, address: str, subscriber_id: int, email: str) -> bool:
    match = _VERP.search(address or "")
    if match is None or int(match.group(1)) != subscriber_id:
        return False
    return hmac.compare_digest(match.group(2).lower(), _verp_mac(secret, subscriber_id, email))


def _verp_mac(secret: str, subscriber_id: int, email: str) -> str:
    return _mac(secret, f"bounce:{subscriber_id}:{email.casefold()}")[:16]
