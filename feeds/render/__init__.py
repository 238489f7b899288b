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
    return env


def longdate(day: date | datetime) -> str:
    """17 June 2020"""
    return f"{day.day} {day:%B %Y}"


def shortdate(moment: datetime, zone: tzinfo = UTC) -> str:
    """17 Jun 2020, 14:05 in ``zone``"""
    local = moment.astimezone(zone)
    return f"{local.day} {local:%b %Y, %H:%M}"
