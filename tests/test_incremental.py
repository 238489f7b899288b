"""Rebuilds that read the parse cache and render only changed feeds must write exactly what
a build from nothing writes, and touch only the feeds a change reaches."""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from benchmarks.generate import generate
from feeds import api
from feeds.api.builds import plan_topics, render_site
from feeds.config import Config
from feeds.errors import FeedsError
from feeds.manifest import NAME as MANIFEST
from feeds.normalise import slugify
from feeds.render import FORMATS
from feeds.write import compressed_copies
from tests.conftest import SEEDS, write_record

NOW = datetime(2021, 1, 1, tzinfo=UTC)


def reference(config: Config, records: Path) -> dict[str, bytes]:
    """Every output as the plain way makes it: every record parsed, duplicates merged and
    stories ranked over whole Articles, every feed rendered (no summaries, no digests)."""
    corpus = api.load_corpus(config, seeds=records, use_cache=False)
    plans = plan_topics(config, corpus.taxonomy, corpus.articles, NOW)
    files = render_site(config, plans, lambda article: article)
    # Each file's compressed copies, as current as the file itself after every rebuild.
    return {**files, **{relative + suffix: copy for relative, data in files.items()
                        for suffix, copy in compressed_copies(relative, data).items()}}


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


@pytest.mark.slow
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
    assert (tmp_path / "cache.db.corrupt").read_bytes().startswith(b"not a database")  # set aside, for a look
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
    assert [e.sha256 for e in third] == ([e.sha256 for e in second[:4]] + [third[4].sha256]
                                         + [e.sha256 for e in second[5:]])
    assert third[4].sha256 != second[4].sha256


def test_a_row_another_build_drops_while_this_one_parses_is_parsed_again_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two builds sharing one cache_db: between this build reading a row and using it,
    the other (which saw the file as gone) deletes it. The file is parsed after all."""
    import sqlite3

    from feeds import cache
    from feeds.manifest import scan
    records, db = tmp_path / "records", tmp_path / "cache.db"
    generate(records, 10, seed=14)
    with cache.RecordCache(db) as first:
        before = list(first.index(records, scan(records), 100_000).entries)
    touched = sorted(records.glob("*.md"))[3]
    os.utime(touched, ns=(touched.stat().st_mtime_ns + 10**9,) * 2)  # same bytes, new mtime
    cache._MEMORY.clear()  # a new process: it reads the rows from the file
    real_parse_all = cache.parse_all

    def other_build_drops_the_row(todo: list[tuple[str, str | None]], max_bytes: int):  # type: ignore[no-untyped-def]
        other = sqlite3.connect(db)
        with other:
            other.execute("DELETE FROM files WHERE path = ?", (str(touched.resolve()),))
        other.close()
        yield from real_parse_all(todo, max_bytes)

    monkeypatch.setattr(cache, "parse_all", other_build_drops_the_row)
    with cache.RecordCache(db) as second:
        after = list(second.index(records, scan(records), 100_000).entries)
    assert [e.sha256 for e in after] == [e.sha256 for e in before]


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


# ------------------------------------------------------------ what the caches key on


def feeds_command(*args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m feeds`` in a new process; with ``path``, the package found there first."""
    import sys
    env = dict(os.environ, PYTHONPATH=str(path)) if path is not None else None
    return subprocess.run([sys.executable, "-m", "feeds", *args], capture_output=True, text=True, env=env,
                          check=False)


def package_copy(where: Path) -> Path:
    """This checkout's package and templates, copied to ``where`` (as a checkout elsewhere)."""
    root = Path(api.__file__).resolve().parents[2]
    shutil.copytree(root / "feeds", where / "feeds", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "templates", where / "templates")
    return where


