"""The ``out/index.html`` landing page: every topic, its feeds and its top headlines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import jinja2

from feeds.render.feeds import FORMATS, FeedDoc

FORMAT_LABELS = {"rss.xml": "RSS", "atom.xml": "Atom", "feed.json": "JSON Feed"}


def render_index(
    env: jinja2.Environment, docs: Sequence[FeedDoc], *, title: str, description: str,
    language: str, updated: datetime, headlines: int = 3,
) -> bytes:
    """A plain page listing topics with links, and ``<link rel="alternate">`` autodiscovery
    for every feed so a browser or reader pointed at the site finds them all."""
    page = env.get_template("index.html").render(
        title=title,
        description=description,
        language=language,
        updated=updated,
        docs=docs,
        formats=[(name, FORMAT_LABELS[name], media_type) for name, media_type in FORMATS.items()],
        headlines=headlines,
        opml_url=(docs[0].base_url if docs else "") + "feeds.opml",
    )
    return page.encode("utf-8")
