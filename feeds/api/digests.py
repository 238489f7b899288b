"""Digests: one edition per distinct topic set and period, one message per subscriber, exactly once."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from feeds import state
from feeds.api.builds import Corpus, load_corpus
from feeds.api.subscribers import check_subscription, known_topics
from feeds.config import CADENCES, Config, SmtpConfig
from feeds.deliver import Outcome, SmtpSender, write_outbox
from feeds.digest import (
    Edition,
    edition_day,
    edition_key,
    message_id,
    period,
    plan_edition,
    stories_left_out,
    unsubscribe_token,
)
from feeds.errors import FeedsError
from feeds.model import ArchivedEdition
from feeds.render import jinja_env
from feeds.render.digest import (
    GMAIL_CLIP_BYTES,
    MessageTemplate,
    RenderedEdition,
    render_edition,
    sender_domain,
)
from feeds.render.feeds import (
    render_archive,
)
from feeds.taxonomy import ALL
from feeds.write import write_if_changed


@dataclass
class DigestReport:
    """What a digest run did, per subscriber."""

    sent: list[str] = field(default_factory=list)  # addresses the server accepted
    written: list[str] = field(default_factory=list)  # .eml paths under out/
    failed: list[str] = field(default_factory=list)  # "address: 550 reason" (permanent)
    deferred: list[str] = field(default_factory=list)  # "address: 451 reason" (next run retries)
    no_news: list[str] = field(default_factory=list)  # addresses with no new stories
    already: list[str] = field(default_factory=list)  # addresses the ledger has for this edition
    web_copies: list[str] = field(default_factory=list)  # web copy paths under out/
    stopped: bool = False  # asked to stop before everyone was handled


def digest_secret(config: Config, engine: Engine) -> str:
    return config.secret or state.secret(engine)


def unsubscribe_url(config: Config, token: str) -> str:
    return f"{config.base_url}unsubscribe?token={token}"


class _EditionMaker:
    """Plans and renders each distinct edition once: subscribers who share topics, cadence
    and period share the work, whatever their number.

    With an ``engine``, each edition's web copy is published: written under
    ``out/newsletter/`` and recorded for the archive. Without one (a preview, a test
    message) nothing is published."""

    def __init__(self, config: Config, corpus: Corpus, out: Path, engine: Engine | None) -> None:
        self.config, self.corpus, self.out, self.engine = config, corpus, out, engine
        self.zone = ZoneInfo(config.timezone)
        self.env = jinja_env()
        self.cache: dict[tuple[object, ...], tuple[Edition, RenderedEdition | None]] = {}
        self.memberships = {a.id: corpus.taxonomy.feeds_for(a) for a in corpus.articles}
        self.templates: dict[int, MessageTemplate] = {}
        self.web_copies: list[str] = []

    def make(self, topics: tuple[str, ...], cadence: str, start: datetime, end: datetime) -> tuple[Edition, RenderedEdition | None]:
        key = (topics, cadence, start, end)
        if key not in self.cache:
            self.cache[key] = self._make(topics, cadence, start, end)
        return self.cache[key]

    def _make(self, topics: tuple[str, ...], cadence: str, start: datetime, end: datetime) -> tuple[Edition, RenderedEdition | None]:
        full = self.plan(topics, cadence, start, end)
        if full.is_empty:
            return full, None
        edition, personal = self._fit(full)
        if self.engine is not None:
            self._write_web_copy(full, self.engine)
        return edition, personal

    def plan(self, topics: Sequence[str], cadence: str, start: datetime, end: datetime,
             per_topic: int | None = None) -> Edition:
        return plan_edition(
            self.corpus.articles, self.corpus.taxonomy, topics, cadence=cadence, start=start,
            end=end, zone=self.zone, half_life=self.config.half_life,
            per_topic=per_topic or self.config.digest_items_per_topic,
            max_per_provider=self.config.max_items_per_provider, memberships=self.memberships,
        )

    def _fit(self, full: Edition) -> tuple[Edition, RenderedEdition]:
        """The email of ``full`` with as many stories per topic as Gmail shows unclipped
        (it clips longer HTML, hiding the footer and its unsubscribe link). A trimmed
        email says how many stories it left out and links to the web copy, which has
        them all."""
        web_url = self.config.base_url + full.web_path
        edition, per_topic = full, self.config.digest_items_per_topic
        while True:
            personal = self.render(edition, web_url, personal=True, left_out=stories_left_out(full, edition))
            if len(personal.html.encode()) <= GMAIL_CLIP_BYTES * 0.95 or per_topic == 1:
                return edition, personal
            per_topic -= 1
            edition = self.plan(full.topics, full.cadence, full.start, full.end, per_topic)

    def template(self, rendered: RenderedEdition, *, list_id: str) -> MessageTemplate:
        """The edition's email, composed once for everyone who gets it."""
        key = id(rendered)
        if key not in self.templates:
            self.templates[key] = MessageTemplate(rendered, mail_from=self.config.mail_from,
                                                  reply_to=self.config.reply_to, list_id=list_id)
        return self.templates[key]

    def render(self, edition: Edition, web_url: str | None, *, personal: bool, left_out: int = 0) -> RenderedEdition:
        return render_edition(
            self.env, edition, site_title=self.config.title, language=self.config.language,
            zone=self.zone, web_url=web_url, archive_url=self.config.base_url + "newsletter/",
            personal=personal, left_out=left_out,
        )

    def _write_web_copy(self, edition: Edition, engine: Engine) -> None:
        if edition.start != edition.end - CADENCES[edition.cadence]:
            return  # a shortened catch-up period: the standard edition is the public one
        web = self.render(edition, None, personal=False)
        write_if_changed(self.out, edition.web_path + "index.html", web.html.encode())
        state.record_edition(engine, ArchivedEdition(
            path=edition.web_path, date=edition.day.isoformat(), topics=edition.topics,
            subject=web.subject, summary=web.preheader, period_end=edition.end,
        ))
        self.web_copies.append(edition.web_path + "index.html")


