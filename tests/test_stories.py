"""Stories as readers see them (issue 11): every outlet's coverage kept, one press release
at several URLs as one story, records without quality ranked fairly, and `feeds explain`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import feedparser
from lxml import html as lxml_html

from tests.conftest import run_cli, write_record

NOW = "2020-06-18T00:00:00Z"
CORPUS_NOW = "2021-06-03T00:00:00Z"


def cover(n: int, outlet: str) -> dict[str, Any]:
    return {"title": f"Coverage {n}", "webUrl": f"https://{outlet}.example.net/{n}",
            "provider": {"name": outlet.title(), "domain": f"{outlet}.example.net"}}


def build(records: Path, out: Path, *extra: str, now: str = NOW) -> str:
    result = run_cli("build", "--seeds", str(records), "--out", str(out), "--now", now, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def all_feed(out: Path) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads((out / "topics/all/feed.json").read_text(encoding="utf-8"))["items"]
    return items


def also_covered_by(item: dict[str, Any]) -> list[str]:
    """The outlets' links under "Also covered by", as a reader's HTML parser sees them."""
    tree = lxml_html.fromstring(f"<div>{item['content_html']}</div>")
    return [a.get("href") for p in tree.xpath("//p[starts-with(., 'Also covered by')]") for a in p.xpath(".//a")]


# ----------------------------------------------------------------------- coverage


def test_a_better_ranked_record_joining_a_story_keeps_every_outlets_coverage(tmp_path: Path) -> None:
    # The real case: the lead cites one other outlet, the record folded into its story 14.
    records = tmp_path / "records"
    lead_url = "https://lead.example.com/story"
    write_record(records / "lead.md", title="Lead story", webUrl=lead_url, quality=300,
                 provider={"name": "Lead Outlet", "domain": "lead.example.com"}, related=[cover(0, "first")])
    write_record(records / "folded.md", title="Earlier take", webUrl="https://folded.example.com/take", quality=40,
                 provider={"name": "Folded Outlet", "domain": "folded.example.com"},
                 related=[{"title": "Lead story", "webUrl": lead_url, "provider": {"name": "Lead Outlet"}},
                          cover(99, "first"),  # an outlet already cited: once
                          *(cover(n, f"outlet{n}") for n in range(1, 15))])
    build(records, tmp_path / "out")
    [item] = all_feed(tmp_path / "out")
    assert item["title"] == "Lead story"
    links = also_covered_by(item)
    assert links == ["https://folded.example.com/take", "https://first.example.net/0",
                     *(f"https://outlet{n}.example.net/{n}" for n in range(1, 15))]
    assert lead_url not in links


# ---------------------------------------------------------------- neutral quality


def test_records_without_quality_rank_at_the_median_and_the_build_says_so(tmp_path: Path) -> None:
    records = tmp_path / "records"
    for n, quality in enumerate((10, 50, 90, 70)):  # median 60
        write_record(records / f"rated-{n}.md", title=f"Rated {quality}", quality=quality,
                     webUrl=f"https://example.com/rated/{n}", publishedDateTime="2020-06-17T12:00:00Z")
    # Older layout: no quality field at all. A day older than the rest: at 60 halved once
    # (48 h half-life, so 60 * 0.5 ** 0.5 = 42.4) it beats the 10 only.
    write_record(records / "unrated.md", title="Unrated", quality=None, webUrl="https://example.com/unrated",
                 publishedDateTime="2020-06-16T12:00:00Z")
    write_record(records / "zero.md", title="Scored zero", quality=0, webUrl="https://example.com/zero",
                 publishedDateTime="2020-06-17T12:00:00Z")  # quality 0 is given, not absent
    stdout = build(records, tmp_path / "out")
    assert "1 article without a quality ranked at the median, 50." in stdout  # 0, 10, 50, 70, 90
    assert [i["title"] for i in all_feed(tmp_path / "out")] == \
           ["Rated 90", "Rated 70", "Rated 50", "Unrated", "Rated 10", "Scored zero"]


def test_the_digest_ranks_records_without_quality_at_the_median_too(tmp_path: Path) -> None:
    records = tmp_path / "records"
    for n, quality in enumerate((10, 200, 30, 60)):
        write_record(records / f"rated-{n}.md", title=f"Rated {quality}", quality=quality, topics=["AI"],
                     webUrl=f"https://example.com/rated/{n}", publishedDateTime="2020-06-17T12:00:00Z",
                     provider={"name": f"Outlet {n}"})
    write_record(records / "unrated.md", title="Unrated", quality=None, topics=["AI"],
                 webUrl="https://example.com/unrated", publishedDateTime="2020-06-17T12:00:00Z",
                 provider={"name": "Outlet 9"})
    config = tmp_path / "feeds.yaml"
    config.write_text(f"seeds: {records}\nout: {tmp_path / 'out'}\nstate_db: {tmp_path / 'state.db'}\n"
                      "secret: a-test-secret-that-is-long-enough\nmail_from: D <d@news.example.org>\n",
                      encoding="utf-8")
    result = run_cli("digest", "--preview", "--topics", "ai", "--date", NOW, "--config", str(config))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out/preview/2020-06-18/ai/index.html").read_text(encoding="utf-8")
    tree = lxml_html.fromstring(page)
    titles = [" ".join(a.text_content().split()) for a in tree.xpath('//*[contains(@class,"headline")]//a')]
    assert titles == ["Rated 200", "Rated 60", "Unrated", "Rated 30", "Rated 10"]  # the median: 45


# ------------------------------------------------------------ near-identical titles


PRESS = "Provance Releases ServiceTeam a New Family of ITSM Power Apps Products"


def press_release(records: Path, name: str, title: str, url: str, published: str, quality: int = 50,
                  outlet: str = "Digital Journal") -> None:
    write_record(records / f"{name}.md", title=title, webUrl=url, publishedDateTime=published, quality=quality,
                 provider={"name": outlet})


def test_one_press_release_at_several_urls_is_one_story(tmp_path: Path) -> None:
    records = tmp_path / "records"
    press_release(records, "a", PRESS.replace("ITSM", "ISTM"), "https://dj.example.com/pr/1",
                  "2020-06-15T10:00:00Z", 60)
    press_release(records, "b", f"RE-TRANSMISSION: {PRESS}", "https://bnn.example.com/2", "2020-06-15T19:00:00Z",
                  outlet="Big News Network")
    press_release(records, "c", PRESS, "https://fn.example.com/3", "2020-06-16T07:00:00Z", outlet="Finanznachrichten")
    press_release(records, "d", f"{PRESS}.", "https://dj.example.com/pr/4", "2020-06-17T17:00:00Z")
    # Not the same story: other numbers, too far apart in time, a short generic title.
    press_release(records, "e", "Provance Releases ServiceTeam 2 a New Family of ITSM Power Apps Products",
                  "https://dj.example.com/pr/5", "2020-06-16T10:00:00Z")
    press_release(records, "f", PRESS, "https://later.example.com/6", "2020-06-25T10:00:00Z")
    press_release(records, "g", "Power Apps news", "https://x.example.com/7", "2020-06-16T10:00:00Z")
    press_release(records, "h", "Power Apps news", "https://y.example.com/8", "2020-06-16T11:00:00Z", outlet="Y")
    stdout = build(records, tmp_path / "out", now="2020-06-30T00:00:00Z")
    assert "3 articles folded into a story with a near-identical title." in stdout
    items = all_feed(tmp_path / "out")
    press = [i for i in items if "Provance" in i["title"]]
    assert [i["url"] for i in press] == ["https://later.example.com/6", "https://dj.example.com/pr/4",
                                         "https://dj.example.com/pr/5"]
    # The lead's own outlet is not "other coverage"; the rest are.
    assert also_covered_by(press[1]) == ["https://fn.example.com/3", "https://bnn.example.com/2"]
    assert len([i for i in items if i["title"] == "Power Apps news"]) == 2


def test_the_corpus_press_release_takes_one_slot_of_the_all_feed(tmp_path: Path, corpus: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"topics: {corpus / 'topics'}\nitems_per_feed: 20\nmax_items_per_provider: 5\n",
                      encoding="utf-8")
    stdout = build(corpus / "articles", tmp_path / "out", "--config", str(config), now=CORPUS_NOW)
    assert "5 articles folded into a story with a near-identical title." in stdout  # 4 Provance, 1 InfoWorld
    titles = [e.title for e in feedparser.parse((tmp_path / "out/topics/all/rss.xml").read_bytes()).entries]
    assert len(titles) == 20
    assert sum("Provance" in t for t in titles) == 1
    assert titles.count("Microsoft fleshes out Power Apps") == 1  # InfoWorld's, syndicated by Reseller News


# -------------------------------------------------------------------------- explain


def explain(records: Path, url: str, *extra: str, now: str = NOW) -> str:
    result = run_cli("explain", url, "--seeds", str(records), "--now", now, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def fates(stdout: str) -> dict[str, str]:
    """Each feed's line: slug -> what kept the article where it is."""
    return {m[0]: m[1] for m in re.findall(r"^.+? \(([a-z0-9-]+)\): .*?; ([a-z ]+): ", stdout, flags=re.M)}