@pytest.mark.slow
def test_an_edited_cleaning_rule_means_a_full_parse_and_render_without_a_bump(tmp_path: Path) -> None:
    records, out = tmp_path / "records", tmp_path / "out"
    generate(records, 40, seed=21)
    (tmp_path / "feeds.yaml").write_text(f"cache_db: {tmp_path / 'cache.db'}\n", encoding="utf-8")
    build = ["build", "--seeds", str(records), "--out", str(out), "--now", "2021-01-01T00:00:00Z",
             "--config", str(tmp_path / "feeds.yaml")]

    def titles() -> list[str]:
        return [item["title"] for item in json.loads((out / "topics/all/feed.json").read_bytes())["items"]]

    package = package_copy(tmp_path / "checkout")
    first = feeds_command(*build, path=package)
    assert first.returncode == 0, first.stderr
    before = titles()
    # The same code elsewhere, or touched (a checkout, a reinstall): still nothing to do.
    moved = package_copy(tmp_path / "elsewhere")
    for path in (moved / "feeds").rglob("*.py"):
        os.utime(path, ns=(1, path.stat().st_mtime_ns + 10**9))
    again = feeds_command(*build, path=moved)
    assert "Read 40 records (40 unchanged since the last build)" in again.stdout and "Wrote 0 files" in again.stdout
    # A cleaning rule changes: every title is cleaned anew, and the feeds say so.
    normalise = moved / "feeds/normalise.py"
    rule = '"title": lambda raw, notes: capped(clean_text(raw.get("title"), "title", notes),'
    assert rule in normalise.read_text(encoding="utf-8")
    normalise.write_text(normalise.read_text(encoding="utf-8").replace(
        rule, '"title": lambda raw, notes: capped((clean_text(raw.get("title"), "title", notes) or "").upper()'
              ' or None,'), encoding="utf-8")
    edited = feeds_command(*build, path=moved)
    assert edited.returncode == 0, edited.stderr
    assert "Read 40 records:" in edited.stdout  # none unchanged: all parsed again
    assert titles() == [t.upper() for t in before] != before
    # And back to the first code: parsed and rendered again, not served from the edited run.
    back = feeds_command(*build, path=package)
    assert "Read 40 records:" in back.stdout and titles() == before


def test_an_upgraded_library_means_a_full_parse_and_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from feeds import manifest
    from feeds.api import builds
    from feeds.render import feeds as renderers
    records, out = tmp_path / "records", tmp_path / "out"
    generate(records, 30, seed=22)
    config = replace(Config(), cache_db=tmp_path / "cache.db")
    first = api.build(config, now=NOW, seeds=records, out=out)
    assert api.build(config, now=NOW, seeds=records, out=out).written == ()  # nothing to do
    rendered: list[str] = []
    real = renderers.render_feeds
    monkeypatch.setattr(renderers, "render_feeds", lambda doc: rendered.append(doc.slug) or real(doc))
    monkeypatch.setattr(builds, "PARALLEL_FEEDS", 1000)  # render here, where the calls are seen
    installed = manifest.library_versions()
    monkeypatch.setattr(manifest, "library_versions", lambda: dict(installed, lxml="99.0"))
    manifest.package_fingerprint.cache_clear()
    try:
        upgraded = api.build(config, now=NOW, seeds=records, out=out)
    finally:  # the rest of this test, and the next, see the real versions
        monkeypatch.undo()
        manifest.package_fingerprint.cache_clear()
    assert upgraded.parsed == upgraded.records == 30
    assert sorted(rendered) == sorted(["all", *first.topics])  # every feed rendered again
    assert outputs(out) == reference(config, records)


