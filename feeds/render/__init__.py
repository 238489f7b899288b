"""Renderers: selected stories in, bytes out. Nothing here touches files or the clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from feeds.paths import templates_dir

if TYPE_CHECKING:  # imported when an environment is made: a build that renders nothing
    import jinja2  # never pays for Jinja

FORMATS = {  # a feed's file name -> media type; a public contract, as subscribers' URLs depend on it
    "rss.xml": "application/rss+xml",
    "atom.xml": "application/atom+xml",
    "feed.json": "application/feed+json",
}


def _escape_unless_plain_text(name: str | None) -> bool:
    return not (name or "").endswith(".txt")


def jinja_env(folder: Path | None = None, bytecode_cache: jinja2.BytecodeCache | None = None) -> jinja2.Environment:
    """A Jinja environment that escapes every template but plain text (``.txt``).

    ``select_autoescape()`` only covers .html/.xml names and so leaves ``.mjml`` raw;
    record text is untrusted, so markup is always escaped, whatever its suffix.
    """
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder or templates_dir()),
        autoescape=_escape_unless_plain_text,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=bytecode_cache,
    )
    env.filters["longdate"] = longdate
    env.filters["shortdate"] = shortdate
    env.filters["shorten"] = shorten
    return env


def shorten(text: str, limit: int) -> str:
    """``text`` with its whitespace folded, and if longer than ``limit`` characters, cut at
    a word boundary with an ellipsis ("…"). Should the last word boundary leave less than
    half the limit (a long word, such as a URL), the word is cut where the limit falls."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " ":  # the limit falls inside a word: drop its start
        space = cut.rfind(" ")
        if space >= limit // 2:
            cut = cut[:space]
    return (cut.rstrip(" .,;:-\u2013\u2014·") or cut) + "…"  # no dangling dash or comma


def longdate(day: date | datetime) -> str:
    """17 June 2020"""
    return f"{day.day} {day:%B %Y}"


def shortdate(moment: datetime, zone: tzinfo = UTC) -> str:
    """17 Jun 2020, 14:05 in ``zone``"""
    local = moment.astimezone(zone)
    return f"{local.day} {local:%b %Y, %H:%M}"
