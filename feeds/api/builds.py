"""Builds: records in, every topic's feeds, the OPML list and the index page out."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from feeds import manifest, state
from feeds.cache import load_cached
from feeds.config import Config
from feeds.errors import FeedsError, RecordError
from feeds.load import Loaded, iter_record_paths
from feeds.model import Article
from feeds.paths import templates_dir
from feeds.render import jinja_env
from feeds.render.feeds import (
    FORMATS,
    FeedDoc,
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
    code = manifest.code_fingerprint(templates_dir())
    contents = {doc.slug: manifest.content_digest(code, doc) for doc in docs}
    before = manifest.previous_contents(out) if use_cache else {}
    same = {slug for slug, digest in contents.items()
            if before.get(slug) == digest and all((out / f"topics/{slug}/{n}").is_file() for n in FORMATS)}
    files = render_site(config, docs, skip=same)

    written: list[str] = []
    unchanged: list[str] = []
    for relative, data in files.items():
        (written if write_if_changed(out, relative, data) else unchanged).append(relative)
    sizes = {name: len(data) for name, data in files.items()}
    for slug in same:  # not rendered: the files from the last build are these feeds already
        for name in FORMATS:
            relative = f"topics/{slug}/{name}"
            sizes[relative] = (out / relative).stat().st_size
            unchanged.append(relative)
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
                  report=report, outputs=sizes, contents=contents)
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


def render_site(config: Config, docs: Sequence[FeedDoc], skip: Set[str] = frozenset()) -> dict[str, bytes]:
    """Every output file, by its path under ``out/``; the feeds of topics in ``skip`` are
    left out (their files are known to be current)."""
    files: dict[str, bytes] = {}
    for doc in docs:
        if doc.slug in skip:
            continue
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
