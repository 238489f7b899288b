"""Digests: one edition per distinct topic set and period, one message per subscriber, exactly once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from feeds import state
from feeds.api.builds import Corpus, load_corpus
from feeds.api.sending import DigestReport as DigestReport  # re-exported: api.DigestReport
from feeds.api.sending import Sending, failure_reason
from feeds.api.subscribers import check_subscription, known_topics
from feeds.config import Config, SmtpConfig
from feeds.deliver import Outcome, SmtpSender, write_outbox
from feeds.digest import (
    Edition,
    edition_day,
    edition_key,
    message_id,
    period,
    plan_edition,
    preferences_token,
    stories_left_out,
    unsubscribe_token,
    verp_sender,
)
from feeds.errors import FeedsError
from feeds.model import ArchivedEdition
from feeds.render import jinja_env
from feeds.render.digest import (
    GMAIL_CLIP_BYTES,
    AddressError,
    MessageTemplate,
    Outgoing,
    RenderedEdition,
    list_id,
    mailbox,
    render_edition,
)
from feeds.render.feeds import (
    render_archive,
)
from feeds.taxonomy import ALL
from feeds.write import remove_leftovers_below, write_if_changed

log = logging.getLogger(__name__)


def digest_secret(config: Config, engine: Engine) -> str:
    return config.secret or state.secret(engine)


def unsubscribe_url(config: Config, token: str) -> str:
    return f"{config.base_url}unsubscribe?token={token}"


def preferences_url(config: Config, token: str) -> str:
    """The preferences page of the subscriber a :func:`feeds.digest.preferences_token` names."""
    return f"{config.base_url}preferences?token={token}"


class EditionMaker:
    """Plans and renders each distinct edition once: subscribers who share topics, cadence
    and period share the work, whatever their number. Used by the inline run and by
    :mod:`feeds.queue` (its planner, and a worker's editions are a subclass).

    With an ``engine``, each edition's web copy is published: written under
    ``out/newsletter/`` and recorded for the archive. Without one (a preview, a test
    message) nothing is published."""

    def __init__(self, config: Config, corpus: Corpus, out: Path, engine: Engine | None) -> None:
        self.config, self.corpus, self.out, self.engine = config, corpus, out, engine
        self.zone = ZoneInfo(config.timezone)
        self.env = jinja_env()
        self.cache: dict[tuple[object, ...], tuple[Edition, RenderedEdition | None]] = {}
        self.use_corpus(corpus)
        self.templates: dict[int, MessageTemplate] = {}
        self.web_copies: list[str] = []
        try:
            self.sender = mailbox(config.mail_from)
            self.reply_to = mailbox(config.reply_to) if config.reply_to else None
        except AddressError as e:
            raise FeedsError(f"mail_from/reply_to: {e}") from e

    def use_corpus(self, corpus: Corpus) -> None:
        """Plan editions from ``corpus`` from now on (a worker reads its records only when
        it must make an edition itself)."""
        self.corpus = corpus
        self.memberships = {a.id: corpus.taxonomy.feeds_for(a) for a in corpus.articles}

    def make(self, topics: tuple[str, ...], cadence: str, start: datetime,
             end: datetime) -> tuple[Edition, RenderedEdition | None]:
        key = (topics, cadence, start, end)
        if key not in self.cache:
            self.cache[key] = self._make(topics, cadence, start, end)
        return self.cache[key]

    def make_rendered(self, topics: tuple[str, ...], cadence: str, start: datetime,
                      end: datetime) -> RenderedEdition | None:
        """The personal rendering of an edition; None when it has no stories."""
        return self.make(topics, cadence, start, end)[1]

    def _make(self, topics: tuple[str, ...], cadence: str, start: datetime,
              end: datetime) -> tuple[Edition, RenderedEdition | None]:
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
        web_url = self.web_url(full)
        edition, per_topic = full, self.config.digest_items_per_topic
        while True:
            personal = self.render(edition, web_url, personal=True, left_out=stories_left_out(full, edition))
            if len(personal.html.encode()) <= GMAIL_CLIP_BYTES * 0.95 or per_topic == 1:
                return edition, personal
            per_topic -= 1
            edition = self.plan(full.topics, full.cadence, full.start, full.end, per_topic)

    def web_url(self, edition: Edition) -> str | None:
        """Where the email links to ``edition``'s web copy (None: it links to none). Here,
        where the web copy is published: by :meth:`make` with an engine, or by the run that
        queued it."""
        return self.config.base_url + edition.web_path

    def template(self, rendered: RenderedEdition, *, list_id: str) -> MessageTemplate:
        """The edition's email, composed once for everyone who gets it."""
        key = id(rendered)
        if key not in self.templates:
            self.templates[key] = MessageTemplate(rendered, mail_from=self.sender, reply_to=self.reply_to,
                                                  list_id=list_id)
        return self.templates[key]

    def render(self, edition: Edition, web_url: str | None, *, personal: bool, left_out: int = 0) -> RenderedEdition:
        return render_edition(
            self.env, edition, site_title=self.config.title, language=self.config.language,
            zone=self.zone, web_url=web_url, archive_url=self.config.base_url + "newsletter/",
            personal=personal, left_out=left_out,
        )

    def _write_web_copy(self, edition: Edition, engine: Engine) -> None:
        """Every sent edition's web copy, since its email links there. A catch-up edition's
        (a shortened period, at a path of its own) is written but not archived: it is one
        subscriber's slice of the day, and the standard edition is the public one."""
        web = self.render(edition, None, personal=False)
        write_if_changed(self.out, edition.web_path + "index.html", web.html.encode())
        self.web_copies.append(edition.web_path + "index.html")
        if edition.is_catch_up:
            return
        state.record_edition(engine, ArchivedEdition(
            path=edition.web_path, date=edition.day.isoformat(), topics=edition.topics,
            subject=web.subject, summary=web.preheader, period_end=edition.end,
        ))


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
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DigestReport:
    """Make this period's edition for every active subscriber (of ``cadence``, if given).

    Without ``send``, each message is written to ``out/outbox/<date>/`` and nothing leaves
    the machine. With ``send``, messages go to the SMTP server and the ledger decides what
    is owed (:mod:`feeds.api.sending`): each (subscriber, edition) is claimed before it is
    sent and marked sent after the server accepted it, so running again sends nothing new,
    concurrent runs split the work, and a run killed mid-way resumes with everyone left, the
    one message in flight at the kill at most arriving twice, with the same Message-ID.
    ``should_stop`` is asked between messages; ``clock`` times claims (``now`` is the run's).
    """
    out = out or config.out
    end = date or now
    engine = state.open_state(config.state_db)
    sweep_leftovers(out)
    maker = EditionMaker(config, load_corpus(config), out, engine)
    letters = Letters(config, maker, digest_secret(config, engine), now)
    # A pause ends when the run meets it (the run is the one that would mail them), so
    # `--date`/`--now` decide it as they decide everything else about the edition.
    resumed = state.end_pauses(engine, edition_day(end, maker.zone), now)
    subscribers = state.list_subscribers(engine)
    people, report = _recipients(subscribers, cadence)
    report.resumed = [f"{p.email}: paused until {p.paused_until}" for p in resumed]
    if send and config.queue.url:
        _queue_all(config, engine, maker, subscribers, people, cadence, end, report)
    elif send:
        run = Sending(engine, config.smtp, end=end, now=now, clock=clock, zone=maker.zone,
                      make_edition=maker.make_rendered, compose=letters.compose,
                      message_id=letters.message_id, report=report)
        people, owed_only = _and_owed(people, subscribers, cadence, run.owed)
        send_run(run, people, sender(config.smtp) if people else None, should_stop, owed_only)
    else:
        _write_outbox(people, end, maker, letters, out, report, should_stop)
    report.web_copies = maker.web_copies
    write_archive(config, engine, out)
    return report


# The digest's folders below out/, and how deep its files sit in each: outbox/<date>/x.eml
# (and outbox/confirmations/, the sign-up's), newsletter/<date>/<topics>/index.html.
DIGEST_FOLDERS = {"outbox": 1, "newsletter": 2}


def sweep_leftovers(out: Path) -> None:
    """Delete the temporary files a killed digest (or sign-up) left in its folders: a
    write is atomic, but a run killed mid-write leaves its hidden ``.x.<pid>.<n>.tmp``."""
    started = time.time()
    for folder, depth in DIGEST_FOLDERS.items():
        for leftover in remove_leftovers_below(out, folder, depth, before=started):
            log.info("removed a killed run's temporary file", extra={"path": str(out / leftover)})


def _recipients(subscribers: Sequence[state.Subscriber],
                cadence: str | None) -> tuple[list[state.Subscriber], DigestReport]:
    """The active subscribers (of ``cadence``, if given) by id, and a report that names the
    paused ones and the others as suppressed."""
    everyone = [s for s in subscribers if cadence is None or s.cadence == cadence]
    people = sorted((s for s in everyone if s.active), key=lambda s: s.id)
    return people, DigestReport(
        suppressed=[s.email for s in everyone if not s.active and s.status != state.PAUSED],
        paused=[f"{s.email}: until {s.paused_until}" for s in everyone if s.status == state.PAUSED])


def _and_owed(people: list[state.Subscriber], subscribers: Sequence[state.Subscriber], cadence: str | None,
              owes: Callable[[state.Subscriber], bool]) -> tuple[list[state.Subscriber], set[int]]:
    """``people`` and, in a run of one ``cadence``, the active subscribers of the others
    whom an earlier run ``owes`` a message (deferred, or claimed by a sender that died), by
    id; and the ids of those, who get that message alone. The weekly run alone would come
    back to them only after ``smtp.retry_for_hours``."""
    owed = [s for s in subscribers if s.active and s.cadence != cadence and owes(s)] if cadence else []
    return sorted(people + owed, key=lambda s: s.id), {s.id for s in owed}


def _queue_all(config: Config, engine: Engine, maker: EditionMaker, subscribers: Sequence[state.Subscriber],
               people: list[state.Subscriber], cadence: str | None, end: datetime, report: DigestReport) -> None:
    """With ``queue.url``: plan the run once and queue it for ``feeds worker`` (see
    :mod:`feeds.queue`), with those an earlier run owes a message, as an inline run does."""
    from feeds.queue import queue_run

    owing = {row.subscriber_id for row in state.open_deliveries(engine)
             if row.status in (state.DEFERRED, state.CLAIMED)} if cadence else set()
    people, owed_only = _and_owed(people, subscribers, cadence, lambda s: s.id in owing)
    queued = queue_run(config, engine, maker, people, owed_only, end=end)
    report.queued, report.batches, report.queued_for_workers = queued.subscribers, queued.batches, True


def send_run(run: Sending, people: Sequence[state.Subscriber], smtp: SmtpSender | None,
              should_stop: Callable[[], bool] | None, owed_only: Set[int] = frozenset()) -> None:
    """The run over ``people``, on one connection (none, with no one to send to); those in
    ``owed_only`` (ids) get only what earlier runs owe them. The inline run sends everyone
    with it, a worker its batch."""
    if smtp is None:
        return
    with smtp as connected:
        run.run(people, connected, should_stop, owed_only)


def _write_outbox(people: Sequence[state.Subscriber], end: datetime, maker: EditionMaker, letters: Letters,
                  out: Path, report: DigestReport, should_stop: Callable[[], bool] | None) -> None:
    """Every active subscriber's message as a file; nothing leaves the machine, and the
    ledger is neither read nor written."""
    day = edition_day(end, maker.zone)
    for person in people:
        if should_stop and should_stop():
            report.stopped = True
            return
        start, period_end = period(person.cadence, end)
        try:
            rendered = maker.make_rendered(person.topics, person.cadence, start, period_end)
            if rendered is None:
                report.no_news.append(person.email)
                continue
            message = letters.compose(person, edition_key(person.cadence, day), rendered)
            report.written.append(write_outbox(out, day.isoformat(), message))
        except Exception as e:  # this subscriber's alone; the others go on
            log.debug("message to %s failed", person.email, exc_info=True)
            report.failed.append(f"{person.email}: {failure_reason(e)}")


class Letters:
    """Composes each subscriber's message: the edition's shared email, with their address,
    Message-ID and unsubscribe links. The inline run and a worker compose with it, so a
    queued message is the inline one."""

    def __init__(self, config: Config, maker: EditionMaker, secret: str, now: datetime) -> None:
        self.config, self.maker, self.secret, self.now = config, maker, secret, now
        # Both from the sender's address in IDNA form, never its display name.
        self.domain = maker.sender.domain or "localhost"
        self.list_id = list_id(config.title, maker.sender)
        self.mailto = quote(maker.sender.addr_spec, safe="@")

    def message_id(self, subscriber_id: int, key: str) -> str:
        return message_id(self.secret, subscriber_id, key, self.domain)

    def compose(self, person: state.Subscriber, key: str, rendered: RenderedEdition) -> Outgoing:
        token = unsubscribe_token(self.secret, person.id, person.email)
        template = self.maker.template(rendered, list_id=self.list_id)
        message = template.fill(
            to=person.email, message_id=self.message_id(person.id, key), date=self.now,
            unsubscribe_url=unsubscribe_url(self.config, token),
            unsubscribe_mailto=f"mailto:{self.mailto}?subject=unsubscribe%20{token}",
            preferences_url=preferences_url(self.config, preferences_token(self.secret, person.id, person.email)),
        )
        # A signed envelope sender per subscriber (VERP): a bounce that quotes nothing of
        # the message still names who it is about (see feeds.inbox).
        return replace(message, sender=verp_sender(self.maker.sender.addr_spec, person.id, person.email,
                                                   self.secret))

    def test_message(self, to: str, edition: Edition, rendered: RenderedEdition) -> Outgoing:
        """A test of ``edition`` for ``to``: a Message-ID of its own (never the one a
        subscriber's copy has) and unsubscribe links that name nobody."""
        return self.maker.template(rendered, list_id=self.list_id).fill(
            to=to, message_id=f"<test.{edition.key}.{self.now:%Y%m%dT%H%M%S%f}@{self.domain}>", date=self.now,
            unsubscribe_url=unsubscribe_url(self.config, TEST_TOKEN),
            unsubscribe_mailto=f"mailto:{self.mailto}?subject=unsubscribe%20{TEST_TOKEN}",
            preferences_url=preferences_url(self.config, TEST_TOKEN),
        )


def preview(config: Config, *, now: datetime, topics: Sequence[str] = (), cadence: str = "daily",
            out: Path | None = None) -> tuple[str, Edition]:
    """Render one edition with no subscriber, as its web copy, for checking templates.
    Topics default to every top-level topic. It writes only its own file, under
    ``out/preview/``, and returns its path: a preview is never published (no web copy in
    ``out/newsletter/``, no archive entry, no change to ``newsletter/atom.xml``)."""
    out = out or config.out
    corpus = load_corpus(config)
    slugs = chosen_topics(corpus, topics, cadence)
    maker = EditionMaker(config, corpus, out, engine=None)
    start, end = period(cadence, now)
    edition = maker.plan(slugs, cadence, start, end)
    if edition.is_empty:
        raise FeedsError(f"no stories between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC "
                         f"for {', '.join(slugs)}")
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


# A test message's unsubscribe and preferences links: no token, so following them reaches nobody (the
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
    maker = EditionMaker(config, corpus, config.out, engine=None)
    start, period_end = period(cadence, end)
    edition, rendered = maker.make(slugs, cadence, start, period_end)
    if rendered is None:
        raise FeedsError(f"no stories between {start:%Y-%m-%d %H:%M} and {period_end:%Y-%m-%d %H:%M} UTC "
                         f"for {', '.join(slugs)}: nothing to send")
    message = Letters(config, maker, secret="", now=now).test_message(address, edition, rendered)
    with sender(config.smtp) as smtp:
        outcome = smtp.send(message)
    full = maker.plan(slugs, cadence, start, period_end)
    return TestMessage(address, edition, stories_left_out(full, edition), outcome)


def _find_subscriber(engine: Engine, address: str) -> state.Subscriber:
    person = state.find_subscriber(engine, address.strip().lower())
    if person is None:
        raise FeedsError(f"no subscriber {address!r} (see feeds subscribers list)")
    return person


def write_archive(config: Config, engine: Engine, out: Path) -> None:
    """``out/newsletter/atom.xml``: every edition's web copy, newest first."""
    write_if_changed(out, "newsletter/atom.xml", render_archive(
        state.list_editions(engine), title=f"{config.title}: digest archive",
        base_url=config.base_url, language=config.language))