def digest(
    config: Config,
    *,
    now: datetime,
    date: datetime | None = None,
    send: bool = False,
    cadence: str | None = None,
    out: Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    sender: Callable[[SmtpConfig], SmtpSender] = SmtpSender,
) -> DigestReport:
    """Make this period's edition for every active subscriber (of ``cadence``, if given).

    Without ``send``, each message is written to ``out/outbox/<date>/`` and nothing leaves
    the machine. With ``send``, messages go to the SMTP server, and the ledger records each
    one after the server accepted it: running again sends nothing new, and a run killed
    mid-way resumes with everyone left, the one message in flight at the kill at most
    arriving twice, with the same Message-ID. ``should_stop`` is asked between messages.
    """
    out = out or config.out
    end = date or now
    engine = state.open_state(config.state_db)
    secret = digest_secret(config, engine)
    corpus = load_corpus(config)
    maker = _EditionMaker(config, corpus, out, engine)
    domain = sender_domain(config.mail_from)
    from_address = parseaddr(config.mail_from)[1]
    report = DigestReport()
    people = [s for s in state.list_subscribers(engine, active_only=True)
              if cadence is None or s.cadence == cadence]
    people.sort(key=lambda s: s.id)
    ledgers: dict[str, dict[int, str]] = {}
    previous_ends = state.last_period_ends(engine)

    with contextlib.ExitStack() as stack:
        smtp = stack.enter_context(sender(config.smtp)) if send and people else None
        for person in people:
            if should_stop and should_stop():
                report.stopped = True
                break
            day = edition_day(end, maker.zone)
            key = edition_key(person.cadence, day)
            if key not in ledgers:
                ledgers[key] = state.delivered_editions(engine, key)
            if send and ledgers[key].get(person.id) == "sent":
                report.already.append(person.email)
                continue
            if send and ledgers[key].get(person.id) == "failed":
                report.failed.append(f"{person.email}: refused for good by an earlier run")
                continue
            start, period_end = period(person.cadence, end, previous_ends.get(person.id) if send else None)
            _, rendered = maker.make(person.topics, person.cadence, start, period_end)
            if rendered is None:
                report.no_news.append(person.email)
                continue
            token = unsubscribe_token(secret, person.id, person.email)
            url = unsubscribe_url(config, token)
            template = maker.template(rendered, list_id=f"{config.title} <digest.{domain}>")
            message = template.fill(
                to=person.email, message_id=message_id(secret, person.id, key, domain), date=now,
                unsubscribe_url=url, unsubscribe_mailto=f"mailto:{from_address}?subject=unsubscribe%20{token}",
            )
            if smtp is None:
                report.written.append(write_outbox(out, day.isoformat(), message))
                continue
            outcome = smtp.send(message)
            if outcome.status == "deferred":
                report.deferred.append(f"{person.email}: {outcome.detail}")
                continue
            state.record_delivery(
                engine, subscriber_id=person.id, edition=key, message_id=message.message_id,
                status=outcome.status, period_end=period_end, now=now, detail=outcome.detail or None,
            )
            if outcome.status == "sent":
                report.sent.append(person.email)
            else:
                report.failed.append(f"{person.email}: {outcome.detail}")
    report.web_copies = maker.web_copies
    write_archive(config, engine, out)
    return report