def test_explain_says_why_an_article_is_where_it_is(tmp_path: Path) -> None:
    records = tmp_path / "records"
    config = tmp_path / "feeds.yaml"
    config.write_text("items_per_feed: 3\nmax_items_per_provider: 1\nmax_age_days: 10\n", encoding="utf-8")
    write_record(records / "top.md", title="Top", quality=200, webUrl="https://a.example.com/top",
                 provider={"name": "A"}, topics=["AI", "Robots"])
    write_record(records / "second-a.md", title="Second from A", quality=150, webUrl="https://a.example.com/2",
                 provider={"name": "A"}, topics=["AI"])
    write_record(records / "copy.md", title="Copy", quality=10, webUrl="https://c.example.com/copy",
                 provider={"name": "C"}, related=[{"title": "Top", "webUrl": "https://a.example.com/top",
                                                  "provider": {"name": "A"}}])
    for n in range(3):
        write_record(records / f"b{n}.md", title=f"B {n}", quality=100 - n, webUrl=f"https://b{n}.example.com/",
                     provider={"name": f"B{n}"}, topics=["Robots"])
    write_record(records / "low.md", title="Low", quality=5, webUrl="https://l.example.com/low",
                 provider={"name": "L"}, topics=["Robots"])
    write_record(records / "unrated.md", title="Unrated", quality=None, webUrl="https://u.example.com/x",
                 provider={"name": "U"}, topics=["AI"], publishedDateTime="2020-05-01T00:00:00Z")

    top = explain(records, "https://a.example.com/top?utm_source=twitter", "--config", str(config))
    assert fates(top) == {"all": "lead", "ai": "lead", "robots": "lead"}
    assert "quality 200, score " in top and "also covered by C: https://c.example.com/copy" in top

    assert fates(explain(records, "https://a.example.com/2", "--config", str(config))) == \
           {"all": "provider cap", "ai": "provider cap"}
    assert "A already led 1 better-ranked items" in explain(records, "https://a.example.com/2", "--config", str(config))
    low = explain(records, "https://l.example.com/low", "--config", str(config))
    assert fates(low) == {"all": "item limit", "robots": "item limit"}
    copy = explain(records, "https://c.example.com/copy", "--config", str(config), "--topic", "all")
    assert fates(copy) == {"all": "folded"} and "lead: Top (https://a.example.com/top)" in copy
    unrated = explain(records, "https://u.example.com/x", "--config", str(config))
    assert "quality 99 (assumed: median)" in unrated  # of 200, 150, 100, 99, 98, 10, 5
    assert fates(unrated) == {"all": "too old", "ai": "too old"}
    future = explain(records, "https://a.example.com/top", "--config", str(config), now="2020-06-01T00:00:00Z")
    assert fates(future) == {"all": "not yet published", "ai": "not yet published", "robots": "not yet published"}


def test_explain_names_what_it_cannot_find(tmp_path: Path) -> None:
    records = tmp_path / "records"
    write_record(records / "a.md")
    result = run_cli("explain", "https://example.com/nowhere", "--seeds", str(records), "--now", NOW)
    assert result.exit_code == 1 and "https://example.com/nowhere: no record under" in result.output
    result = run_cli("explain", "https://example.com/a-story", "--seeds", str(records), "--now", NOW,
                     "--topic", "nope")
    assert result.exit_code == 1 and "nope: no such topic" in result.output

