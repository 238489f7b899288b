"""The ``out/index.html`` landing page: every topic, its feeds and its top headlines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import jinja2

from feeds.model import Article
from feeds.render import FORMATS
from feeds.render.feeds import FeedDoc

FORMAT_LABELS = {"rss.xml": "RSS", "atom.xml": "Atom", "feed.json": "JSON Feed"}


@dataclass(frozen=True)
class IndexTopic:
    """A topic as the index page lists it: its feed's fields, how many stories the feed
    holds and the leads of the first few (all the page shows of them)."""

    feed: FeedDoc
    count: int
    headlines: tuple[Article, ...]

    @property
    def slug(self) -> str:
        return self.feed.slug

    @property
    def name(self) -> str:
        return self.feed.name

    @property
    def title(self) -> str:
        return self.feed.title

    def url(self, filename: str) -> str:
        return self.feed.url(filename)


def render_index(
    env: jinja2.Environment, topics: Sequence[IndexTopic], *, title: str, description: str,
    language: str, updated: datetime,
) -> bytes:
    """A plain page listing topics with links, and ``<link rel="alternate">`` autodiscovery
    for every feed so a browser or reader pointed at the site finds them all."""
    page = env.get_template("index.html").render(
        title=title,
        description=description,
        language=language,
        updated=updated,
        docs=topics,
        formats=[(name, FORMAT_LABELS[name], media_type) for name, media_type in FORMATS.items()],
        opml_url=(topics[0].feed.base_url if topics else "") + "feeds.opml",
    )
    return page.encode("utf-8")
