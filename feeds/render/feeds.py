"""Stories -> RSS 2.0, Atom 1.0, JSON Feed 1.1 and OPML 2.0 bytes. Pure: no files, no clock.

RSS and Atom go through feedgen 1.0, around three of its traps:

- Atom entry links lose ``rel`` and ``type`` (python-feedgen #135, #143): a loop variable
  shadows the link dict. :class:`_Entry` puts the attributes back.
- ``updated``/``lastBuildDate`` default to the current time: we always set them, from the
  newest item, so the same input gives byte-identical files.
- ``add_entry`` prepends by default: we append, so the feed keeps the ranking's order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator
from lxml import etree  # type: ignore[import-untyped]

import feeds
from feeds.model import ArchivedEdition, Article, Story
from feeds.render import FORMATS

JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


@dataclass(frozen=True)
class FeedDoc:
    """One topic's feed, ready to render in any format."""

    slug: str
    name: str
    title: str
    description: str
    base_url: str  # absolute, ends with "/"
    language: str
    stories: tuple[Story, ...]
    updated: datetime  # the newest item's date, never the clock

    @property
    def home_url(self) -> str:
        return f"{self.base_url}#topic-{self.slug}"

    def url(self, filename: str) -> str:
        return f"{self.base_url}topics/{self.slug}/{filename}"


# --------------------------------------------------------------------------- content


def summary_html(story: Story) -> str:
    """The item's description as safe HTML: every piece of record text is escaped, every
    URL was checked to be http(s) when the record was loaded."""
    lead = story.lead
    parts: list[str] = []
    if lead.is_video:
        source = f" from {escape(lead.provider.name)}" if lead.provider else ""
        parts.append(f"<p>▶ Video{source}</p>")
    if lead.excerpt:
        parts.append(f"<p>{escape(lead.excerpt)}</p>")
    if story.coverage:
        links = ", ".join(
            f'<a href="{escape(c.url)}">{escape(c.provider.name if c.provider else c.title)}</a>'
            for c in story.coverage
        )
        parts.append(f"<p>Also covered by {links}.</p>")
    return "\n".join(parts) or f"<p>{escape(lead.title)}</p>"


def _author(article: Article) -> dict[str, str] | None:
    if article.provider is None:
        return None
    author = {"name": article.provider.name}
    if article.provider.url:
        author["uri"] = article.provider.url
    return author


# ------------------------------------------------------------------------- feedgen


class _Entry(FeedEntry):  # type: ignore[misc]
    """FeedEntry whose Atom links keep ``rel``/``type``/``length`` (python-feedgen #135)."""

    def atom_entry(self, extensions: bool = True) -> Any:  # an lxml element
        entry = super().atom_entry(extensions)
        for element, spec in zip(entry.findall("link"), self.link(), strict=True):
            for attr in ("rel", "type", "hreflang", "title", "length"):
                if spec.get(attr):
                    element.set(attr, spec[attr])
        return entry


Html = Mapping[int, str]  # id(story) -> its summary_html, made once for a feed's three formats


def _html(doc: FeedDoc) -> Html:
    return {id(story): summary_html(story) for story in doc.stories}


def _generator(doc: FeedDoc, fmt: str, html: Html) -> FeedGenerator:
    fg = FeedGenerator()
    fg.load_extension("media", atom=True, rss=True)
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(doc.url("atom.xml"))
    fg.title(doc.title)
    fg.subtitle(doc.description)  # RSS <description> as well
    self_name = "atom.xml" if fmt == "atom" else "rss.xml"
    fg.link(href=doc.url(self_name), rel="self", type=FORMATS[self_name])
    fg.link(href=doc.home_url, rel="alternate", type="text/html")  # last: RSS <link> takes it
    fg.language(doc.language)
    fg.updated(doc.updated)
    fg.lastBuildDate(doc.updated)
    fg.generator("feeds", version=feeds.__version__)
    fg.ttl(15)
    fg.author({"name": doc.title})  # Atom needs an author; entries name their outlet
    for story in doc.stories:
        _add_entry(fg, story, fmt, html[id(story)])
    return fg


def _add_entry(fg: FeedGenerator, story: Story, fmt: str, html: str) -> None:
    lead = story.lead
    fe = fg.add_entry(_Entry(), order="append")
    fe.id(f"urn:uuid:{lead.id}")
    fe.guid(f"urn:uuid:{lead.id}", permalink=False)
    fe.title(lead.title)
    fe.link(href=lead.url, rel="alternate", type="text/html")
    fe.published(lead.published)
    fe.updated(lead.published)
    if fmt == "atom":
        fe.summary(html, type="html")
    else:
        fe.description(html)
    author = _author(lead)
    if author:
        if fmt == "atom":
            fe.author(author)
        else:
            fe.dc.dc_creator(author["name"])
    for name in lead.topics:
        fe.category(term=name)
    image = lead.image
    if image is None:
        return
    if fmt == "atom":
        # Atom has no image element; an enclosure link is what readers pick up.
        fe.link(href=image.url, rel="enclosure", type=image.mime_type)
    else:
        size = {k: str(v) for k, v in (("width", image.width), ("height", image.height)) if v}
        fe.media.content(url=image.url, medium="image", type=image.mime_type, group=None, **size)
        fe.media.thumbnail(url=image.url, group=None, **size)