def test_library_versions_come_from_the_metadata_folders_as_importlib_metadata_finds_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata
    import sys

    from feeds import manifest
    # As installed in this environment...
    assert manifest.library_versions() == {name: importlib.metadata.version(name) for name in manifest.LIBRARIES}
    # ... and in the shapes metadata folders come in: the first along sys.path wins.
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, name, version in [(first, "Jinja2-3.2.0.dist-info", "3.2.0"),
                                  (second, "jinja2-3.1.0.dist-info", "3.1.0"),
                                  (first, "mjml_python-1.5.0.dist-info", "1.5.0"),
                                  (second, "PyYAML-5.4-py3.11.egg-info", "5.4"), (first, "feeds.egg-info", "0.9.1")]:
        (folder / name).mkdir(parents=True)
        project = name.split("-")[0].split(".")[0].replace("_", "-")
        (folder / name / ("PKG-INFO" if name.endswith(".egg-info") else "METADATA")).write_text(
            f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n\nText.\n", encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(first), str(tmp_path / "missing"), str(second)])
    found = manifest.library_versions()
    assert found == {"feeds": "0.9.1", "feedgen": None, "lxml": None, "jinja2": "3.2.0", "mjml-python": "1.5.0",
                     "pyyaml": "5.4", "nh3": None, "rapidfuzz": None}
    for name, version in found.items():
        dists = list(importlib.metadata.distributions(name=name, path=sys.path))
        assert (dists[0].version if dists else None) == version, name


def test_a_cache_made_by_other_code_is_started_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from feeds.cache import RecordCache
    from feeds.manifest import scan
    records, db = tmp_path / "records", tmp_path / "cache.db"
    generate(records, 12, seed=23)
    with RecordCache(db) as cache:
        assert cache.index(records, scan(records), 100_000).parsed == 12
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = 'other code' WHERE name = 'fingerprint'")
    from feeds import cache as module
    module._MEMORY.clear()
    with RecordCache(db) as cache:
        assert cache.index(records, scan(records), 100_000).parsed == 12
    with RecordCache(db) as cache:
        assert cache.index(records, scan(records), 100_000).parsed == 0


# ------------------------------------------------------------------- a damaged cache


def damage(db: Path) -> None:
    """Overwrite pages in the middle of a SQLite file (its header and schema intact), as a
    failing disk or a torn copy would."""
    size = db.stat().st_size
    assert size > 64 * 4096, size  # enough pages that the middle is rows, not the schema
    with db.open("r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\xff" * 16 * 4096)


def warnings_in(stderr: str) -> list[dict[str, object]]:
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [e for e in events if e["level"] == "warning"]


@pytest.mark.slow
def test_a_cache_with_damaged_pages_is_set_aside_said_once_and_built_again(tmp_path: Path) -> None:
    records, db = tmp_path / "records", tmp_path / "cache.db"
    generate(records, 400, seed=24)
    (tmp_path / "feeds.yaml").write_text(f"cache_db: {db}\n", encoding="utf-8")

    def build(out: str) -> subprocess.CompletedProcess[str]:
        return feeds_command("build", "--seeds", str(records), "--out", str(tmp_path / out),
                             "--now", "2021-01-01T00:00:00Z", "--config", str(tmp_path / "feeds.yaml"))

    assert build("out").returncode == 0
    damage(db)
    # A new out/: every feed is rendered, so every page of the cache is read.
    damaged = build("again")
    assert damaged.returncode == 0, damaged.stderr
    assert "Read 400 records:" in damaged.stdout  # parsed again, from the files
    [warning] = warnings_in(damaged.stderr)
    assert str(db) in str(warning["event"]) and "set aside" in str(warning["event"])
    assert outputs(tmp_path / "again") == outputs(tmp_path / "out")
    assert (tmp_path / "cache.db.corrupt").stat().st_size > 64 * 4096  # kept for a look
    # The new cache serves the next build, with nothing more to say.
    (tmp_path / "again/.feeds-build.json").unlink()
    after = build("again")
    assert "(400 unchanged since the last build)" in after.stdout and warnings_in(after.stderr) == []


@pytest.mark.slow
def test_the_daemons_build_job_sets_a_damaged_cache_aside_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from feeds.scheduler import build_job
    records, db, out = tmp_path / "records", tmp_path / "cache.db", tmp_path / "out"
    generate(records, 400, seed=25)
    config = tmp_path / "feeds.yaml"
    config.write_text(f"seeds: {records}\nout: {out}\ncache_db: {db}\n", encoding="utf-8")
    build_job(str(config))
    first = outputs(out)
    damage(db)
    (out / MANIFEST).unlink()  # a real build, rendering every feed
    shutil.rmtree(out / "topics")
    with caplog.at_level(logging.WARNING):
        # The daemon remembers its last index, so the damage shows in the Articles it reads.
        assert build_job(str(config)).startswith("400 records (400 cached), 0 skipped")
        assert outputs(out) == first
        for cached in (0, 400):  # the new cache is filled, then serves
            (out / MANIFEST).unlink()
            assert build_job(str(config)).startswith(f"400 records ({cached} cached), 0 skipped")
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(db) in warning.getMessage() and "set aside" in warning.getMessage()
    assert (tmp_path / "cache.db.corrupt").is_file()


def test_a_cache_that_cannot_be_opened_is_an_error_naming_it_not_thrown_away(tmp_path: Path) -> None:
    records, db = tmp_path / "records", tmp_path / "cache.db"
    generate(records, 5, seed=26)
    db.mkdir()  # sqlite cannot open a folder: as a read-only or locked file, it is not damage
    (db / "keep.txt").write_text("an operator's", encoding="utf-8")
    (tmp_path / "feeds.yaml").write_text(f"cache_db: {db}\n", encoding="utf-8")
    result = feeds_command("build", "--seeds", str(records), "--out", str(tmp_path / "out"),
                           "--config", str(tmp_path / "feeds.yaml"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"Error: {db}: parse cache: unable to open database file"]
    assert (db / "keep.txt").read_text(encoding="utf-8") == "an operator's"
    assert not (tmp_path / "cache.db.corrupt").exists()


def test_the_code_fingerprint_is_read_from_the_manifest_only_while_no_package_file_moved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last build's manifest keeps the package's fingerprint by the files' names, sizes,
    inodes, mtimes and ctimes, so a build need not read the code again; an edit that keeps
    a file's size and puts its mtime back still moves its ctime, and the code is read."""
    from feeds import manifest
    package = tmp_path / "feeds"
    (package / "render").mkdir(parents=True)
    (package / "select.py").write_text("SIMILAR_SCORE = 90.0\n", encoding="utf-8")
    (package / "render" / "feeds.py").write_text("LIMIT = 20\n", encoding="utf-8")
    monkeypatch.setattr(manifest, "_PACKAGE", package)
    monkeypatch.setattr(manifest, "RACY_NS", 0)  # the files were written just now: trust them at once

    def next_process(kept: object) -> str:
        manifest.package_fingerprint.cache_clear()
        monkeypatch.setattr(manifest, "_REMEMBERED", {})
        monkeypatch.setattr(manifest, "_TRUSTED", {})
        manifest.remember_package(kept)
        return manifest.package_fingerprint()

    try:
        first = next_process(None)
        kept = manifest.remembered_package()
        assert kept is not None and kept["fingerprint"] == first
        read: list[str] = []
        real = manifest._hash_file
        monkeypatch.setattr(manifest, "_hash_file",
                            lambda digest, rel, path: read.append(rel) or real(digest, rel, path))
        assert next_process(kept) == first and read == []  # nothing moved: nothing read
        edited = package / "select.py"
        before = edited.stat()
        while time.time_ns() < before.st_ctime_ns + 20_000_000:  # past the filesystem clock's tick
            time.sleep(0.005)
        edited.write_text("SIMILAR_SCORE = 10.0\n", encoding="utf-8")  # same size
        os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old mtime
        assert next_process(kept) != first and "select.py" in read
    finally:
        monkeypatch.undo()
        manifest.package_fingerprint.cache_clear()


def test_every_library_that_shapes_the_output_is_in_the_fingerprint(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """rapidfuzz decides which near-identical titles fold into one story: another version
    of it may fold others, so after an upgrade a rebuild must not say nothing changed."""
    import sys

    from feeds import manifest
    before = manifest.package_fingerprint()
    upgraded = tmp_path / "site-packages" / "rapidfuzz-0.0.1.dist-info"
    upgraded.mkdir(parents=True)
    (upgraded / "METADATA").write_text("Metadata-Version: 2.1\nName: rapidfuzz\nVersion: 0.0.1\n", encoding="utf-8")
    monkeypatch.setattr(sys, "path", [str(upgraded.parent), *sys.path])
    manifest.package_fingerprint.cache_clear()
    try:
        assert manifest.package_fingerprint() != before
    finally:
        monkeypatch.undo()
        manifest.package_fingerprint.cache_clear()


def test_a_build_collects_garbage_less_often_and_leaves_the_collector_as_it_was(tmp_path: Path) -> None:
    """The daemon builds in a process that goes on with other jobs: a build's own
    collector setting lasts as long as the build, even one that fails."""
    records = tmp_path / "records"
    generate(records, 20, seed=5)
    config = replace(Config(), cache_db=tmp_path / "cache.db")
    before = gc.get_threshold()
    during: list[tuple[int, ...]] = []
    api.build(config, now=NOW, seeds=records, out=tmp_path / "out",
              progress=lambda done, total: during.append(gc.get_threshold()))
    assert during and all(t == (100_000, 20, 20) for t in during)
    assert gc.get_threshold() == before
    (tmp_path / "blocked").write_text("a file where the output folder should be")
    write_record(records / "new.md", url="https://example.com/one-more")  # not the last build's input
    with pytest.raises(FeedsError):
        api.build(config, now=NOW, seeds=records, out=tmp_path / "blocked")
    assert gc.get_threshold() == before


def test_a_compressed_copy_deleted_by_hand_comes_back_on_a_no_change_rebuild(tmp_path: Path) -> None:
    """The .gz/.br copies are what nginx serves to most readers: one deleted by hand must
    not wait for its feed to change to come back."""
    import gzip

    from tests.conftest import run_cli, write_record

    write_record(tmp_path / "seeds/a.md", topics=["AI"])
    args = ["build", "--seeds", str(tmp_path / "seeds"), "--out", str(tmp_path / "out"),
            "--now", "2020-06-18T00:00:00Z"]
    assert run_cli(*args).exit_code == 0
    out = tmp_path / "out"
    copy = out / "topics/ai/rss.xml.gz"
    copy.unlink()
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert gzip.decompress(copy.read_bytes()) == (out / "topics/ai/rss.xml").read_bytes()
    again = run_cli(*args)  # and then nothing is missing: the no-change shortcut holds
    assert "Wrote 0 files" in again.stdout and "unchanged" in again.stdout, again.stdout
