"""Builds: records in, every topic's feeds, the OPML list and the index page out."""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple

from feeds import manifest
from feeds.cache import Entry, Index, Progress, RecordCache, template_cache
from feeds.config import Config
from feeds.errors import FeedsError, RecordError, RecordNotice
from feeds.load import Loaded
from feeds.model import EPOCH, MICROSECOND, Article, Story, Summary
from feeds.paths import templates_dir
from feeds.render import FORMATS
from feeds.report import BuildReport
from feeds.select import (
    F,
    R,
    assume_quality,
    link_similar,
    merge_duplicates,
    merge_summaries,
    rank_sorted,
    rank_stories,
)
from feeds.taxonomy import ALL, Taxonomy, build_taxonomy
from feeds.write import Writes, copies_of, remove_leftovers, remove_output

# The renderers (Jinja, feedgen, lxml: ~50 ms of imports) are imported where a feed or
# page is rendered: a rebuild whose feeds all stand unchanged renders nothing.
if TYPE_CHECKING:
    from feeds.render.feeds import FeedDoc

__all__ = ["EPOCH", "Corpus", "Dropped", "FeedPlan", "Progress", "build", "load_corpus", "plan_feeds",
           "plan_topics", "render_site", "stable_until"]

log = logging.getLogger(__name__)

HEADLINES = 3  # top stories per topic on the index page
INDEX = "index.html"
OPML = "feeds.opml"
PAGES = (INDEX, OPML)  # outputs named by their own path; the rest are topics' feeds


def build(
    config: Config,
    *,
    now: datetime,
    seeds: Path | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
    use_cache: bool = True,
    checked: manifest.Precheck | None = None,
) -> BuildReport:
    """Build every topic's RSS, Atom and JSON feed, the OPML list and the index page.

    ``now`` fixes the clock: only articles published by then count, so a past corpus
    ranks as it did then. Output depends only on the records, the config and ``now``:
    the same input gives byte-identical files, and unchanged files are not rewritten.
    With ``use_cache``, a build with nothing new stops early, only record files that
    changed since the last build are parsed, and only feeds whose stories changed are
    rendered. ``checked`` is :func:`manifest.precheck`'s result when the caller (the
    CLI) has just taken it.
    """
    out = out or config.out
    seeds = seeds or config.seeds
    if not seeds.is_dir():
        raise FeedsError(f"{seeds}: no such folder of records")
    if checked is None:
        checked = manifest.precheck(config, seeds, out, now, use_cache=use_cache)
    if checked.report is not None:  # nothing changed since the last build
        return checked.report
    with fewer_collections():
        return _build(config, now, seeds, out, progress, use_cache, checked)


def _build(config: Config, now: datetime, seeds: Path, out: Path, progress: Progress | None,
           use_cache: bool, checked: manifest.Precheck) -> BuildReport:
    scanned, inputs = checked.scanned, checked.inputs
    compiled = config.cache_db if use_cache else None
    with RecordCache(compiled) as cache:
        index = cache.index(seeds, scanned, config.max_record_bytes, progress)
        ranked = rank_site(config, index, now)
        contents = content_digests(config, ranked.plans, index)
        same = current_outputs(out, contents, manifest.previous_contents(out) if use_cache else {})
        previous = manifest.previous_outputs(out)
        articles = cache.articles(index, sources_to_render(ranked.plans, same))
    dropped: list[Dropped[Summary]] = []
    for leftover in remove_leftovers(out, ["topics"]):  # the folders a build writes in
        log.info("removed a killed build's temporary file", extra={"path": str(out / leftover)})
    with Writes(out) as writes:  # each feed written (and compressed) while the next renders
        files = render_site(config, ranked.plans, Resolver(articles, config.half_life), skip=same,
                            compiled=compiled, dropped=dropped, write=writes.put)
        changed = writes.finish()
    for name in {d.slug for d in dropped} | ({INDEX} if dropped else set()):
        contents.pop(name, None)  # rendered (and reported) again next time, not taken as current
    written = write_outputs(out, files, same, changed)
    removed = remove_stale(out, previous - written.sizes.keys())
    report = build_report(config, scanned, index, ranked, dropped, written, removed)
    manifest.save(out, inputs=inputs, valid_from=now,
                  valid_until=stable_until(ranked.stories.articles, now, config.max_age),
                  report=report, outputs=written.sizes, contents=contents)
    return report