def preview(config: Config, *, now: datetime, topics: Sequence[str] = (), cadence: str = "daily",
            out: Path | None = None) -> tuple[str, Edition]:
    """Render one edition with no subscriber, as its web copy, for checking templates.
    Topics default to every top-level topic. It writes only its own file, under
    ``out/preview/``, and returns its path: a preview is never published (no web copy in
    ``out/newsletter/``, no archive entry, no change to ``newsletter/atom.xml``)."""
    out = out or config.out
    corpus = load_corpus(config)
    slugs = chosen_topics(corpus, topics, cadence)
    maker = _EditionMaker(config, corpus, out, engine=None)
    start, end = period(cadence, now)
    edition = maker.plan(slugs, cadence, start, end)
    if edition.is_empty:
        raise FeedsError(f"no stories between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC for {', '.join(slugs)}")
    path = "preview/" + edition.web_path.removeprefix("newsletter/") + "index.html"
    write_if_changed(out, path, maker.render(edition, None, personal=False).html.encode())
    return path, edition


def chosen_topics(corpus: Corpus, topics: Sequence[str], cadence: str) -> tuple[str, ...]:
    """The slugs of ``topics`` (names or slugs; refused if unknown), or every top-level
    topic when none is given."""
    if topics:
        return check_subscription("preview@example.org", topics, cadence, known_topics(corpus))[1]
    return tuple(slug for slug, t in corpus.taxonomy.topics.items() if t.parent is None) or (ALL,)


@dataclass(frozen=True)
class TestMessage:
    """What ``send_test`` sent: to whom, which edition, and what the server said."""

    to: str
    edition: Edition
    left_out: int  # stories trimmed from the email (the web copy has them)
    outcome: Outcome


# A test message's unsubscribe links: no token, so following them unsubscribes nobody (the
# test recipient may be a real subscriber, or not the subscriber the edition was made for).
TEST_TOKEN = "test-message"


def send_test(
    config: Config,
    *,
    to: str,
    now: datetime,
    date: datetime | None = None,
    subscriber: str | None = None,
    topics: Sequence[str] = (),
    cadence: str | None = None,
    sender: Callable[[SmtpConfig], SmtpSender] = SmtpSender,
) -> TestMessage:
    """Send one real edition by SMTP to ``to``: ``subscriber``'s (their topics and
    cadence) or one for ``topics`` (default: every top-level topic), for the period
    ending at ``date``. Its unsubscribe links are inert. Nothing is recorded: not the
    ledger, not the editions table, not the archive, and no web copy is written."""
    end = date or now
    corpus = load_corpus(config)
    engine = state.open_state(config.state_db)
    if subscriber is not None:
        person = _find_subscriber(engine, subscriber)
        slugs, cadence = person.topics, cadence or person.cadence
    else:
        cadence = cadence or "daily"
        slugs = chosen_topics(corpus, topics, cadence)
    address = check_subscription(to, slugs, cadence, known_topics(corpus))[0]
    maker = _EditionMaker(config, corpus, config.out, engine=None)
    start, period_end = period(cadence, end)
    edition, rendered = maker.make(slugs, cadence, start, period_end)
    if rendered is None:
        raise FeedsError(f"no stories between {start:%Y-%m-%d %H:%M} and {period_end:%Y-%m-%d %H:%M} UTC "
                         f"for {', '.join(slugs)}: nothing to send")
    domain = sender_domain(config.mail_from)
    template = maker.template(rendered, list_id=f"{config.title} <digest.{domain}>")
    message = template.fill(  # a Message-ID of its own: never the one a subscriber's copy has
        to=address, message_id=f"<test.{edition.key}.{now:%Y%m%dT%H%M%S%f}@{domain}>", date=now,
        unsubscribe_url=unsubscribe_url(config, TEST_TOKEN),
        unsubscribe_mailto=f"mailto:{parseaddr(config.mail_from)[1]}?subject=unsubscribe%20{TEST_TOKEN}",
    )
    with sender(config.smtp) as smtp:
        outcome = smtp.send(message)
    full = maker.plan(slugs, cadence, start, period_end)
    return TestMessage(address, edition, stories_left_out(full, edition), outcome)


def _find_subscriber(engine: Engine, address: str) -> state.Subscriber:
    wanted = address.strip().lower()
    for person in state.list_subscribers(engine):
        if person.email == wanted:
            return person
    raise FeedsError(f"no subscriber {address!r} (see feeds subscribers list)")


def write_archive(config: Config, engine: Engine, out: Path) -> None:
    """``out/newsletter/atom.xml``: every edition's web copy, newest first."""
    write_if_changed(out, "newsletter/atom.xml", render_archive(
        state.list_editions(engine), title=f"{config.title}: digest archive",
        base_url=config.base_url, language=config.language))
