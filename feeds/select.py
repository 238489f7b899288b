"""Dedupe, score and rank articles into the stories of one feed. Pure: ``now`` is an argument.

The ranking: an article's score is its quality halved every ``half_life`` of age,

    score = quality * 0.5 ** (age / half_life)

Because every article decays by the same factor as the clock moves, the order of two
published articles never changes with time. So we sort on an equivalent key that does not
mention ``now`` at all (:func:`rank_key`); that makes ranks exact (no underflow for old
articles) and feeds free of flapping: as the clock advances with no new records, an item
that has left a feed never comes back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from feeds.model import EPOCH, MICROSECOND, Article, Story, Summary


class Rankable(Protocol):
    """What ranking reads of an article: an :class:`Article` or its :class:`Summary`."""

    @property
    def id(self) -> str: ...
    @property
    def microseconds(self) -> int: ...
    @property
    def quality(self) -> float: ...
    @property
    def outlet(self) -> str: ...
    @property
    def related_ids(self) -> tuple[str, ...]: ...
    @property
    def topics(self) -> tuple[str, ...]: ...


R = TypeVar("R", bound=Rankable)


def score(article: Article, *, now: datetime, half_life: timedelta) -> float:
    """Quality decayed by age: halves every ``half_life``. An article from the future has
    age 0."""
    age = max(now - article.published, timedelta(0))
    decay: float = 0.5 ** (age / half_life)
    return article.quality * decay


def rank_key(article: Rankable, half_life: timedelta) -> tuple[float, float, float, str]:
    """Sort key, best first: ``(-strength, -quality, -published, id)``.

    ``strength = log2(quality) + published / half_life`` orders articles exactly as
    :func:`score` does at any ``now`` after both were published. Where float rounding
    makes two strengths equal, the higher quality wins, then the newer article, then the
    smaller id, so every run and machine agrees.
    """
    return (-_strength(article, half_life.total_seconds()), -article.quality,
            -article.microseconds / 1_000_000, article.id)


def _strength(article: Rankable, half_life_seconds: float) -> float:
    published = article.microseconds / 1_000_000  # what datetime.timestamp() gives, exactly
    return math.log2(article.quality) + published / half_life_seconds if article.quality > 0 else -math.inf


def rank_sorted(items: Iterable[R], half_life: timedelta) -> list[R]:
    """``items`` sorted by :func:`rank_key`. Sorting floats is some seven times quicker
    than sorting tuples, so the sort is on strength alone; then each run of equal
    strengths (rare) is put in :func:`rank_key` order."""
    seconds = half_life.total_seconds()
    pool = list(items)
    strengths = [-_strength(item, seconds) for item in pool]
    order = sorted(range(len(pool)), key=strengths.__getitem__)
    ranked = [pool[i] for i in order]
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or strengths[order[end]] != strengths[order[start]]:
            if end - start > 1:
                ranked[start:end] = sorted(ranked[start:end], key=lambda a: rank_key(a, half_life))
            start = end
    return ranked


def duplicate_groups(items: Iterable[R]) -> tuple[dict[str, R], dict[str, list[R]]]:
    """Items by id, first come first, and the groups of items that share an id (records
    of one page), each in the order they came. Lists only for groups: most ids have one."""
    first: dict[str, R] = {}
    groups: dict[str, list[R]] = {}
    for item in items:
        earlier = first.setdefault(item.id, item)
        if earlier is not item:
            groups.setdefault(item.id, [earlier]).append(item)
    return first, groups


def merge_duplicates(articles: Iterable[Article], half_life: timedelta) -> list[Article]:
    """One Article per id: records of the same page (amp or tracking variants of one URL)
    become the best-ranked of them, carrying the topics and related coverage of all."""
    def merge(group: list[Article], ranked: list[Article]) -> Article:
        related = tuple({c.id: c for a in reversed(ranked) for c in a.related}.values())
        return replace(ranked[0], topics=_topics(ranked), related=related)

    return _merge(articles, half_life, merge)


def merge_summaries(summaries: Iterable[Summary], half_life: timedelta) -> list[Summary]:
    """:func:`merge_duplicates` for Summaries: the same ranking fields, topics and related
    ids as the merged Article's, and the sources of every record in the group, in their
    order, so the merged Article can be made from them."""
    def merge(group: list[Summary], ranked: list[Summary]) -> Summary:
        related = tuple(dict.fromkeys(i for s in reversed(ranked) for i in s.related_ids))
        sources = tuple(source for s in group for source in s.sources)
        return ranked[0]._replace(topics=_topics(ranked), related_ids=related, sources=sources)

    return _merge(summaries, half_life, merge)


def duplicate_notices(summaries: Iterable[Summary], half_life: timedelta) -> list[tuple[str, str]]:
    """For each record file folded into another of the same id, ``(folded, kept)``: its
    source and the source of the group's best-ranked record, whose fields the merged
    item has (see :func:`merge_summaries`). In the order the files came."""
    _, groups = duplicate_groups(summaries)
    pairs: list[tuple[str, str]] = []
    for group in groups.values():
        kept = rank_sorted(group, half_life)[0]
        pairs.extend((source, kept.sources[0]) for s in group if s is not kept for source in s.sources)
    return pairs


def _merge(items: Iterable[R], half_life: timedelta, merge: Callable[[list[R], list[R]], R]) -> list[R]:
    """One item per id, in the order ids first came; ``merge`` makes one of a group (in
    the order they came, and best-ranked first)."""
    first, groups = duplicate_groups(items)
    merged: list[R] = []
    for ident, item in first.items():
        group = groups.get(ident)
        merged.append(item if group is None else merge(group, rank_sorted(group, half_life)))
    return merged


def _topics(ranked: Sequence[Rankable]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for a in ranked for t in a.topics))


def select(
    articles: Sequence[Article],
    *,
    now: datetime,
    half_life: timedelta,
    limit: int,
    max_per_provider: int | None = None,
    max_age: timedelta | None = None,
) -> tuple[Story, ...]:
    """The best ``limit`` stories published by ``now``, best first (see :func:`rank_stories`)."""
    return tuple(
        Story(lead, tuple(also))
        for lead, also in rank_stories(articles, now=now, half_life=half_life, limit=limit,
                                       max_per_provider=max_per_provider, max_age=max_age)
    )


def rank_stories(
    articles: Sequence[R],
    *,
    now: datetime,
    half_life: timedelta,
    limit: int,
    max_per_provider: int | None = None,
    max_age: timedelta | None = None,
    ranked: bool = False,
) -> list[tuple[R, list[R]]]:
    """The best ``limit`` stories published by ``now``, best first, each as its lead and
    the articles folded into it.

    Guarantees: at most ``limit`` stories; no article id appears twice; records that name
    each other in ``related`` are one story, led by the best-ranked of them; with
    ``max_per_provider``, no outlet leads more than that many stories. ``ranked``: the
    caller has put ``articles`` in :func:`rank_key` order already (one sort for every feed).
    """
    # In whole microseconds: exact, and integer comparisons are cheap.
    until = (now - EPOCH) // MICROSECOND
    since = until - max_age // MICROSECOND if max_age is not None else None
    eligible = [a for a in articles if a.microseconds <= until and (since is None or a.microseconds >= since)]
    if not ranked:
        eligible = rank_sorted(eligible, half_life)

    leads: list[R] = []
    folded: list[list[R]] = []
    story_of: dict[str, int] = {}  # article id (a lead's, or one a lead names as related) -> story
    named = story_of.keys()  # a live view: isdisjoint against it is quick
    per_provider: dict[str, int] = {}
    placed: set[str] = set()
    rest = iter(eligible if limit > 0 else ())
    for article in rest:
        ident = article.id
        if ident in placed:
            continue
        # Same story if a lead names this article as related, or this article names a lead.
        index = story_of.get(ident)
        if index is None and not named.isdisjoint(article.related_ids):
            index = next(story_of[i] for i in article.related_ids if i in story_of)
        if index is not None:
            folded[index].append(article)
            placed.add(ident)
            continue
        outlet = article.outlet
        if max_per_provider is not None and per_provider.get(outlet, 0) >= max_per_provider:
            continue
        per_provider[outlet] = per_provider.get(outlet, 0) + 1
        index = len(leads)
        leads.append(article)
        folded.append([])
        placed.add(ident)
        story_of[ident] = index
        for related in article.related_ids:
            story_of.setdefault(related, index)
        if len(leads) == limit:
            break
    # Full: the stories are settled, and the remaining articles (most, in a big feed) can
    # only fold into them. The same rules, in the order that rejects most articles soonest.
    for article in rest:
        ident = article.id
        index = story_of.get(ident)
        if index is None:
            if named.isdisjoint(article.related_ids):
                continue
            index = next(story_of[i] for i in article.related_ids if i in story_of)
        if ident not in placed:
            folded[index].append(article)
            placed.add(ident)
    return list(zip(leads, folded, strict=True))