# A build makes a few long-lived objects per record, and many short-lived ones; the
# collector's default (a pass every 700 allocations, a full one as the survivors pile up)
# walks them over and over for nothing: some 4% of a daemon's rebuild. `feeds build` sets
# this for its whole process; the daemon (and any caller) has it for each build only, so
# its other jobs keep the default.
BUILD_GC_THRESHOLD = (100_000, 20, 20)
_collections_lock = threading.Lock()
_builds_running = 0
_threshold_before: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect garbage as rarely as :data:`BUILD_GC_THRESHOLD` says while any build of
    this process runs (the daemon may run two at once), then as before. Nothing is kept
    from the collector: it runs, less often."""
    global _builds_running, _threshold_before
    with _collections_lock:
        if _builds_running == 0:
            _threshold_before = gc.get_threshold()
            gc.set_threshold(*(max(a, b) for a, b in zip(_threshold_before, BUILD_GC_THRESHOLD, strict=True)))
        _builds_running += 1
    try:
        yield
    finally:
        with _collections_lock:
            _builds_running -= 1
            if _builds_running == 0:
                gc.set_threshold(*_threshold_before)


# The steps of build(), in the order it takes them. Their results are named tuples, not
# dataclasses: a frozen dataclass costs some 0.3 ms to define, at every command's import.


class Ranked(NamedTuple):
    """A build's records ranked: duplicates merged, near-identical titles linked, the
    topics they make, and each topic's feed planned (see :func:`rank_site`)."""

    folded: list[tuple[str, str]]  # (folded, kept): each record file merged into another of its page
    stories: Prepared[Summary]
    taxonomy: Taxonomy
    plans: list[FeedPlan[Summary]]


def rank_site(config: Config, index: Index, now: datetime) -> Ranked:
    """Every feed's stories, from the Summaries alone (no Article is read to rank)."""
    folded: list[tuple[str, str]] = []
    merged = merge_summaries((e.summary for e in index.entries if e.summary), config.half_life, folded)
    stories = prepare_stories(merged)
    taxonomy = build_taxonomy(config.topics, stories.articles)
    return Ranked(folded, stories, taxonomy, plan_topics(config, taxonomy, stories.articles, now))


def content_digests(config: Config, plans: Sequence[FeedPlan[Summary]], index: Index) -> dict[str, str]:
    """What each output holds (a topic's feeds by its slug, the index page, the OPML list),
    as digests: equal digests mean equal files, so those need neither rendering nor their
    Articles read."""
    shas = {e.key: e.sha256 for e in index.entries}
    code = manifest.code_fingerprint(templates_dir())
    contents = {plan.slug: manifest.content_digest(code, plan.contents(shas)) for plan in plans}
    contents[INDEX] = manifest.content_digest(code, (
        config.title, config.description, config.language, site_updated(plans),
        [(plan.contents(shas, HEADLINES), len(plan.stories)) for plan in plans]))
    contents[OPML] = manifest.content_digest(code, (
        config.title, site_updated(plans), [plan.contents(shas, 0) for plan in plans]))
    return contents


def current_outputs(out: Path, contents: Mapping[str, str], before: Mapping[str, str]) -> set[str]:
    """The outputs whose digest is the last build's (``before``) and whose files, and their
    compressed copies, are all still there: the files from the last build are these already."""
    return {name for name, digest in contents.items() if before.get(name) == digest
            and all((out / file).is_file() for path in outputs_of(name) for file in (path, *copies_of(path)))}


def sources_to_render(plans: Sequence[FeedPlan[Summary]], same: Set[str]) -> set[str]:
    """The record files whose Articles the outputs not in ``same`` show."""
    wanted = {source for plan in plans if plan.slug not in same for source in plan.sources()}
    if INDEX not in same:
        wanted.update(source for plan in plans for source in plan.sources(HEADLINES))
    return wanted


class Written(NamedTuple):
    """What :func:`write_outputs` did, as paths under ``out/``."""

    written: list[str]
    unchanged: list[str]
    sizes: dict[str, int]  # every output of this build, rendered or not, and its size


def write_outputs(out: Path, files: Mapping[str, bytes], same: Set[str], changed: Set[str]) -> Written:
    """What the build wrote: the rendered ``files``, of which those in ``changed`` were
    new or changed on disk (as :class:`~feeds.write.Writes` wrote them, with their .gz/.br
    copies), and those not rendered (``same``), counted as unchanged."""
    written: list[str] = []
    unchanged: list[str] = []
    for relative in files:
        (written if relative in changed else unchanged).append(relative)
    sizes = {name: len(data) for name, data in files.items()}
    for name in same:  # not rendered: the files from the last build are these already
        for relative in outputs_of(name):
            sizes[relative] = (out / relative).stat().st_size
            unchanged.append(relative)
    return Written(written, unchanged, sizes)


