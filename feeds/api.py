"""The library API: one function per job, each a run of the stages.

``build`` reads records, ranks them per topic and writes every feed. The CLI and the
scheduler call these; they do not reach into the stages themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from feeds.config import Config
from feeds.errors import FeedsError, RecordError, RecordNotice
from feeds.load import Loaded, iter_record_paths, load_record
from feeds.model import Article
from feeds.render import jinja_env
from feeds.render.feeds import FeedDoc, render_atom, render_json, render_opml, render_rss
from feeds.render.site import render_index
from feeds.select import merge_duplicates, select
from feeds.taxonomy import ALL, Taxonomy, build_taxonomy
from feeds.write import write_if_changed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class BuildReport:
    """What a build did, for the summary line and for ``--strict``."""

    records: int  # record files found
    articles: int  # distinct articles after folding duplicate URLs
    duplicates: int  # records folded into another record of the same URL
    skipped: tuple[RecordError, ...] = ()
    notes: tuple[RecordNotice, ...] = ()
    topics: tuple[str, ...] = ()  # topic slugs with a feed, "all" not counted
    written: tuple[str, ...] = ()  # paths under out/ whose bytes changed
    unchanged: tuple[str, ...] = field(default=(), repr=False)


def build(
    config: Config,
    *,
    now: datetime,
    seeds: Path | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Build every topic's RSS, Atom and JSON feed, the OPML list and the index page.

    ``now`` fixes the clock: only articles published by then count, so a past corpus
    ranks as it did then. Output depends only on the records, the config and ``now``:
    the same input gives byte-identical files, and unchanged files are not rewritten.
    """
    seeds = seeds or config.seeds
    out = out or config.out
    try:
        paths = iter_record_paths(seeds)
    except FileNotFoundError as e:
        raise FeedsError(f"{seeds}: no such folder of records") from e

    loaded: list[Loaded] = []
    for done, path in enumerate(paths, start=1):
        loaded.append(load_record(path, config.max_record_bytes))
        if progress:
            progress(done, len(paths))
    articles = [item.article for item in loaded if item.article is not None]
    merged = merge_duplicates(articles, config.half_life)
    taxonomy = build_taxonomy(config.topics, merged)
    docs = plan_feeds(config, taxonomy, merged, now)
    files = render_site(config, docs)

    written: list[str] = []
    unchanged: list[str] = []
    for relative, data in files.items():
        (written if write_if_changed(out, relative, data) else unchanged).append(relative)
    return BuildReport(
        records=len(paths),
        articles=len(merged),
        duplicates=len(articles) - len(merged),
        skipped=tuple(item.error for item in loaded if item.error is not None),
        notes=tuple(note for item in loaded for note in item.notes),
        topics=tuple(taxonomy.topics),
        written=tuple(written),
        unchanged=tuple(unchanged),
    )


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
