"""The library API: one function per job, each a run of the stages.

``build`` reads records, ranks them per topic and writes every feed. The CLI and the
scheduler call these; they do not reach into the stages themselves.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.engine import Engine

from feeds import manifest, state
from feeds.cache import load_cached
from feeds.config import Config, SmtpConfig
from feeds.deliver import SmtpSender, write_outbox
from feeds.digest import (
    CADENCES,
    Edition,
    edition_day,
    edition_key,
    message_id,
    period,
    plan_edition,
    unsubscribe_token,
)
from feeds.errors import FeedsError, RecordError
from feeds.load import Loaded, iter_record_paths
from feeds.model import ArchivedEdition, Article
from feeds.normalise import slugify
from feeds.paths import templates_dir
from feeds.render import jinja_env
from feeds.render.digest import (
    GMAIL_CLIP_BYTES,
    MessageTemplate,
    RenderedEdition,
    render_edition,
    sender_domain,
)
from feeds.render.feeds import (
    FeedDoc,
    render_archive,
    render_atom,
    render_json,
    render_opml,
    render_rss,
)
from feeds.render.site import render_index
from feeds.report import BuildReport
from feeds.select import merge_duplicates, select
from feeds.taxonomy import ALL, Taxonomy, build_taxonomy
from feeds.write import write_if_changed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Progress = Callable[[int, int], None]  # (done, total)


def build(
    config: Config,
    *,
    now: datetime,
    seeds: Path | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
    use_cache: bool = True,
    inputs: str | None = None,
) -> BuildReport:
    """Build every topic's RSS, Atom and JSON feed, the OPML list and the index page.

    ``now`` fixes the clock: only articles published by then count, so a past corpus
    ranks as it did then. Output depends only on the records, the config and ``now``:
    the same input gives byte-identical files, and unchanged files are not rewritten.
    With ``use_cache``, a build with nothing new stops early, and only record files that
    changed since the last build are parsed. ``inputs`` is :func:`manifest.fingerprint`'s
    hash when the caller has just taken it.
    """
    out = out or config.out
    seeds = seeds or config.seeds
    if not seeds.is_dir():
        raise FeedsError(f"{seeds}: no such folder of records")
    if inputs is None:  # the caller may have taken it already (the CLI, before importing us)
        inputs, _ = manifest.fingerprint(config, seeds, templates_dir())  # before reading a record
    if use_cache:
        fresh = manifest.check(inputs, out, now)
        if fresh is not None:
            return fresh
    engine = state.open_state(config.state_db) if use_cache else None
    corpus = load_corpus(config, seeds=seeds, progress=progress, cache=engine)
    docs = plan_feeds(config, corpus.taxonomy, corpus.articles, now)
    files = render_site(config, docs)

    written: list[str] = []
    unchanged: list[str] = []
    for relative, data in files.items():
        (written if write_if_changed(out, relative, data) else unchanged).append(relative)
    report = BuildReport(
        records=len(corpus.loaded),
        parsed=corpus.parsed,
        articles=len(corpus.articles),
        duplicates=corpus.duplicates,
        skipped=corpus.skipped,
        notes=tuple(note for item in corpus.loaded for note in item.notes),
        topics=tuple(corpus.taxonomy.topics),
        written=tuple(written),
        unchanged=tuple(unchanged),
    )
    manifest.save(out, inputs=inputs, valid_from=now,
                  valid_until=stable_until(corpus.articles, now, config.max_age),
                  report=report, outputs={name: len(data) for name, data in files.items()})
    return report


def stable_until(articles: Sequence[Article], now: datetime, max_age: timedelta | None) -> datetime | None:
    """The first moment after ``now`` at which the same articles could give other feeds: a
    record dated in the future becomes visible, or an article grows older than
    ``max_age``. None if no such moment comes."""
    moments = [a.published for a in articles if a.published > now]
    if max_age is not None:
        moments += [a.published + max_age + timedelta(microseconds=1)
                    for a in articles if a.published <= now <= a.published + max_age]
    return min(moments, default=None)


@dataclass(frozen=True)
class Corpus:
    """Every record loaded, duplicates merged, and the topics they make."""

    loaded: tuple[Loaded, ...]
    articles: tuple[Article, ...]
    taxonomy: Taxonomy
    parsed: int = 0  # files parsed this time; the rest came from the parse cache

    @property
    def duplicates(self) -> int:
        return sum(1 for item in self.loaded if item.article is not None) - len(self.articles)

    @property
    def skipped(self) -> tuple[RecordError, ...]:
        return tuple(item.error for item in self.loaded if item.error is not None)


def load_corpus(
    config: Config,
    *,
    seeds: Path | None = None,
    progress: Progress | None = None,
    cache: Engine | None = None,
) -> Corpus:
    """Read every record under ``seeds`` (default: the config's), one result per file.
    With a ``cache`` (the state database), only files that changed are parsed again."""
    seeds = seeds or config.seeds
    try:
        paths = iter_record_paths(seeds)
    except FileNotFoundError as e:
        raise FeedsError(f"{seeds}: no such folder of records") from e
    loaded, parsed = load_cached(cache, seeds, paths, config.max_record_bytes, progress)
    articles = merge_duplicates([i.article for i in loaded if i.article is not None], config.half_life)
    return Corpus(tuple(loaded), tuple(articles), build_taxonomy(config.topics, articles), parsed)


def plan_feeds(
    config: Config, taxonomy: Taxonomy, articles: Sequence[Article], now: datetime
) -> list[FeedDoc]:
    """One FeedDoc per topic (sub-topics' articles included), ``all`` first, then by name."""
    members: dict[str, list[Article]] = {slug: [] for slug in taxonomy.topics}
    for article in articles:
        for slug in taxonomy.feeds_for(article):
            members[slug].append(article)
    fallback = max((a.published for a in articles if a.published <= now), default=EPOCH)

    def doc(slug: str, name: str, description: str, pool: Sequence[Article]) -> FeedDoc:
        stories = select(
            pool,
            now=now,
            half_life=config.half_life,
            limit=config.items_per_feed,
            max_per_provider=config.max_items_per_provider,
            max_age=config.max_age,
        )
        return FeedDoc(
            slug=slug,
            name=name,
            title=f"{config.title}: {name}",
            description=description,
            base_url=config.base_url,
            language=config.language,
            stories=stories,
            # From the newest item, never the clock, so rebuilds are byte-identical.
            updated=max((s.lead.published for s in stories), default=fallback),
        )

    docs = [doc(ALL, "All topics", config.description, articles)]
    for slug, topic in sorted(taxonomy.topics.items(), key=lambda kv: (kv[1].name.casefold(), kv[0])):
        description = topic.description or f"The best {topic.name} stories, ranked by quality and recency."
        docs.append(doc(slug, topic.name, description, members[slug]))
    return docs


def render_site(config: Config, docs: Sequence[FeedDoc]) -> dict[str, bytes]:
    """Every output file, by its path under ``out/``."""
    files: dict[str, bytes] = {}
    for doc in docs:
        files[f"topics/{doc.slug}/rss.xml"] = render_rss(doc)
        files[f"topics/{doc.slug}/atom.xml"] = render_atom(doc)
        files[f"topics/{doc.slug}/feed.json"] = render_json(doc)
    updated = max((d.updated for d in docs), default=EPOCH)
    files["feeds.opml"] = render_opml(docs, title=config.title, updated=updated)
    files["index.html"] = render_index(
        jinja_env(), docs, title=config.title, description=config.description,
        language=config.language, updated=updated,
    )
    return files


# --------------------------------------------------------------------------- subscribers


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


# ---------------------------------------------------------------------------- digests


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
    and period share the work, whatever their number."""

    def __init__(self, config: Config, corpus: Corpus, out: Path, engine: Engine) -> None:
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
        per_topic = self.config.digest_items_per_topic
        while True:
            edition = plan_edition(
                self.corpus.articles, self.corpus.taxonomy, topics, cadence=cadence, start=start,
                end=end, zone=self.zone, half_life=self.config.half_life, per_topic=per_topic,
                max_per_provider=self.config.max_items_per_provider, memberships=self.memberships,
            )
            if edition.is_empty:
                return edition, None
            web_url = self.config.base_url + edition.web_path
            personal = self._render(edition, web_url, personal=True)
            # Gmail clips longer HTML, hiding the footer and its unsubscribe link.
            if len(personal.html.encode()) <= GMAIL_CLIP_BYTES * 0.95 or per_topic == 1:
                break
            per_topic -= 1
        self._write_web_copy(edition)
        return edition, personal

    def template(self, rendered: RenderedEdition, *, list_id: str) -> MessageTemplate:
        """The edition's email, composed once for everyone who gets it."""
        key = id(rendered)
        if key not in self.templates:
            self.templates[key] = MessageTemplate(rendered, mail_from=self.config.mail_from,
                                                  reply_to=self.config.reply_to, list_id=list_id)
        return self.templates[key]

    def _render(self, edition: Edition, web_url: str | None, *, personal: bool) -> RenderedEdition:
        return render_edition(
            self.env, edition, site_title=self.config.title, language=self.config.language,
            zone=self.zone, web_url=web_url, archive_url=self.config.base_url + "newsletter/",
            personal=personal,
        )

    def _write_web_copy(self, edition: Edition) -> None:
        if edition.start != edition.end - CADENCES[edition.cadence]:
            return  # a shortened catch-up period: the standard edition is the public one
        web = self._render(edition, None, personal=False)
        write_if_changed(self.out, edition.web_path + "index.html", web.html.encode())
        state.record_edition(self.engine, ArchivedEdition(
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
    """Render one edition with no subscriber (the web copy), for the archive and for
    checking templates. Topics default to every top-level topic."""
    out = out or config.out
    corpus = load_corpus(config)
    known = known_topics(corpus)
    if topics:
        _, slugs = check_subscription("preview@example.org", topics, cadence, known)
    else:
        slugs = tuple(slug for slug, t in corpus.taxonomy.topics.items() if t.parent is None) or (ALL,)
    engine = state.open_state(config.state_db)
    maker = _EditionMaker(config, corpus, out, engine)
    start, end = period(cadence, now)
    edition, rendered = maker.make(slugs, cadence, start, end)
    if rendered is None:
        raise FeedsError(f"no stories between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC for {', '.join(slugs)}")
    write_archive(config, engine, out)
    return edition.web_path + "index.html", edition


def write_archive(config: Config, engine: Engine, out: Path) -> None:
    """``out/newsletter/atom.xml``: every edition's web copy, newest first."""
    write_if_changed(out, "newsletter/atom.xml", render_archive(
        state.list_editions(engine), title=f"{config.title}: digest archive",
        base_url=config.base_url, language=config.language))