def remove_stale(out: Path, stale: Set[str]) -> list[str]:
    """Remove the last build's outputs that this one did not make: a topic no record names
    any more has its feeds go, rather than stand still for ever."""
    removed = []
    for relative in sorted(stale):
        if remove_output(out, relative):
            removed.append(relative)
        else:
            log.warning("not removed: its path leads outside the output folder", extra={"path": str(out / relative)})
    return removed


def build_report(config: Config, scanned: manifest.Scanned, index: Index, ranked: Ranked,
                 dropped: Sequence[Dropped[Summary]], written: Written, removed: list[str]) -> BuildReport:
    """The build's counts, the files it skipped and why, the notes on those it kept, and
    what it wrote, left alone and removed."""
    records = sum(1 for e in index.entries if e.summary is not None)
    summaries = ranked.stories.articles
    return BuildReport(
        records=len(index.entries),
        parsed=index.parsed,
        articles=len(summaries),
        duplicates=records - len(summaries),
        topic_errors=config.topic_errors,
        skipped=(*misnamed(scanned),
                 *(RecordError(e.path, e.error) for e in index.entries if e.error is not None),
                 *unrenderable(dropped, {e.key: e.path for e in index.entries} if dropped else {})),
        notes=config.topic_notes + tuple(note for e in index.entries if e.notes for note in e.record_notes)
        + folded_notices(index, ranked.folded),
        topics=tuple(ranked.taxonomy.topics),
        written=tuple(written.written),
        unchanged=tuple(written.unchanged),
        removed=tuple(removed),
        assumed=ranked.stories.assumed,
        neutral_quality=ranked.stories.neutral_quality,
        similar=sum(len(group) - 1 for group in ranked.stories.similar),
    )


def misnamed(scanned: manifest.Scanned) -> list[RecordError]:
    """A skip for each record file (or folder of them) whose name is not UTF-8, named as
    it can be printed: such a name cannot stand in a message, a feed or the parse cache;
    and for each symbolic link by a record file's name that leads nowhere."""
    return [*(RecordError(Path(manifest.printable(path)),
                          "a folder whose name is not UTF-8: rename it for its records to be read"
                          if path.endswith(os.sep) else "its name is not UTF-8: rename it to be read")
              for path in scanned.misnamed),
            *(RecordError(Path(manifest.printable(path)), "cannot read: a link to nothing")
              for path in scanned.dangling)]


def folded_notices(index: Index, folded: Sequence[tuple[str, str]]) -> tuple[RecordNotice, ...]:
    """One notice per record file folded into another of the same page (the same
    canonical URL), naming the file that was kept, by the names the caller gave.
    ``folded``: (folded, kept) sources, as :func:`merge_summaries` found them."""
    if not folded:
        return ()
    wanted = {source for pair in folded for source in pair}
    # Only now, and only these: a rebuild with no duplicates pays nothing, one with a few
    # no dictionary of every record.
    entries = {e.key: e for e in index.entries if e.key in wanted}
    return tuple(
        RecordNotice(entries[gone].path, f"same page as {entries[kept].name} (one canonical URL); "
                                         f"{entries[kept].name} was kept, the better ranked")
        for gone, kept in folded)


def unrenderable(dropped: Sequence[Dropped[Summary]], paths: Mapping[str, Path]) -> list[RecordError]:
    """One error per record file behind the stories left out of a feed, in path order.
    ``paths``: each source (the parse cache's key) as the build names its file."""
    reasons: dict[Path, str] = {}
    for story in dropped:
        for summary in story.articles:
            for source in summary.sources:
                reasons.setdefault(paths.get(source, Path(source)), f"cannot be rendered: {story.reason}")
    return [RecordError(path, reason) for path, reason in sorted(reasons.items())]


def outputs_of(name: str) -> list[str]:
    """The files under out/ that a content digest's name covers."""
    return [name] if name in PAGES else [f"topics/{name}/{fmt}" for fmt in FORMATS]


