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
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Generic, Protocol, Self, TypeVar

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


class Foldable(Rankable, Protocol):
    """What a build's once-over-everything steps read and change of an article: whether it
    gave a quality, its title as compared, and copies ranked at another quality or linked
    to near-identical records (an :class:`Article` or its :class:`Summary`)."""

    @property
    def rated(self) -> bool: ...
    @property
    def title_key(self) -> str: ...
    def assuming(self, quality: float) -> Self: ...
    def linked(self, similar: tuple[str, ...]) -> Self: ...


F = TypeVar("F", bound=Foldable)


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


def merge_summaries(summaries: Iterable[Summary], half_life: timedelta,
                    folded: list[tuple[str, str]] | None = None) -> list[Summary]:
    """:func:`merge_duplicates` for Summaries: the same ranking fields, topics and related
    ids as the merged Article's, and the sources of every record in the group, in their
    order, so the merged Article can be made from them. ``folded``, if given, gets for each
    record file folded into another ``(folded, kept)``: its source and the source of the
    group's best-ranked record, whose fields the merged item has; in the order the files
    came (a build's note per duplicate page, found while merging rather than again)."""
    def merge(group: list[Summary], ranked: list[Summary]) -> Summary:
        related = tuple(dict.fromkeys(i for s in reversed(ranked) for i in s.related_ids))
        sources = tuple(source for s in group for source in s.sources)
        kept = ranked[0]
        if folded is not None:
            folded.extend((source, kept.sources[0]) for s in group if s is not kept for source in s.sources)
        return kept._replace(topics=_topics(ranked), related_ids=related, sources=sources)

    return _merge(summaries, half_life, merge)


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


# --------------------------------------------------------------- neutral quality


def neutral_quality(articles: Iterable[Foldable]) -> float | None:
    """The median quality of the articles that give one (the mean of the middle two for an
    even count); None if none does."""
    given = [a.quality for a in articles if a.rated]  # a list sorted in place: no generator per build
    given.sort()
    if not given:
        return None
    middle = len(given) // 2
    return given[middle] if len(given) % 2 else (given[middle - 1] + given[middle]) / 2


def assume_quality(articles: Sequence[F]) -> tuple[list[F], float | None]:
    """The articles, those without a quality ranked at :func:`neutral_quality`, and that
    quality. Smartable's older records have no ``quality`` (a third of real archives); as 0
    they would rank below every scored record at any age. When no article has one, all
    keep 0 and rank newest first."""
    neutral = neutral_quality(articles)
    if neutral is None:
        return list(articles), None
    return [a if a.rated else a.assuming(neutral) for a in articles], neutral


# -------------------------------------------------------- near-identical titles

SIMILAR_WINDOW = timedelta(days=3)  # near-identical titles further apart are other stories
SIMILAR_SCORE = 90.0  # rapidfuzz.fuzz.ratio of the title keys, 0-100
SIMILAR_MIN_WORDS = 5  # shorter titles ("Power Apps news") say too little to be one story
_EDGE = 24  # characters of a title key's head and tail that candidates must share
_DIGITS = re.compile(r"\d+")