def render_feeds(doc: FeedDoc) -> dict[str, bytes]:
    """All three formats of one feed, by file name: RSS 2.0 with Media RSS images and an
    ``atom:link rel="self"``, Atom 1.0 (RFC 4287) with image enclosure links, and JSON Feed
    1.1 written with the standard library. Each story's HTML is made once for all three."""
    html = _html(doc)
    return {"rss.xml": _rss(doc, html), "atom.xml": _atom(doc, html), "feed.json": _json(doc, html)}


def _rss(doc: FeedDoc, html: Html) -> bytes:
    return bytes(_generator(doc, "rss", html).rss_str(pretty=True))


def _atom(doc: FeedDoc, html: Html) -> bytes:
    return bytes(_generator(doc, "atom", html).atom_str(pretty=True))


# ------------------------------------------------------------------------ JSON Feed


def _json(doc: FeedDoc, html: Html) -> bytes:
    feed: dict[str, object] = {
        "version": JSON_FEED_VERSION,
        "title": doc.title,
        "home_page_url": doc.home_url,
        "feed_url": doc.url("feed.json"),
        "description": doc.description,
        "language": doc.language,
        "items": [_json_item(story, html[id(story)]) for story in doc.stories],
    }
    # Compact: every reader polling the feed downloads a third less, and the standard
    # library's C encoder writes it (it cannot indent).
    return (json.dumps(feed, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _json_item(story: Story, html: str) -> dict[str, object]:
    lead = story.lead
    item: dict[str, object] = {
        "id": f"urn:uuid:{lead.id}",
        "url": lead.url,
        "title": lead.title,
        "content_html": html,
        "date_published": _rfc3339(lead.published),
    }
    if lead.excerpt:
        item["summary"] = lead.excerpt
    if lead.image:
        item["image"] = lead.image.url
    author = _author(lead)
    if author:
        item["authors"] = [{"name": author["name"], **({"url": author["uri"]} if "uri" in author else {})}]
    if lead.topics:
        item["tags"] = list(lead.topics)
    return item


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------------------- OPML


def render_opml(docs: Sequence[FeedDoc], *, title: str, updated: datetime) -> bytes:
    """OPML 2.0 subscription list: one outline per topic, so an import subscribes once per
    topic. ``xmlUrl`` is the RSS feed (every reader takes it); ``atomUrl`` and ``jsonUrl``
    name the other formats of the same feed."""
    opml = etree.Element("opml", version="2.0")
    head = etree.SubElement(opml, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateModified").text = rfc5322(updated)
    body = etree.SubElement(opml, "body")
    for doc in docs:
        etree.SubElement(
            body,
            "outline",
            type="rss",
            version="RSS2",
            text=doc.name,
            title=doc.title,
            description=doc.description,
            language=doc.language,
            xmlUrl=doc.url("rss.xml"),
            htmlUrl=doc.home_url,
            atomUrl=doc.url("atom.xml"),
            jsonUrl=doc.url("feed.json"),
        )
    # lxml, which feedgen imports anyway: the standard library's ElementTree would cost
    # a rebuild that renders the list its own imports.
    return bytes(etree.tostring(opml, encoding="utf-8", xml_declaration=True, pretty_print=True))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc5322(moment: datetime) -> str:
    """``moment`` as an RFC 5322 date in GMT ("Sun, 22 Nov 2026 09:00:00 GMT"), in English
    whatever the locale: what ``email.utils.format_datetime(usegmt=True)`` gives, without
    importing the email package (8 ms) into every rebuild that renders the OPML list."""
    utc = moment.astimezone(UTC)
    return (f"{_DAYS[utc.weekday()]}, {utc.day:02d} {_MONTHS[utc.month - 1]} {utc.year:04d} "
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} GMT")


# ------------------------------------------------------------------ digest archive


def render_archive(editions: Sequence[ArchivedEdition], *, title: str, base_url: str, language: str) -> bytes:
    """Atom feed of past digest editions (their web copies), newest first."""
    fg = FeedGenerator()
    self_url = f"{base_url}newsletter/atom.xml"
    fg.id(self_url)
    fg.title(title)
    fg.subtitle("Past editions of the digest.")
    fg.link(href=self_url, rel="self", type="application/atom+xml")
    fg.link(href=base_url, rel="alternate", type="text/html")
    fg.language(language)
    fg.author({"name": title})
    fg.generator("feeds", version=feeds.__version__)
    fg.updated(max((e.period_end for e in editions), default=datetime(1970, 1, 1, tzinfo=UTC)))
    for edition in editions:
        url = base_url + edition.path
        fe = fg.add_entry(_Entry(), order="append")
        fe.id(url)
        fe.title(edition.subject)
        fe.link(href=url, rel="alternate", type="text/html")
        fe.summary(edition.summary or edition.subject)
        fe.updated(edition.period_end)
        fe.published(edition.period_end)
    return bytes(fg.atom_str(pretty=True))
