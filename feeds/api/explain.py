"""Why an article is where it is: for the operator, its ranking in every feed it belongs to.

The same stages as a build (load, prepare, rank), over whole Articles, and the fates
:func:`~feeds.select.rank_stories` itself reports (the provider cap) or that follow from
its result: nothing here decides anew who leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from feeds.api.builds import load_corpus
from feeds.config import Config
from feeds.errors import FeedsError
from feeds.model import Article, Coverage, Story
from feeds.normalise import article_id
from feeds.select import rank_sorted, rank_stories, score
from feeds.taxonomy import ALL

# What kept an article where it is in one feed.
LEAD = "lead"
FOLDED = "folded"
PROVIDER_CAP = "provider cap"
ITEM_LIMIT = "item limit"
TOO_OLD = "too old"
NOT_YET = "not yet published"
NOT_IN_TOPIC = "not in topic"


@dataclass(frozen=True)
class Placement:
    """An article in one topic's feed."""

    slug: str
    name: str
    fate: str  # LEAD, FOLDED, PROVIDER_CAP, ITEM_LIMIT, TOO_OLD, NOT_YET or NOT_IN_TOPIC
    reason: str  # the fate in a sentence
    position: int | None  # 1-based, among the feed's eligible articles in rank order
    eligible: int  # articles published by now and young enough for the feed
    story: int | None = None  # 1-based: the item it leads or was folded into
    lead: Article | None = None  # that story's lead, when folded
    coverage: tuple[Coverage, ...] = ()  # that story's other coverage ("Also covered by")


@dataclass(frozen=True)
class Explanation:
    article: Article  # as ranked: quality the assumed one when the record gave none
    assumed: bool  # the record gave no quality; it ranks at the median of the others'
    age: timedelta
    score: float  # quality halved every half_life of age
    placements: tuple[Placement, ...]  # "all" first, then the article's topics by name


def explain(config: Config, url: str, *, now: datetime, seeds: Path | None = None,
            topic: str | None = None) -> Explanation:
    """Where the article at ``url`` (any variant of it: amp or tracking copies have its
    canonical id) stands in each feed it belongs to, or in ``topic`` (a slug) alone.
    Raises FeedsError when no record has that URL or the topic is unknown."""
    try:
        ident = article_id(url)
    except ValueError as e:  # urlsplit refuses some, such as http://[::1 (an unclosed IPv6 host)
        raise FeedsError(f"{url}: not a URL: {e}") from e
    corpus = load_corpus(config, seeds=seeds)
    article = next((a for a in corpus.articles if a.id == ident), None)
    if article is None:
        raise FeedsError(f"{url}: no record under {seeds or config.seeds} has this URL")
    taxonomy = corpus.taxonomy
    if topic is not None and topic != ALL and topic not in taxonomy.topics:
        raise FeedsError(f"{topic}: no such topic (known: {', '.join([ALL, *sorted(taxonomy.topics)])})")
    ranked = rank_sorted(corpus.articles, config.half_life)
    if topic is not None:
        slugs = [topic]
    else:
        mine = taxonomy.feeds_for(article) - {ALL}
        slugs = [ALL, *sorted(mine, key=lambda s: (taxonomy.topics[s].name.casefold(), s))]
    placements = []
    for slug in slugs:
        name = "All topics" if slug == ALL else taxonomy.topics[slug].name
        pool = ranked if slug == ALL else [a for a in ranked if slug in taxonomy.feeds_for(a)]
        placements.append(place(config, article, pool, slug, name, now))
    return Explanation(
        article=article,
        assumed=not article.rated and corpus.neutral_quality is not None,
        age=now - article.published,
        score=score(article, now=now, half_life=config.half_life),
        placements=tuple(placements),
    )


def place(config: Config, article: Article, pool: list[Article], slug: str, name: str,
          now: datetime) -> Placement:
    """``article``'s fate in the feed of ``pool`` (in rank order), ranked as a build does."""
    capped: list[Article] = []
    stories = rank_stories(pool, now=now, half_life=config.half_life, limit=config.items_per_feed,
                           max_per_provider=config.max_items_per_provider, max_age=config.max_age,
                           ranked=True, capped=capped)
    oldest = now - config.max_age if config.max_age is not None else None
    eligible = [a for a in pool if a.published <= now and (oldest is None or a.published >= oldest)]
    position = next((n for n, a in enumerate(eligible, 1) if a.id == article.id), None)

    def placed(fate: str, reason: str, story: int | None = None, lead: Article | None = None,
               coverage: tuple[Coverage, ...] = ()) -> Placement:
        return Placement(slug, name, fate, reason, position, len(eligible), story, lead, coverage)

    if all(a.id != article.id for a in pool):
        return placed(NOT_IN_TOPIC, reason="the article is not in this topic")
    if article.published > now:
        return placed(NOT_YET, reason=f"published after {now:%Y-%m-%d %H:%M} UTC")
    if position is None:
        return placed(TOO_OLD, reason=f"older than max_age_days ({config.max_age_days:g} days)")
    for number, (lead, also) in enumerate(stories, 1):
        coverage = Story(lead, tuple(also)).coverage
        if lead.id == article.id:
            return placed(LEAD, reason=f"leads item {number} of {len(stories)}",
                          story=number, coverage=coverage)
        if any(a.id == article.id for a in also):
            return placed(FOLDED, reason=f"folded into item {number}, {how_folded(article, lead)}",
                          story=number, lead=lead, coverage=coverage)
    if any(a.id == article.id for a in capped):
        return placed(PROVIDER_CAP, reason=(
            f"{article.provider.name if article.provider else 'its outlet'} already led "
            f"{config.max_items_per_provider} better-ranked items (max_items_per_provider)"))
    return placed(ITEM_LIMIT, reason=(
        f"the feed was full: {len(stories)} items ranked above it (items_per_feed)"))


def how_folded(article: Article, lead: Article) -> str:
    """How an article came into a story: the link between it and the lead, if direct."""
    if lead.id in article.similar:
        return f"whose lead has a near-identical title: {lead.title!r}"
    if lead.id in article.related_ids or article.id in lead.related_ids:
        return f"whose lead names it as related (or it the lead): {lead.title!r}"
    return f"related to another article of the story led by {lead.title!r}"
