"""The bundled seeds/ are the five real Smartable records the project was started from
(police use of facial recognition, 11-15 June 2020), and they build into the stories they
tell: records that name each other in `related` are one item, led by the better one."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import feedparser
import pytest
import yaml
from lxml import html

from tests.conftest import ROOT, SEEDS, run_cli
from tests.test_build import SEEDS_NOW

SHARED_SEEDS = ROOT.parent / "shared" / "seeds"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def front(path: Path) -> dict[str, object]:
    found = yaml.safe_load(path.read_text(encoding="utf-8").split("---")[1])
    assert isinstance(found, dict)
    return found


def test_seeds_are_the_five_real_records_byte_for_byte() -> None:
    if not SHARED_SEEDS.is_dir():
        pytest.skip(f"the shared seeds are not beside the checkout ({SHARED_SEEDS})")
    ours = sorted(p for p in SEEDS.rglob("*") if p.is_file())
    theirs = sorted(p for p in SHARED_SEEDS.rglob("*") if p.is_file())
    assert len(theirs) == 5
    assert sorted(map(sha256, ours)) == sorted(map(sha256, theirs))


def test_seed_files_are_named_by_date_and_read_by_the_loader() -> None:
    # The loader reads *.md and *.markdown only: a seed under another name would vanish.
    for path in SEEDS.iterdir():
        assert path.suffix == ".md", path
        published = front(path)["publishedDateTime"]
        assert isinstance(published, datetime)
        assert path.name.startswith(f"{published.date().isoformat()}-"), path


def seed_urls() -> dict[str, str]:
    """Each seed's outlet -> its webUrl, as the record itself gives them."""
    found: dict[str, str] = {}
    for path in SEEDS.glob("*.md"):
        record = front(path)
        provider = record["provider"]
        assert isinstance(provider, dict)
        found[provider["name"]] = str(record["webUrl"])
    assert len(found) == 5  # five outlets: the name says which record
    return found


def covered_by(summary: str) -> dict[str, str]:
    """An item's "Also covered by" links: outlet -> URL."""
    tree = html.fragment_fromstring(summary, create_parent="div")
    return {a.text_content(): a.get("href") for p in tree.iter("p")
            if p.text_content().startswith("Also covered by") for a in p.iter("a")}


@pytest.mark.parametrize("name", ["rss.xml", "atom.xml"])
def test_the_seeds_tell_three_stories(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    result = run_cli("build", "--seeds", str(SEEDS), "--out", str(out), "--now", SEEDS_NOW)
    assert result.exit_code == 0, result.output
    feed = feedparser.parse((out / "topics/all" / name).read_bytes())
    assert not feed.bozo, feed.get("bozo_exception")
    url = seed_urls()
    items = {e.author: e for e in feed.entries}
    # MSPoweruser and the Washington Post are folded into stories, not items of their own.
    assert sorted(items) == ["BBC", "Forbes", "Mic"] and len(feed.entries) == 3
    assert not {url["MSPoweruser"], url["Washington Post"]} & {e.link for e in feed.entries}

    # Mic (quality 42) and MSPoweruser (38) name each other: Mic leads.
    mic = items["Mic"]
    assert mic.link == url["Mic"] and covered_by(mic.summary)["MSPoweruser"] == url["MSPoweruser"]
    # The Washington Post's record names the BBC's (89 against 0): the BBC leads.
    bbc = items["BBC"]
    assert bbc.link == url["BBC"] and covered_by(bbc.summary)["Washington Post"] == url["Washington Post"]
    # Forbes names no other seed and no seed names it: a story of its own.
    forbes = items["Forbes"]
    assert forbes.link == url["Forbes"]
    assert covered_by(forbes.summary) and not set(covered_by(forbes.summary).values()) & set(url.values())
    assert all(url["Forbes"] not in covered_by(e.summary).values() for e in feed.entries)