def stable_until(articles: Sequence[Article | Summary], now: datetime,
                 max_age: timedelta | None) -> datetime | None:
    """The first moment after ``now`` at which the same articles could give other feeds: a
    record dated in the future becomes visible, or an article grows older than
    ``max_age``. None if no such moment comes."""
    until = (now - EPOCH) // MICROSECOND
    moments = [a.microseconds for a in articles if a.microseconds > until]
    if max_age is not None:
        age = max_age // MICROSECOND
        moments += [a.microseconds + age + 1 for a in articles if a.microseconds <= until <= a.microseconds + age]
    return EPOCH + min(moments) * MICROSECOND if moments else None


class Prepared(NamedTuple, Generic[F]):
    """A build's articles as ranking takes them (see :func:`prepare_stories`)."""

    articles: list[F]
    assumed: int  # articles without a quality, ranked at neutral_quality
    neutral_quality: float | None  # the median of the given qualities; None if none
    similar: list[list[F]]  # groups of near-identical titles, each now one story


def prepare_stories(articles: Sequence[F]) -> Prepared[F]:
    """What every ranking of a build's articles (feeds and digests, of Summaries or whole
    Articles) starts from, worked out once over them all: a neutral quality for those
    without one, and near-identical titles linked as one story."""
    rated, neutral = assume_quality(articles)
    linked, groups = link_similar(rated)
    assumed = sum(1 for a in articles if not a.rated) if neutral is not None else 0
    return Prepared(linked, assumed, neutral, groups)


@dataclass(frozen=True)
class Corpus:
    """Every record loaded, duplicates merged, and the topics they make."""

    loaded: tuple[Loaded, ...]
    articles: tuple[Article, ...]  # ranked as a build ranks them (see prepare_stories)
    taxonomy: Taxonomy
    parsed: int = 0  # files parsed this time; the rest came from the parse cache
    neutral_quality: float | None = None  # what articles without a quality rank at
    similar: tuple[tuple[Article, ...], ...] = ()  # groups of near-identical titles

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
    use_cache: bool = True,
) -> Corpus:
    """Read every record under ``seeds`` (default: the config's), one result per file,
    through the parse cache (only files that changed are parsed again)."""
    seeds = seeds or config.seeds
    try:
        scanned = manifest.scan(seeds)
    except FileNotFoundError as e:
        raise FeedsError(f"{seeds}: no such folder of records") from e
    with RecordCache(config.cache_db if use_cache else None) as cache:
        index = cache.index(seeds, scanned, config.max_record_bytes, progress)
        found = cache.articles(index, (e.key for e in index.entries if e.summary is not None))
    loaded = tuple(_loaded(e, found) for e in index.entries)
    stories = prepare_stories(merge_duplicates([i.article for i in loaded if i.article is not None],
                                               config.half_life))
    articles = stories.articles
    return Corpus(loaded, tuple(articles), build_taxonomy(config.topics, articles), index.parsed,
                  stories.neutral_quality, tuple(tuple(g) for g in stories.similar))


def _loaded(entry: Entry, found: Mapping[str, Article]) -> Loaded:
    return Loaded(entry.path, article=found.get(entry.key), error=entry.loaded_error, notes=entry.record_notes)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class FeedPlan(Generic[R]):
    """One topic's feed before rendering: its stories as leads and folded articles, of
    whole Articles or of Summaries (then :class:`Resolver` makes them Articles)."""

    slug: str
    name: str
    title: str
    description: str
    base_url: str
    language: str
    stories: list[tuple[R, list[R]]]
    updated: datetime  # the newest item's date, never the clock

    def doc(self, resolve: Callable[[R], Article], limit: int | None = None) -> FeedDoc:
        from feeds.render.feeds import FeedDoc

        return FeedDoc(
            slug=self.slug, name=self.name, title=self.title, description=self.description,
            base_url=self.base_url, language=self.language, updated=self.updated,
            stories=tuple(Story(resolve(lead), tuple(resolve(a) for a in also))
                          for lead, also in self.stories[:limit]),
        )

    def sources(self: FeedPlan[Summary], limit: int | None = None) -> list[str]:
        """The record files behind the first ``limit`` stories (leads only when limited:
        the index page shows no folded coverage)."""
        return [source for lead, also in self.stories[:limit]
                for s in ([lead] if limit else [lead, *also]) for source in s.sources]

    def contents(self: FeedPlan[Summary], shas: Mapping[str, str], limit: int | None = None) -> object:
        """Everything the rendered feed depends on: the feed's own fields, and for each of
        its stories the content hashes of the record files behind every article."""
        def files(s: Summary) -> list[str]:
            return [shas[source] for source in s.sources]
        return (self.slug, self.name, self.title, self.description, self.base_url, self.language,
                self.updated.isoformat(),
                [(files(lead), [] if limit else [files(a) for a in also]) for lead, also in self.stories[:limit]])


