"""The immutable values every stage passes along.

Everything here is plain data: no I/O, no clock. Datetimes are always aware and in UTC,
sequences are tuples, and a changed copy is made with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
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

    @property
    def is_video(self) -> bool:
        return self.kind is Kind.VIDEO

    @property
    def outlet(self) -> str:
        """The provider's name, case-folded ("" if none): one outlet, however it is written."""
        return self.provider.name.casefold() if self.provider else ""

    @property
    def related_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.related)

    @property
    def microseconds(self) -> int:
        """Publication time in whole microseconds since 1970 (exact, unlike a float)."""
        return (self.published - EPOCH) // MICROSECOND

    def summary(self, source: str) -> Summary:
        return Summary(self.id, self.microseconds, self.quality, self.outlet, self.topics,
                       self.related_ids, (source,))


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
    related_ids: tuple[str, ...]
    sources: tuple[str, ...] = ()

    @property
    def published(self) -> datetime:
        return EPOCH + self.microseconds * MICROSECOND


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
        """Other coverage: folded records first, then the lead's own ``related`` entries.

        One entry per outlet, never the lead's own outlet, in a stable order.
        """
        lead_outlet = self.lead.provider.name.casefold() if self.lead.provider else None
        seen: set[str] = {lead_outlet} if lead_outlet else set()
        found: list[Coverage] = []
        candidates = [
            Coverage(a.id, a.title, a.url, a.provider, a.published) for a in self.also
        ] + list(self.lead.related)
        for c in candidates:
            outlet = c.provider.name.casefold() if c.provider else None
            if outlet is None or outlet in seen:
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
