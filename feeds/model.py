"""The immutable values every stage passes along.

Everything here is plain data: no I/O, no clock. Datetimes are always aware and in UTC,
sequences are tuples, and a changed copy is made with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import urlsplit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

IMAGE_TYPES = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
    ".webp": "image/webp", ".avif": "image/avif", ".svg": "image/svg+xml", ".bmp": "image/bmp",
}


class Kind(StrEnum):
    ARTICLE = "article"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class Provider:
    """The outlet that published an article (``provider{name,domain}`` in a record)."""

    name: str
    domain: str | None = None

    @property
    def url(self) -> str | None:
        return f"https://{self.domain}/" if self.domain else None


@dataclass(frozen=True, slots=True)
class Image:
    url: str
    width: int | None = None
    height: int | None = None

    @property
    def mime_type(self) -> str:
        """Best guess from the URL's suffix; most records' images are JPEGs, many served
        without a suffix. A fixed table, not :mod:`mimetypes`, whose answers depend on the
        machine's /etc/mime.types: feeds must be byte-identical on every machine."""
        path = urlsplit(self.url).path.lower()
        suffix = path[path.rfind("."):] if "." in path.rsplit("/", 1)[-1] else ""
        return IMAGE_TYPES.get(suffix, "image/jpeg")


@dataclass(frozen=True, slots=True)
class Coverage:
    """One entry of a record's ``related`` list: other coverage of the same story."""

    id: str
    title: str
    url: str
    provider: Provider | None = None
    published: datetime | None = None


@dataclass(frozen=True, slots=True)
class Article:
    """One news record, cleaned.

    ``id`` is derived from the canonical URL only, so it is the same on every rebuild and
    machine and two records of one story (amp or tracking variants) share it. ``url`` is the
    link a reader follows. All text is plain text, never HTML: renderers escape it.
    """

    id: str
    title: str
    url: str
    published: datetime
    excerpt: str = ""
    kind: Kind = Kind.ARTICLE
    quality: float = 0.0
    heat: float = 0.0
    provider: Provider | None = None
    image: Image | None = None
    embed_url: str | None = None
    topics: tuple[str, ...] = ()
    related: tuple[Coverage, ...] = ()
    # False: the record gave no ``quality`` (Smartable's older layout); a build ranks it
    # at the median of the others' (see feeds.select.assume_quality).
    rated: bool = True
    # Ids of records with a near-identical title, set per build (feeds.select.link_similar):
    # ranking folds them into one story as it folds ``related`` records.
    similar: tuple[str, ...] = ()

    @property
    def is_video(self) -> bool:
        return self.kind is Kind.VIDEO

    @property
    def outlet(self) -> str:
        """The provider's name, case-folded ("" if none): one outlet, however it is written."""
        return self.provider.name.casefold() if self.provider else ""

    @property
    def related_ids(self) -> tuple[str, ...]:
        """The ids ranking folds into this article's story: its ``related`` entries' and
        those of records with a near-identical title."""
        return tuple(c.id for c in self.related) + self.similar

    @property
    def title_key(self) -> str:
        return title_key(self.title)

    def assuming(self, quality: float) -> Article:
        """This article ranked at ``quality``, still unrated (feeds.select.assume_quality)."""
        return replace(self, quality=quality)

    def linked(self, similar: tuple[str, ...]) -> Article:
        """This article folding with the records of these ids (feeds.select.link_similar)."""
        return replace(self, similar=similar)

    @property
    def microseconds(self) -> int:
        """Publication time in whole microseconds since 1970 (exact, unlike a float)."""
        return (self.published - EPOCH) // MICROSECOND

    def summary(self, source: str) -> Summary:
        return Summary(self.id, self.microseconds, self.quality, self.outlet, self.topics,
                       self.related_ids, (source,), self.rated, self.title_key)


_NOT_WORD = re.compile(r"[\W_]+")


def title_key(title: str) -> str:
    """A title as near-identical titles are compared: compatibility-normalised, case-folded,
    punctuation and runs of spaces as one space ("RE-TRANSMISSION: Provance ..." ->
    "re transmission provance ...")."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", title).casefold()).strip()


class Summary(NamedTuple):
    """What ranking, grouping and topics need of an Article, and where it came from.

    A build ranks every record's Summary and reads whole Articles only for the stories a
    changed feed shows: a few hundred, not every record. ``sources`` names the record
    files (parse-cache keys) behind it, more than one where duplicates were merged.
    A named tuple: a build loads one per record, and tuples are the cheapest to make.
    """

    id: str
    microseconds: int  # publication time, as Article.microseconds
    quality: float
    outlet: str
    topics: tuple[str, ...]
    related_ids: tuple[str, ...]  # as Article.related_ids
    sources: tuple[str, ...] = ()
    rated: bool = True  # as Article.rated
    title_key: str = ""  # the title as near-identical titles are compared (see title_key)

    @property
    def published(self) -> datetime:
        return EPOCH + self.microseconds * MICROSECOND

    def assuming(self, quality: float) -> Summary:
        return self._replace(quality=quality)

    def linked(self, similar: tuple[str, ...]) -> Summary:
        return self._replace(related_ids=self.related_ids + similar)


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic in Smartable's taxonomy format (``_id``, ``name``, ``parent``, ...).

    ``slug`` is lowercase ASCII with hyphens and is the topic's folder name under
    ``out/topics/``; ``parent`` is the parent topic's slug.
    """

    slug: str
    name: str
    parent: str | None = None
    description: str = ""
    keywords: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Story:
    """A feed item: the best-ranked record of a story and the other records that cover it."""

    lead: Article
    also: tuple[Article, ...] = ()

    @property
    def coverage(self) -> tuple[Coverage, ...]:
        """Other coverage: the folded records, then the lead's own ``related`` entries, then
        each folded record's, in rank order: the union of all the story's coverage.

        One entry per outlet (the first found), never the lead itself or its own outlet, so
        a better-ranked record joining a story never loses what the others cited.
        """
        lead_outlet = self.lead.outlet
        seen: set[str] = {lead_outlet} if lead_outlet else set()
        found: list[Coverage] = []
        candidates = [
            *(Coverage(a.id, a.title, a.url, a.provider, a.published) for a in self.also),
            *self.lead.related,
            *(c for a in self.also for c in a.related),
        ]
        for c in candidates:
            outlet = c.provider.name.casefold() if c.provider else None
            if outlet is None or outlet in seen or c.id == self.lead.id:
                continue
            seen.add(outlet)
            found.append(c)
        return tuple(found)


@dataclass(frozen=True, slots=True)
class ArchivedEdition:
    """A digest edition's web copy, as the archive feed lists it."""

    path: str  # under out/, e.g. newsletter/2020-06-18/ai/
    date: str
    topics: tuple[str, ...]
    subject: str
    summary: str
    period_end: datetime


def _fast_pickling(*classes: type) -> None:
    """Pickle these as (class, field values): the parse cache holds one Article per record
    and unpickles them all on a warm build, and dataclasses' own slots pickling (which
    looks the fields up for every object) took most of that time."""
    for cls in classes:
        getter = operator.attrgetter(*(f.name for f in fields(cls)))

        def reduce(self: object, _cls: type = cls, _get: Any = getter) -> tuple[type, tuple[object, ...]]:
            return (_cls, _get(self))

        cls.__reduce__ = reduce  # type: ignore[assignment, method-assign]


_fast_pickling(Provider, Image, Coverage, Article)