class Resolver:
    """A Summary's Article: read from the cache, or merged from its duplicates' Articles
    exactly as :func:`merge_duplicates` merges them in a full load."""

    def __init__(self, articles: Mapping[str, Article], half_life: timedelta) -> None:
        self.articles = articles
        self.half_life = half_life

    def __call__(self, summary: Summary) -> Article:
        if len(summary.sources) == 1:
            return self.articles[summary.sources[0]]
        [merged] = merge_duplicates([self.articles[s] for s in summary.sources], self.half_life)
        return merged


def plan_topics(config: Config, taxonomy: Taxonomy, articles: Sequence[R], now: datetime) -> list[FeedPlan[R]]:
    """One FeedPlan per topic (sub-topics' articles included), ``all`` first, then by name."""
    half_life = config.half_life
    articles = rank_sorted(articles, half_life)  # once, for every feed
    members: dict[str, list[R]] = {slug: [] for slug in taxonomy.topics}
    feeds_of: dict[tuple[str, ...], frozenset[str]] = {}  # few combinations of topics, many articles
    for article in articles:
        slugs = feeds_of.get(article.topics)
        if slugs is None:
            slugs = feeds_of[article.topics] = taxonomy.feeds_for(article)
        for slug in slugs:
            members[slug].append(article)
    until = (now - EPOCH) // MICROSECOND
    fallback = EPOCH + max((a.microseconds for a in articles if a.microseconds <= until), default=0) * MICROSECOND

    def plan(slug: str, name: str, description: str, pool: Sequence[R]) -> FeedPlan[R]:
        stories = rank_stories(
            pool,
            now=now,
            half_life=half_life,
            limit=config.items_per_feed,
            max_per_provider=config.max_items_per_provider,
            max_age=config.max_age,
            ranked=True,
        )
        return FeedPlan(
            slug=slug,
            name=name,
            title=f"{config.title}: {name}",
            description=description,
            base_url=config.base_url,
            language=config.language,
            stories=stories,
            # From the newest item, never the clock, so rebuilds are byte-identical.
            updated=EPOCH + max(lead.microseconds for lead, _ in stories) * MICROSECOND if stories else fallback,
        )

    plans = [plan(ALL, "All topics", config.description, articles)]
    for slug, topic in sorted(taxonomy.topics.items(), key=lambda kv: (kv[1].name.casefold(), kv[0])):
        description = topic.description or f"The best {topic.name} stories, ranked by quality and recency."
        plans.append(plan(slug, topic.name, description, members[slug]))
    return plans


def plan_feeds(config: Config, taxonomy: Taxonomy, articles: Sequence[Article], now: datetime) -> list[FeedDoc]:
    """One FeedDoc per topic from whole Articles (see :func:`plan_topics`)."""
    return [plan.doc(_same) for plan in plan_topics(config, taxonomy, articles, now)]


def _same(article: Article) -> Article:
    return article


def site_updated(plans: Sequence[FeedPlan[R]]) -> datetime:
    return max((p.updated for p in plans), default=EPOCH)


class Dropped(NamedTuple, Generic[R]):
    """A story left out of a topic's feed because its item could not be rendered."""

    slug: str
    articles: tuple[R, ...]  # the lead, then the coverage folded into it
    reason: str  # one line: the renderer's exception