def similar_groups(articles: Sequence[Foldable], window: timedelta = SIMILAR_WINDOW) -> list[list[int]]:
    """Groups of articles (as indices, each group and the list in a stable order) that are
    one story told at several URLs: near-identical titles published within ``window`` of
    each other, chained (A like B, B like C: one group).

    Near-identical (:func:`is_near_identical`): the same numbers, at least
    ``SIMILAR_MIN_WORDS`` words, and a ``fuzz.ratio`` of ``SIMILAR_SCORE`` or more or one
    title the other with words added before or after it ("RE-TRANSMISSION: ..."). Only
    titles that share their first or last ``_EDGE`` characters are compared: a reworded
    middle or a prefix or suffix keeps one of them, and comparing every pair in each
    window would cost a tenth of a rebuild. The groups depend only on the articles, not
    their order.
    """
    span = window // timedelta(microseconds=1)
    pairs: set[tuple[int, int]] = set()
    for block in _shared_edges(articles):
        block.sort(key=lambda i: (articles[i].microseconds, articles[i].id))
        for n, i in enumerate(block):
            for j in block[n + 1:]:
                if articles[j].microseconds - articles[i].microseconds > span:
                    break
                if articles[i].id != articles[j].id:
                    pairs.add((i, j) if i < j else (j, i))
    if not pairs:
        return []

    parent = list(range(len(articles)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def order(i: int) -> tuple[int, str]:
        return articles[i].microseconds, articles[i].id

    for i, j in pairs:
        if is_near_identical(articles[i].title_key, articles[j].title_key, _ratio):
            a, b = sorted((root(i), root(j)), key=order)
            parent[b] = a
    groups: dict[int, list[int]] = {}
    for i in sorted({i for pair in pairs for i in pair}, key=order):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _ratio(a: str, b: str, score_cutoff: float) -> float:
    """rapidfuzz's ``fuzz.ratio``, imported (~9 ms) only when a pair of titles needs it:
    most candidates are told apart by their numbers, by one title holding the other, or by
    their lengths. The ratio is ``200 * LCS / (len(a) + len(b))`` and a common subsequence
    is no longer than the shorter title, so titles whose lengths alone keep them under
    ``score_cutoff`` get 0 without it, as rapidfuzz gives any pair under the cutoff."""
    if 200 * min(len(a), len(b)) < score_cutoff * (len(a) + len(b)):
        return 0.0
    from rapidfuzz.fuzz import ratio

    return float(ratio(a, b, score_cutoff=score_cutoff))


def _shared_edges(articles: Sequence[Foldable]) -> list[list[int]]:
    """Groups of indices of articles whose title keys (of enough words) share their first or
    their last ``_EDGE`` characters. Lists only for groups: most titles share neither.
    This runs over every article on every rebuild, so the per-article work is slicing and
    counting, in C (:class:`~collections.Counter`); only the few articles whose edge another
    shares are looked at in Python, and only their words counted."""
    keys = [article.title_key for article in articles]
    spaces = SIMILAR_MIN_WORDS - 1
    blocks: list[list[int]] = []
    for edges in ([key[:_EDGE] for key in keys], [key[-_EDGE:] for key in keys]):
        shared = {edge for edge, count in Counter(edges).items() if count > 1}
        if not shared:
            continue
        found: dict[str, list[int]] = {}
        for index in [index for index, edge in enumerate(edges) if edge in shared]:
            if keys[index].count(" ") >= spaces:
                found.setdefault(edges[index], []).append(index)
        blocks += (block for block in found.values() if len(block) > 1)
    return blocks


def is_near_identical(a: str, b: str, ratio: Callable[..., float]) -> bool:
    """Two title keys of one story: the same numbers (a version, a date, a count tells
    stories apart), and either ``ratio`` (rapidfuzz's) of ``SIMILAR_SCORE`` or more, or the
    shorter one whole at the start or end of the longer."""
    if _DIGITS.findall(a) != _DIGITS.findall(b):
        return False
    short, long = sorted((a, b), key=len)
    if long.startswith(short + " ") or long.endswith(" " + short):
        return True
    return ratio(a, b, score_cutoff=SIMILAR_SCORE) >= SIMILAR_SCORE


def link_similar(articles: Sequence[F], window: timedelta = SIMILAR_WINDOW) -> tuple[list[F], list[list[F]]]:
    """The articles, each in a group of :func:`similar_groups` naming the others as related
    (so ranking folds them into one story as it folds ``related`` records), and the groups."""
    groups = similar_groups(articles, window)
    linked = list(articles)
    for group in groups:
        for i in group:
            linked[i] = articles[i].linked(tuple(articles[j].id for j in group if j != i))
    return linked, [[linked[i] for i in group] for group in groups]


# -------------------------------------------------------------------- ranking


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
    capped: list[R] | None = None,
) -> list[tuple[R, list[R]]]:
    """The best ``limit`` stories published by ``now``, best first, each as its lead and
    the articles folded into it.

    Guarantees: at most ``limit`` stories; no article id appears twice; records that name
    each other in ``related`` are one story, led by the best-ranked of them; with
    ``max_per_provider``, no outlet leads more than that many stories. ``ranked``: the
    caller has put ``articles`` in :func:`rank_key` order already (one sort for every feed).
    ``capped``: the articles the provider cap left out are appended to it (for ``feeds
    explain``; the rest of those not placed were too new or old, or came after the limit).
    """
    eligible = published_within(articles, now, max_age)
    if not ranked:
        eligible = rank_sorted(eligible, half_life)
    stories: _Stories[R] = _Stories()
    rest = iter(eligible if limit > 0 else ())
    _lead_stories(stories, rest, limit, max_per_provider, capped)
    _fold_into_stories(stories, rest)  # what the leads left of the iterator
    return list(zip(stories.leads, stories.folded, strict=True))


# The steps of rank_stories(), in the order it takes them. Each loop runs once per article
# of a feed, for every feed of a build: the steps hold their loops whole, with no call per
# article.


def published_within(articles: Sequence[R], now: datetime, max_age: timedelta | None) -> list[R]:
    """The articles published by ``now`` and, with ``max_age``, not before ``now - max_age``."""
    # In whole microseconds: exact, and integer comparisons are cheap.
    until = (now - EPOCH) // MICROSECOND
    since = until - max_age // MICROSECOND if max_age is not None else None
    return [a for a in articles if a.microseconds <= until and (since is None or a.microseconds >= since)]


class _Stories(Generic[R]):
    """The stories of one feed as they are made: each lead, the articles folded into it.
    A plain class: a dataclass costs every command ~0.3 ms to define, for four fields."""

    __slots__ = ("folded", "leads", "placed", "story_of")

    def __init__(self) -> None:
        self.leads: list[R] = []
        self.folded: list[list[R]] = []
        # Article id (a lead's, or one a lead names as related) -> its story.
        self.story_of: dict[str, int] = {}
        self.placed: set[str] = set()  # ids of the articles in a story


def _lead_stories(stories: _Stories[R], rest: Iterator[R], limit: int, max_per_provider: int | None,
                  capped: list[R] | None) -> None:
    """Take articles from ``rest``, best first, until ``limit`` stories are led: each folds
    into the story that names it (or that it names), or leads a new one if its outlet may
    lead another (else it goes to ``capped``)."""
    leads, folded, story_of, placed = stories.leads, stories.folded, stories.story_of, stories.placed
    named = story_of.keys()  # a live view: isdisjoint against it is quick
    per_provider: dict[str, int] = {}
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
            if capped is not None:
                capped.append(article)
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


def _fold_into_stories(stories: _Stories[R], rest: Iterator[R]) -> None:
    """The stories are settled, and the remaining articles (most, in a big feed) can only
    fold into them: the same rules as :func:`_lead_stories`, in the order that rejects
    most articles soonest."""
    folded, story_of, placed = stories.folded, stories.story_of, stories.placed
    named = story_of.keys()
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
