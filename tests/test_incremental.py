"""Rebuilds that read the parse cache and render only changed feeds must write exactly what
a build from nothing writes, and touch only the feeds a change reaches."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from benchmarks.generate import generate
from feeds import api
from feeds.api.builds import plan_topics, render_site
from feeds.config import Config
from feeds.manifest import NAME as MANIFEST
from feeds.normalise import slugify
from feeds.render import FORMATS
from tests.conftest import SEEDS, write_record

NOW = datetime(2021, 1, 1, tzinfo=UTC)


def reference(config: Config, records: Path) -> dict[str, bytes]:
    """Every output as the plain way makes it: every record parsed, duplicates merged and
    stories ranked over whole Articles, every feed rendered (no summaries, no digests)."""
    corpus = api.load_corpus(config, seeds=records, use_cache=False)
    plans = plan_topics(config, corpus.taxonomy, corpus.articles, NOW)
    return render_site(config, plans, lambda article: article)


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != MANIFEST}


def front(path: Path) -> dict[str, object]:
    return yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])  # type: ignore[no-any-return]


def write(path: Path, fields: dict[str, object]) -> None:
    path.write_text("---\n" + yaml.safe_dump(fields, sort_keys=False, allow_unicode=True) + "---\n",
                    encoding="utf-8")


def mutate(rng: random.Random, records: Path, step: int) -> str:
    """One change of the kinds a news archive sees, chosen by ``rng``; says which."""
    paths = sorted(records.glob("*.md"))
    added = [p for p in paths if p.name.startswith("zz-")]  # records in stories: change them often
    path = rng.choice(added if added and rng.random() < 0.5 else paths)
    try:
        other = front(rng.choice(paths))
    except yaml.YAMLError:  # one broken earlier
        other = {"webUrl": "https://example.com/gone"}
    kind = rng.choice(["quality", "topics", "delete", "duplicate", "related", "title", "broken",
                       "touch", "new topic", "date", "near copy", "unrated"])
    try:
        fields = front(path)
    except yaml.YAMLError:
        fields = None
    if kind == "delete" or fields is None:
        path.unlink()
        return f"deleted {path.name}"
    if kind == "touch":
        os.utime(path, ns=(1, path.stat().st_mtime_ns + 10**9))
        return f"touched {path.name}"
    if kind == "broken":
        path.write_text("---\ntitle: [unclosed\n---\n", encoding="utf-8")
        return f"broke {path.name}"
    if kind == "duplicate":  # the same page again (amp copy), better or worse
        copy = dict(fields, webUrl=str(fields.get("webUrl", "https://example.com/x")) + "/amp/",
                    quality=rng.randrange(1, 400), topics=[rng.choice(["Topic AI", "Topic Chips"])],
                    related=[{"title": f"Coverage {step}", "webUrl": f"https://cover.example.net/{step}",
                              "provider": {"name": f"Cover {step}"}},
                             {"title": "Same story", "webUrl": other.get("webUrl"), "provider": {"name": "Y"}}])
        write(records / f"zz-dup-{step}.md", copy)
        return f"duplicated {path.name}"
    if kind == "related":  # new coverage naming an existing record: one story
        new = dict(fields, title=f"Follow-up {step}", webUrl=f"https://follow.example.org/{step}",
                   quality=rng.randrange(1, 400),
                   related=[{"title": "Earlier", "webUrl": other.get("webUrl"), "provider": {"name": "X"}}])
        write(records / f"zz-related-{step}.md", new)
        return f"related to another record, from zz-related-{step}.md"
    if kind == "near copy" and other.get("title"):  # one press release at another URL: one story
        copy = dict(other, title=f"RE-TRANSMISSION: {other['title']}", webUrl=f"https://wire.example.org/{step}",
                    quality=rng.randrange(1, 400), related=[])
        write(records / f"zz-wire-{step}.md", copy)
        return f"near copy of another record, in zz-wire-{step}.md"
    if kind == "quality":
        fields["quality"] = rng.randrange(0, 400)
    elif kind == "unrated":  # Smartable's older layout: ranked at the median of the rest
        fields.pop("quality", None)
    elif kind == "topics":
        fields["topics"] = rng.sample(["Topic AI", "Topic Robotics", "Topic Chips", "Topic Space"], 2)
    elif kind == "new topic":
        fields["topics"] = [f"Brand New {step}"]
    elif kind == "title":
        fields["title"] = f"Retitled {step}"
    elif kind == "date":
        fields["publishedDateTime"] = datetime(2020, 12, rng.randrange(1, 31), tzinfo=UTC)
    write(path, fields)
    return f"{kind} of {path.name}"


@pytest.mark.parametrize("process", ["resident", "new each time"])
def test_rebuilds_write_what_a_build_from_nothing_writes(tmp_path: Path, process: str) -> None:
    # Resident: one process rebuilds (the daemon), reusing its memory of the last index.
    # New each time: every rebuild reads the cache afresh (the command).
    from feeds.cache import _MEMORY
    records = tmp_path / "records"
    generate(records, 120, seed=3)
    for seed in SEEDS.glob("*.md"):
        shutil.copy(seed, records / seed.name)
    # Feeds long enough to hold most records, so most changes reach one.
    config = replace(Config(), cache_db=tmp_path / "cache.db", items_per_feed=40, max_items_per_provider=8)
    out = tmp_path / "out"
    api.build(config, now=NOW, seeds=records, out=out)
    rng = random.Random(2026)
    for step in range(40):
        changes = [mutate(rng, records, step * 10 + i) for i in range(rng.choice((1, 1, 2, 3)))]
        if process != "resident":
            _MEMORY.clear()
        report = api.build(config, now=NOW, seeds=records, out=out)
        assert outputs(out) == reference(config, records), changes
        assert report.parsed <= len(changes) * 2, (changes, report.parsed)


def test_one_changed_record_rewrites_only_its_topics_feeds(tmp_path: Path) -> None:
    records = tmp_path / "records"
    generate(records, 300, seed=8)
    config = replace(Config(), cache_db=tmp_path / "cache.db", items_per_feed=10)
    out = tmp_path / "out"
    api.build(config, now=NOW, seeds=records, out=out)
    # A record good enough to enter its feeds: every feed it is in must change.
    path = sorted(records.glob("*.md"))[123]
    fields = front(path)
    write(path, dict(fields, quality=10_000, publishedDateTime=datetime(2020, 12, 31, tzinfo=UTC)))
    report = api.build(config, now=NOW, seeds=records, out=out)
    assert report.parsed == 1
    topics = {slugify(t) for t in fields["topics"]}  # type: ignore[attr-defined]
    feeds = {name.split("/")[1] for name in report.written if name.startswith("topics/")}
    assert feeds == topics | {"all"}
    # The index page lists headlines, and both it and the OPML list say when news last came.
    assert set(report.written) - {f"topics/{t}/{f}" for t in feeds for f in FORMATS} <= {"index.html", "feeds.opml"}
    assert outputs(out) == reference(config, records)


def test_a_build_without_the_cache_writes_what_the_plain_way_makes(tmp_path: Path) -> None:
    records = tmp_path / "records"
    generate(records, 150, seed=4)
    config = replace(Config(), cache_db=tmp_path / "cache.db", items_per_feed=30)
    api.build(config, now=NOW, seeds=records, out=tmp_path / "out", use_cache=False)
    assert outputs(tmp_path / "out") == reference(config, records)


def test_a_duplicate_that_names_a_lead_folds_its_whole_group_into_that_story(tmp_path: Path) -> None:
    # C and B are one page (B is its amp copy); C ranks higher, but only B names A.
    # Merged, they carry B's related entry, so the page folds into A's story.
    records = tmp_path / "records"
    a = {"webUrl": "https://a.example.com/lead", "title": "Lead", "quality": 300,
         "provider": {"name": "Outlet A"}}
    write_record(records / "a.md", **a)
    write_record(records / "b.md", webUrl="https://c.example.com/page/amp/", title="Amp copy", quality=20,
                 provider={"name": "Outlet C"},
                 related=[{"title": "Lead", "webUrl": a["webUrl"], "provider": {"name": "Outlet A"}}])
    write_record(records / "c.md", webUrl="https://c.example.com/page", title="Page", quality=90,
                 provider={"name": "Outlet C"})
    write_record(records / "d.md", webUrl="https://d.example.com/other", title="Other", quality=60)
    config = replace(Config(), cache_db=tmp_path / "cache.db")
    out = tmp_path / "out"
    api.build(config, now=NOW, seeds=records, out=out)
    feed = json.loads((out / "topics/all/feed.json").read_text(encoding="utf-8"))
    assert [item["title"] for item in feed["items"]] == ["Lead", "Other"]
    assert outputs(out) == reference(config, records)


def test_summaries_keep_every_date_to_the_microsecond(tmp_path: Path) -> None:
    from feeds.cache import _MEMORY, RecordCache
    from feeds.manifest import scan

    records = tmp_path / "records"
    dates = ["1900-01-01T00:00:00.000001Z", "2020-06-17T12:34:56.999999+02:00", "2099-12-31T23:59:59.5Z"]
    for i, date in enumerate(dates):
        write_record(records / f"{i}.md", publishedDateTime=date, webUrl=f"https://example.com/{i}")
    for _ in range(2):  # parsed, then read back from the cache (not this process's memory of it)
        _MEMORY.clear()
        with RecordCache(tmp_path / "cache.db") as cache:
            index = cache.index(records, scan(records), 100_000)
            articles = cache.articles(index, [e.key for e in index.entries])
        assert [e.summary.published for e in index.entries if e.summary] == \
               [articles[e.key].published for e in index.entries] == \
               [datetime.fromisoformat(d) for d in dates]


def test_a_cache_that_is_not_a_database_is_started_again(tmp_path: Path) -> None:
    records = tmp_path / "records"
    generate(records, 20, seed=9)
    cache = tmp_path / "cache.db"
    cache.write_bytes(b"not a database, perhaps half a file left by a crash" * 100)
    config = replace(Config(), cache_db=cache)
    first = api.build(config, now=NOW, seeds=records, out=tmp_path / "out")
    assert first.parsed == first.records == 20 and not first.skipped
    second = api.build(config, now=NOW, seeds=records, out=tmp_path / "again")
    assert second.parsed == 0 and outputs(tmp_path / "again") == outputs(tmp_path / "out")


def test_compiled_templates_are_kept_and_never_outlive_their_source_or_settings(tmp_path: Path) -> None:
    import sqlite3

    from feeds.cache import RecordCache, template_cache
    from feeds.render import jinja_env
    db, folder = tmp_path / "cache.db", tmp_path / "templates"
    folder.mkdir()
    RecordCache(db).__exit__(None, None, None)  # the cache's tables, as a build leaves them
    page = folder / "page.html"
    page.write_text("{% if x %}\n<p>{{ x }}</p>\n{% endif %}\n", encoding="utf-8")

    def render(**settings: bool) -> str:
        env = jinja_env(folder, bytecode_cache=template_cache(db))
        for name, value in settings.items():
            setattr(env, name, value)
        return env.get_template("page.html").render(x="<b>")

    def stored() -> list[bytes]:
        with sqlite3.connect(db) as conn:
            return [row[0] for row in conn.execute("SELECT code FROM templates ORDER BY key")]

    assert render() == "<p>&lt;b&gt;</p>\n"
    first = stored()
    assert len(first) == 1 and render() == "<p>&lt;b&gt;</p>\n" and stored() == first  # loaded, not compiled again
    # Other settings give other code: a cache keyed on the name alone would give the page above.
    assert render(trim_blocks=False, lstrip_blocks=False) == "\n<p>&lt;b&gt;</p>\n\n"
    assert len(stored()) == 2
    page.write_text("<i>{{ x }}</i>\n", encoding="utf-8")  # a changed source is compiled again
    assert render() == "<i>&lt;b&gt;</i>\n"
    assert len(stored()) == 2 and first[0] not in stored()
    with sqlite3.connect(db) as conn:  # a damaged entry is compiled again, not trusted
        conn.execute("UPDATE templates SET code = ?", (first[0][:40] + b"\xff" * 8,))
    page.write_text("{% if x %}\n<p>{{ x }}</p>\n{% endif %}\n", encoding="utf-8")
    assert render() == "<p>&lt;b&gt;</p>\n"
    assert template_cache(None) is None


def test_a_build_keeps_the_index_page_template_compiled_and_no_cache_keeps_nothing(tmp_path: Path) -> None:
    import sqlite3
    records = tmp_path / "records"
    generate(records, 20, seed=6)
    config = replace(Config(), cache_db=tmp_path / "cache.db")
    api.build(config, now=NOW, seeds=records, out=tmp_path / "out")
    with sqlite3.connect(config.cache_db) as conn:
        assert conn.execute("SELECT count(*) FROM templates").fetchone() == (1,)
    # Rebuilds render the page from that code: test_rebuilds_write_what_a_build_from_nothing_writes
    # holds them to a build that compiles it.
    api.build(replace(config, cache_db=tmp_path / "unused.db"), now=NOW, seeds=records, out=tmp_path / "o2",
              use_cache=False)
    assert not (tmp_path / "unused.db").exists()


def test_a_resident_process_reuses_its_last_index_until_another_writes_the_cache(tmp_path: Path) -> None:
    import subprocess
    import sys

    from feeds.cache import RecordCache
    from feeds.manifest import scan
    records, db = tmp_path / "records", tmp_path / "cache.db"
    generate(records, 30, seed=12)

    def index() -> list[object]:
        with RecordCache(db) as cache:
            return list(cache.index(records, scan(records), 100_000).entries)

    first = index()
    second = index()
    assert second == first and all(a is b for a, b in zip(first, second, strict=True))  # from memory
    # Another process changes a record and builds: the cache's generation moves on, so
    # this process reads the cache again rather than trust its memory.
    path = sorted(records.glob("*.md"))[4]
    path.write_text(path.read_text(encoding="utf-8").replace("quality: ", "quality: 9", 1), encoding="utf-8")
    config = tmp_path / "feeds.yaml"
    config.write_text(f"cache_db: {db}\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "feeds", "build", "--seeds", str(records), "--out", str(tmp_path / "out"),
                    "--now", "2021-01-01T00:00:00Z", "--config", str(config)], check=True, capture_output=True)
    third = index()
    assert not any(a is b for a, b in zip(second, third, strict=True))
    assert [e.sha256 for e in third] == [e.sha256 for e in second[:4]] + [third[4].sha256] + [e.sha256 for e in second[5:]]
    assert third[4].sha256 != second[4].sha256


def test_a_cache_deleted_under_a_resident_process_is_read_again_not_remembered(tmp_path: Path) -> None:
    records = tmp_path / "records"
    generate(records, 25, seed=13)
    config = replace(Config(), cache_db=tmp_path / "cache.db")
    api.build(config, now=NOW, seeds=records, out=tmp_path / "out")
    for stale in tmp_path.glob("cache.db*"):
        stale.unlink()
    write_record(records / "new.md", title="Fresh news", quality=400)  # something to render
    report = api.build(config, now=NOW, seeds=records, out=tmp_path / "out")
    assert report.parsed == 26 and "topics/all/rss.xml" in report.written
    assert outputs(tmp_path / "out") == reference(config, records)