def render_site(config: Config, plans: Sequence[FeedPlan[R]], resolve: Callable[[R], Article],
                skip: Set[str] = frozenset(), compiled: Path | None = None,
                dropped: list[Dropped[R]] | None = None,
                write: Callable[[str, bytes], None] | None = None) -> dict[str, bytes]:
    """Every output file, by its path under ``out/``, but those named in ``skip`` (topic
    slugs, the index page or the OPML list): their files are known to be current.
    ``resolve`` gives the plans' items as Articles; ``compiled``: the parse cache's database, where
    compiled templates are kept (see :func:`~feeds.cache.template_cache`). A story whose
    item cannot be rendered is left out of every feed and page, and added to ``dropped``.
    ``write``, if given, is handed each file as soon as it is made (a feed's while the next
    one renders), besides its place in the result."""
    files: dict[str, bytes] = {}
    todo = [plan for plan in plans if plan.slug not in skip]
    if not todo and all(page in skip for page in PAGES):
        return files
    from feeds.render import jinja_env
    from feeds.render.feeds import render_opml
    from feeds.render.site import IndexTopic, render_index

    docs = [plan.doc(resolve, limit=0) for plan in plans]  # no stories: the OPML list's
    left_out: list[Dropped[R]] = []
    for plan, (rendered, failed) in zip(todo, render_all(todo, resolve), strict=True):
        for name, data in rendered.items():
            files[f"topics/{plan.slug}/{name}"] = data
            if write is not None:
                write(f"topics/{plan.slug}/{name}", data)
        left_out += [Dropped(plan.slug, (plan.stories[i][0], *plan.stories[i][1]), reason) for i, reason in failed]
    if dropped is not None:
        dropped += left_out
    updated = site_updated(plans)
    if OPML not in skip:
        files[OPML] = render_opml(docs, title=config.title, updated=updated)
        if write is not None:
            write(OPML, files[OPML])
    if INDEX not in skip:
        unusable = {story.articles[0].id for story in left_out}
        topics = [IndexTopic(doc, len(plan.stories), tuple(
                      resolve(lead) for lead, _ in plan.stories[:HEADLINES] if lead.id not in unusable))
                  for doc, plan in zip(docs, plans, strict=True)]
        files[INDEX] = render_index(
            jinja_env(bytecode_cache=template_cache(compiled)), topics, title=config.title,
            description=config.description, language=config.language, updated=updated,
        )
        if write is not None:
            write(INDEX, files[INDEX])
    return files


PARALLEL_FEEDS = 8  # feeds to render; fewer are quicker in this process than with workers
_JOB: tuple[Sequence[FeedPlan[Any]], Callable[[Any], Article]] | None = None  # for forked workers
Failed = list[tuple[int, str]]  # the indexes in a plan's stories of those left out, and why


def render_all(plans: Sequence[FeedPlan[R]],
               resolve: Callable[[R], Article]) -> Iterable[tuple[dict[str, bytes], Failed]]:
    """Each plan's feed in every format (see :func:`render_plan`), on every core when there
    are many. Workers are forked, so they share the plans and Articles without copying
    them; a process with threads (the daemon) renders here, since forking a threaded
    process can deadlock, one plan at a time as the caller takes them (who may write one
    while the next renders)."""
    global _JOB

    cores = os.cpu_count() or 1
    if len(plans) < PARALLEL_FEEDS or cores < 2 or threading.active_count() > 1:
        return (render_plan(plan, resolve) for plan in plans)
    # Only here: ~10 ms of imports a small rebuild need not pay.
    from feeds.workers import worker_pool

    _JOB = (plans, resolve)
    try:
        with worker_pool(min(cores, 8), "fork") as pool:
            return list(pool.map(_render_one, range(len(plans))))
    finally:
        _JOB = None


def _render_one(index: int) -> tuple[dict[str, bytes], Failed]:
    assert _JOB is not None, "only in a worker forked by render_all"
    plans, resolve = _JOB
    return render_plan(plans[index], resolve)


def render_plan(plan: FeedPlan[R], resolve: Callable[[R], Article]) -> tuple[dict[str, bytes], Failed]:
    """One plan's feed in every format, and the stories left out of it: a story whose item
    the renderers refuse (text that cleaning should have made safe, a renderer's bug)
    costs that story, not the feed and the build. The feed is rendered once, as usual;
    only when that fails is each story tried alone to find the ones at fault."""
    from feeds.render.feeds import render_feeds

    doc = plan.doc(resolve)
    try:
        return render_feeds(doc), []
    except Exception as e:  # the renderers' errors are many (lxml, feedgen, codecs): any will do
        whole = e
    failed: Failed = []
    for i, story in enumerate(doc.stories):
        try:
            render_feeds(replace(doc, stories=(story,)))
        except Exception as e:
            failed.append((i, _one_line(f"{type(e).__name__}: {e}")))
    if not failed:
        raise whole  # the feed fails with no story at fault: not a record's doing
    bad = {i for i, _ in failed}
    kept = tuple(story for i, story in enumerate(doc.stories) if i not in bad)
    return render_feeds(replace(doc, stories=kept)), failed


def _one_line(text: str, limit: int = 200) -> str:
    """``text`` fit for one line of a terminal: no line breaks, nothing UTF-8 cannot encode."""
    line = " ".join(text.encode("utf-8", "backslashreplace").decode("utf-8").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
