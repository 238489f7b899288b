"""Topics: definitions from the config, names from the records, and how they nest. Pure.

A record names its topics by display name ("Power Apps"); a definition in Smartable's
taxonomy format (``_id``, ``name``, ``shortname``, ``parent``) may give the same topic a
parent. A topic's feed carries its own articles and its sub-topics' articles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from feeds.model import Topic
from feeds.normalise import slugify

ALL = "all"  # out/topics/all/: every article, whatever its topics
RESERVED = "topic-all"  # the folder of a topic named "all"


class HasTopics(Protocol):
    """An Article or its Summary: topics are all this module reads of either."""

    @property
    def topics(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Taxonomy:
    """Every topic by slug, and every name a record may use for it.

    ``topics`` is ordered by slug; ``ALL`` is not in it.
    """

    topics: Mapping[str, Topic]
    names: Mapping[str, str] = field(repr=False)  # casefolded name/alias -> slug
    # A record's topic name -> the feeds it puts an article in: a build asks for every
    # record, and records use few names.
    _feeds_of_name: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def slug_for(self, name: str) -> str | None:
        return self.names.get(name.casefold())

    def lineage(self, slug: str) -> tuple[str, ...]:
        """``slug`` and its ancestors, nearest first; a cycle in the definitions stops it."""
        chain: list[str] = []
        current: str | None = slug
        while current is not None and current in self.topics and current not in chain:
            chain.append(current)
            current = self.topics[current].parent
        return tuple(chain)

    def feeds_for(self, article: HasTopics) -> frozenset[str]:
        """The slugs of every topic feed that carries ``article`` (not counting ``all``)."""
        slugs: set[str] = set()
        for name in article.topics:
            feeds = self._feeds_of_name.get(name)
            if feeds is None:
                slug = self.slug_for(name)
                feeds = self._feeds_of_name[name] = self.lineage(slug) if slug else ()
            slugs.update(feeds)
        return frozenset(slugs)

    def children(self, slug: str) -> tuple[Topic, ...]:
        return tuple(t for t in self.topics.values() if t.parent == slug)


def build_taxonomy(definitions: Sequence[Topic], articles: Iterable[HasTopics]) -> Taxonomy:
    """Merge configured topic definitions with the topic names found in ``articles``.

    A defined topic answers to its name, slug and aliases (``_id``, ``shortname``). A name
    no definition claims becomes a topic of its own; names that differ only in case or
    punctuation ("AI", "ai") share a slug and so are one topic, shown by its most used form.
    """
    topics: dict[str, Topic] = {}
    names: dict[str, str] = {}
    used = Counter(name for article in articles for name in article.topics)  # few names, many uses
    # "all" is the feed of every article, so a topic named "all" needs another folder:
    # topics/topic-all/, unless a topic is itself named "topic-all" (its own slug, never
    # moved), when it gets topic--all/, which slugify never makes. The two never merge.
    taken = {t.slug for t in definitions} | {slugify(name) for name in used}
    reserved = RESERVED if RESERVED not in taken else "topic--all"
    for topic in definitions:
        slug = _unreserved(topic.slug, reserved)
        topics[slug] = Topic(slug, topic.name, topic.parent, topic.description, topic.keywords, topic.aliases)
        for name in (topic.name, slug, *topic.aliases):
            names.setdefault(name.casefold(), slug)
    # Parents are written as names ("Power Apps") or ids ("power-apps"); resolve to slugs.
    for slug, topic in list(topics.items()):
        if topic.parent is not None:
            parent = names.get(topic.parent.casefold()) or names.get(slugify(topic.parent))
            topics[slug] = Topic(slug, topic.name, parent if parent != slug else None,
                                 topic.description, topic.keywords, topic.aliases)

    forms: dict[str, Counter[str]] = {}
    for name, count in used.items():
        if name.casefold() in names:
            continue
        slug = _unreserved(slugify(name), reserved)
        forms.setdefault(slug, Counter())[name] += count
    for slug, counter in forms.items():
        if slug in topics:  # a name that differs from a definition's only in punctuation
            for name in counter:
                names.setdefault(name.casefold(), slug)
            continue
        # Most used form wins; ties go to the alphabetically first, so every run agrees.
        display = min(counter, key=lambda n: (-counter[n], n))
        topics[slug] = Topic(slug, display)
        for name in counter:
            names[name.casefold()] = slug
    return Taxonomy(topics=dict(sorted(topics.items())), names=names)


def _unreserved(slug: str, reserved: str) -> str:
    return reserved if slug == ALL else slug
