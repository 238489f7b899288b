"""End to end: run the real CLI on real records and parse everything it wrote."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
import yaml
from lxml import etree, html

from feeds import api
from feeds.api.builds import prepare_stories
from feeds.config import Config, load_config
from feeds.load import iter_records
from feeds.select import merge_duplicates
from feeds.taxonomy import build_taxonomy
from tests.conftest import SEEDS, run_cli, write_record, write_video

# After the seeds (11-15 June 2020) and the coverage they cite (up to 17 June).
SEEDS_NOW = "2020-06-18T00:00:00Z"
CORPUS_NOW = "2021-06-03T00:00:00Z"


def build(seeds: Path, out: Path, *extra: str, now: str = SEEDS_NOW) -> str:
    result = run_cli("build", "--seeds", str(seeds), "--out", str(out), "--now", now, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every published file; the build's own bookkeeping (.feeds-build.json) is not one."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def expected_docs(seeds: Path, now: str, config: Config | None = None) -> list[api.FeedDoc]:
    """What the library says each feed should hold, to compare with what parsers read back."""
    config = config or Config()
    articles = [r.article for r in iter_records(seeds, config.max_record_bytes) if r.article]
    merged = prepare_stories(merge_duplicates(articles, config.half_life)).articles
    moment = datetime.fromisoformat(now)
    return api.plan_feeds(config, build_taxonomy(config.topics, merged), merged, moment)


def assert_feeds_parse_back_intact(out: Path, docs: list[api.FeedDoc]) -> None:
    for doc in docs:
        folder = out / "topics" / doc.slug
        want = [(s.lead.title, s.lead.url, f"urn:uuid:{s.lead.id}", s.lead.published) for s in doc.stories]
        for name in ("rss.xml", "atom.xml"):
            data = (folder / name).read_bytes()
            etree.fromstring(data)  # well-formed XML, or lxml raises
            parsed = feedparser.parse(data)
            assert not parsed.bozo, (folder / name, parsed.get("bozo_exception"))
            assert parsed.feed.title == doc.title
            got = [(e.title, e.link, e.id, datetime(*e.published_parsed[:6], tzinfo=UTC)) for e in parsed.entries]
            assert got == want, folder / name
        feed = json.loads((folder / "feed.json").read_bytes())
        assert [(i["title"], i["url"], i["id"], datetime.fromisoformat(i["date_published"]))
                for i in feed["items"]] == want


def test_seeds_build_writes_the_public_layout(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = build(SEEDS, out)
    topics = {"all", "ai", "aws-ai", "computer-vision", "natural-language-processing"}
    assert {p.name for p in (out / "topics").iterdir()} == topics
    for slug in topics:
        assert sorted(p.name for p in (out / "topics" / slug).iterdir()) == [  # each with its compressed copies
            f"{name}{suffix}" for name in ("atom.xml", "feed.json", "rss.xml") for suffix in ("", ".br", ".gz")]
    assert (out / "feeds.opml").is_file() and (out / "index.html").is_file()
    assert "Read 5 records: 5 articles, 0 skipped" in stdout
    assert "4 topics (+ all). Wrote 17 files" in stdout
    assert_feeds_parse_back_intact(out, expected_docs(SEEDS, SEEDS_NOW))


def test_seeds_ai_feed_folds_related_coverage_into_stories(tmp_path: Path) -> None:
    build(SEEDS, tmp_path / "out")
    feed = feedparser.parse((tmp_path / "out/topics/ai/rss.xml").read_bytes())
    providers = [e.get("author") for e in feed.entries]
    assert providers == ["Mic", "Forbes", "BBC"]  # MSPoweruser and Washington Post folded in
    mic = feed.entries[0]
    assert "Also covered by" in mic.summary and "mspoweruser.com" in mic.summary
    forbes = feed.entries[1]
    assert "techcrunch.com" in forbes.summary and "cnet.com" in forbes.summary


def test_every_item_carries_image_author_and_categories(tmp_path: Path) -> None:
    build(SEEDS, tmp_path / "out")
    folder = tmp_path / "out/topics/ai"
    rss = feedparser.parse((folder / "rss.xml").read_bytes())
    atom = feedparser.parse((folder / "atom.xml").read_bytes())
    feed = json.loads((folder / "feed.json").read_bytes())
    for r, a, j in zip(rss.entries, atom.entries, feed["items"], strict=True):
        assert r.media_content[0]["url"] == j["image"] and r.media_content[0]["medium"] == "image"
        enclosure = [link for link in a.links if link.rel == "enclosure"]
        assert enclosure and enclosure[0].href == j["image"] and enclosure[0].type.startswith("image/")
        assert a.author == r.author == j["authors"][0]["name"]
        assert [t.term for t in r.tags] == [t.term for t in a.tags] == j["tags"]
        assert r.summary and a.summary and j["content_html"]


def test_video_items_show_their_thumbnail_never_an_iframe(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    write_video(seeds / "video.md")  # newest and best: it leads the AI feed
    build(seeds, tmp_path / "out")
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert b"iframe" not in path.read_bytes().lower(), path
    bbc = json.loads((tmp_path / "out/topics/ai/feed.json").read_bytes())["items"][0]
    assert bbc["image"] == "https://i.ytimg.com/vi/Xq3m8cWT0yE/maxresdefault.jpg"
    assert "Video from BBC" in bbc["content_html"]


def test_secured_is_never_output(tmp_path: Path) -> None:
    build(SEEDS, tmp_path / "out")
    secrets = [yaml.safe_load(p.read_text().split("---")[1])["secured"] for p in SEEDS.glob("*.md")]
    blob = b"".join(snapshot(tmp_path / "out").values())
    assert secrets and not any(s.encode() in blob or s.split(";")[0][:24].encode() in blob for s in secrets)


def test_two_builds_give_identical_bytes(tmp_path: Path) -> None:
    build(SEEDS, tmp_path / "one")
    build(SEEDS, tmp_path / "two")
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


def test_a_later_clock_with_no_new_records_changes_nothing(tmp_path: Path) -> None:
    build(SEEDS, tmp_path / "one", now="2020-06-18T00:00:00Z")
    build(SEEDS, tmp_path / "two", now="2020-07-18T00:00:00Z")
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(SEEDS, out)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    stdout = build(SEEDS, out)
    assert "Wrote 0 files" in stdout and "17 unchanged" in stdout
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == before


def test_a_new_record_rewrites_only_the_feeds_it_belongs_to(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    out = tmp_path / "out"
    build(seeds, out)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")
              if p.is_file() and not p.name.startswith(".")}
    # Older than the newest seed (Mic's, 15 June), so the OPML list's dateModified stands.
    write_record(seeds / "new.md", title="Chatbots learn to read tax forms", topics=["Natural Language Processing"],
                 webUrl="https://example.com/tax-forms", publishedDateTime="2020-06-14T12:00:00Z", quality=500)
    stdout = build(seeds, out)
    changed = {str(p.relative_to(out)) for p, stat in before.items()
               if (p.stat().st_ino, p.stat().st_mtime_ns) != stat}
    assert changed == {f"{path}{suffix}" for path in {
        f"topics/{slug}/{name}" for slug in ("all", "natural-language-processing")
        for name in ("rss.xml", "atom.xml", "feed.json")} | {"index.html"} for suffix in ("", ".gz", ".br")}
    assert "Wrote 7 files" in stdout
    feed = feedparser.parse((out / "topics/natural-language-processing/atom.xml").read_bytes())
    assert feed.entries[0].title == "Chatbots learn to read tax forms"


def test_no_file_lands_outside_out(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    for i, topic in enumerate(["../../escape", "/etc/passwd", "..", "all", "AWS AI", "Ünïcode Tópic", "人工知能"]):
        write_record(seeds / f"{i}.md", title=f"T{i}", topics=[topic], webUrl=f"https://example.com/{i}")
    out = tmp_path / "deep" / "out"
    build(seeds, out)
    everything = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    # Besides out/: the records, and the parse cache where the config says.
    outside = {p for p in everything if not str(p).startswith(("deep/out/", "seeds/", "feeds-cache.db"))}
    assert outside == set()
    slugs = {p.name for p in (out / "topics").iterdir()}
    assert {"aws-ai", "unicode-topic", "topic-all", "all"} <= slugs
    assert any(s.startswith("topic-") and s != "topic-all" for s in slugs)  # 人工知能
    assert not {"escape", "etc-passwd"} & slugs


def test_out_through_a_symlink_is_written_inside_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real-out"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    build(SEEDS, tmp_path / "link")
    assert (real / "topics/ai/rss.xml").is_file()


def test_opml_lists_every_topic_feed(tmp_path: Path) -> None:
    build(SEEDS, tmp_path / "out")
    opml = etree.parse(str(tmp_path / "out/feeds.opml")).getroot()
    assert opml.get("version") == "2.0"
    outlines = opml.findall("body/outline")
    assert next(o.get("text") for o in outlines) == "All topics"
    slugs = sorted(p.name for p in (tmp_path / "out/topics").iterdir())
    assert sorted(o.get("xmlUrl").split("/")[-2] for o in outlines) == slugs
    for o in outlines:
        assert o.get("type") == "rss" and o.get("xmlUrl").endswith("/rss.xml")
        assert o.get("atomUrl").endswith("/atom.xml") and o.get("jsonUrl").endswith("/feed.json")


def test_index_page_links_and_autodiscovers_every_feed(tmp_path: Path) -> None:
    build(SEEDS, tmp_path / "out")
    page = html.fromstring((tmp_path / "out/index.html").read_bytes())
    alternates = page.xpath('//link[@rel="alternate"]')
    slugs = [p.name for p in (tmp_path / "out/topics").iterdir()]
    assert len(alternates) == 3 * len(slugs)
    assert {a.get("type") for a in alternates} == {
        "application/rss+xml", "application/atom+xml", "application/feed+json"}
    hrefs = {a.get("href") for a in page.xpath("//a")}
    for slug in slugs:
        for name in ("rss.xml", "atom.xml", "feed.json"):
            assert f"http://localhost:8000/topics/{slug}/{name}" in hrefs


def test_config_sets_title_base_url_language_and_limit(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "title: Daily AI\nbase_url: https://news.example.org/ai\nlanguage: en-GB\nitems_per_feed: 2\n"
        "max_items_per_provider: 1\n", encoding="utf-8")
    build(SEEDS, tmp_path / "out", "--config", str(config))
    rss = feedparser.parse((tmp_path / "out/topics/ai/rss.xml").read_bytes())
    assert rss.feed.title == "Daily AI: AI" and rss.feed.language == "en-GB"
    assert len(rss.entries) == 2
    self_links = [link.href for link in rss.feed.links if link.rel == "self"]
    assert self_links == ["https://news.example.org/ai/topics/ai/rss.xml"]
    assert_feeds_parse_back_intact(tmp_path / "out", expected_docs(SEEDS, SEEDS_NOW, load_config(config)))


def test_corpus_build_writes_valid_feeds_for_every_topic(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "out"
    stdout = build(corpus / "articles", out, now=CORPUS_NOW)
    assert "Read 192 records: 191 articles, 0 skipped, 1 duplicates folded." in stdout
    found = {p.name for p in (out / "topics").iterdir()}
    assert found == {"all", "power-apps", "portals", "teams-integration", "model-driven-apps",
                     "canvas-apps", "ai-builder", "common-data-service"}
    assert_feeds_parse_back_intact(out, expected_docs(corpus / "articles", CORPUS_NOW))


@pytest.mark.slow
def test_corpus_topic_definitions_nest_sub_topics_into_their_parent(tmp_path: Path, corpus: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(f"topics: {corpus / 'topics'}\nitems_per_feed: 500\n", encoding="utf-8")
    out = tmp_path / "out"
    build(corpus / "articles", out, "--config", str(config), now=CORPUS_NOW)
    parent = {e.id for e in feedparser.parse((out / "topics/power-apps/atom.xml").read_bytes()).entries}
    for child in ("portals", "canvas-apps", "ai-builder", "teams-integration"):
        ids = {e.id for e in feedparser.parse((out / f"topics/{child}/atom.xml").read_bytes()).entries}
        assert ids and ids <= parent, child
    assert_feeds_parse_back_intact(out, expected_docs(corpus / "articles", CORPUS_NOW, load_config(config)))


def test_now_excludes_articles_published_later(tmp_path: Path, corpus: Path) -> None:
    build(corpus / "articles", tmp_path / "out", now="2020-10-01T00:00:00Z")
    feed = json.loads((tmp_path / "out/topics/all/feed.json").read_bytes())
    assert feed["items"]
    assert all(i["date_published"] < "2020-10-01" for i in feed["items"])


@pytest.mark.parametrize("args, message", [
    (["--seeds", "/nonexistent/records"], "no such folder of records"),
    (["--now", "yesterday"], "is not an ISO-8601 date"),
])
def test_bad_arguments_get_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("build", "--out", str(tmp_path / "out"), *args)
    assert result.exit_code != 0 and message in result.output


def test_python_dash_m_runs_the_same_command(tmp_path: Path) -> None:
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "feeds", "build", "--seeds", str(SEEDS), "--out",
                           str(tmp_path / "out"), "--now", SEEDS_NOW], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out/topics/all/rss.xml").is_file()


def test_the_command_exits_quickly_yet_says_everything_and_keeps_its_status(tmp_path: Path) -> None:
    # A finished build skips the interpreter's teardown (os._exit): what it printed, and a
    # skipped record's status under --strict, must still come out, into a pipe too.
    import subprocess
    import sys
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    (seeds / "broken.md").write_text("---\ntitle: [unclosed\n---\n", encoding="utf-8")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as on most machines
    done = subprocess.run([sys.executable, "-m", "feeds", "build", "--seeds", str(seeds), "--out",
                           str(tmp_path / "out"), "--now", SEEDS_NOW, "--strict"],
                          capture_output=True, text=True, check=False, env=buffered)
    assert done.returncode == 1
    assert done.stdout.startswith("Read 6 records") and "Wrote 17 files" in done.stdout
    assert done.stdout.endswith(" s.\n")
    assert "skipped" in done.stderr and "broken.md" in done.stderr
    again = subprocess.run([sys.executable, "-m", "feeds", "build", "--seeds", str(SEEDS), "--out",
                            str(tmp_path / "out2"), "--now", SEEDS_NOW], capture_output=True, text=True, check=False,
                           env=buffered)
    assert again.returncode == 0 and "Wrote 17 files" in again.stdout


def test_a_long_run_on_a_terminal_shows_a_progress_bar(tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys
    seeds = tmp_path / "seeds"
    for i in range(600):
        write_record(seeds / f"{i}.md", title=f"Story {i}", webUrl=f"https://example.com/{i}")
    controller, terminal = pty.openpty()
    done = subprocess.run([sys.executable, "-m", "feeds", "build", "--seeds", str(seeds), "--out",
                           str(tmp_path / "out")], stdin=terminal, stdout=terminal, stderr=terminal,
                          timeout=120, check=False)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: everything has been read
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert done.returncode == 0
    assert b"Reading records" in shown and b"100%" in shown
    assert b"Read 600 records: 600 articles" in shown


def test_a_rebuild_parses_only_changed_records(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    out = tmp_path / "out"
    assert "unchanged since the last build" not in build(seeds, out)
    assert "Read 5 records (5 unchanged since the last build)" in build(seeds, out)
    record = next(seeds.glob("2020-06-15-amazon-is-banning-cops*.md"))  # Mic's: it leads the AI feed
    record.write_text(record.read_text().replace("Amazon is banning cops", "Amazon is barring cops"))
    stdout = build(seeds, out)
    assert "Read 5 records (4 unchanged since the last build)" in stdout
    assert feedparser.parse((out / "topics/ai/rss.xml").read_bytes()).entries[0].title.startswith(
        "Amazon is barring cops")
    os.utime(record, ns=(1, 1))  # touched, same bytes: read and hashed, not parsed
    assert "Read 5 records (5 unchanged since the last build)" in build(seeds, out)
    record.unlink()
    assert "Read 4 records (4 unchanged" in build(seeds, out)
    assert "Read 4 records: 4 articles" in build(seeds, out, "--no-cache")


def test_a_build_with_nothing_new_stops_early_and_says_the_same(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    shutil.copy(Path(__file__).parent / "data/bad/missing-title.md", seeds)
    out = tmp_path / "out"
    first = run_cli("build", "--seeds", str(seeds), "--out", str(out), "--now", SEEDS_NOW)
    again = run_cli("build", "--seeds", str(seeds), "--out", str(out), "--now", "2020-07-01T00:00:00Z")
    assert again.exit_code == first.exit_code == 0
    # The same report (skips included), nothing written.
    assert again.stderr == first.stderr and "missing title" in again.stderr
    assert "Read 6 records (6 unchanged since the last build): 5 articles, 1 skipped" in again.stdout
    assert "Wrote 0 files" in again.stdout


def test_a_future_record_is_published_when_its_time_comes(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    write_record(seeds / "later.md", title="Published this evening", webUrl="https://example.com/later",
                 publishedDateTime="2020-06-17T20:00:00Z", quality=400)
    out = tmp_path / "out"
    build(seeds, out, now="2020-06-17T18:00:00Z")
    titles = [e.title for e in feedparser.parse((out / "topics/ai/rss.xml").read_bytes()).entries]
    assert "Published this evening" not in titles
    build(seeds, out, now="2020-06-17T19:00:00Z")  # nothing to do yet
    build(seeds, out, now="2020-06-17T21:00:00Z")  # inputs unchanged, but its time has come
    titles = [e.title for e in feedparser.parse((out / "topics/ai/rss.xml").read_bytes()).entries]
    assert titles[0] == "Published this evening"


def test_a_deleted_output_or_a_changed_template_means_a_real_build(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(SEEDS, out)
    (out / "topics/ai/atom.xml").unlink()
    assert "Wrote 1 file" in build(SEEDS, out)
    assert (out / "topics/ai/atom.xml").is_file()
    templates = tmp_path / "templates"
    from feeds.render import templates_dir
    shutil.copytree(templates_dir(), templates)
    from feeds import manifest
    inputs_before = manifest.fingerprint(Config(), SEEDS, templates)
    (templates / "index.html").write_text((templates / "index.html").read_text() + "<!-- edited -->")
    inputs_after = manifest.fingerprint(Config(), SEEDS, templates)
    assert inputs_before != inputs_after


def test_a_change_renders_only_the_feeds_whose_stories_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import feeds.render.feeds as renderers
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    out = tmp_path / "out"
    build(seeds, out)
    rendered: list[str] = []
    real = renderers.render_feeds

    def counting(doc: api.FeedDoc) -> dict[str, bytes]:  # the real renderer, watched
        rendered.append(doc.slug)
        return real(doc)

    monkeypatch.setattr(renderers, "render_feeds", counting)
    write_record(seeds / "new.md", title="Chatbots learn to read tax forms", topics=["Natural Language Processing"],
                 webUrl="https://example.com/tax-forms", publishedDateTime="2020-06-14T12:00:00Z", quality=500)
    build(seeds, out)
    assert sorted(rendered) == ["all", "natural-language-processing"]
    assert_feeds_parse_back_intact(out, expected_docs(seeds, SEEDS_NOW))


def test_a_change_no_feed_shows_renders_nothing_and_loads_no_renderer(tmp_path: Path) -> None:
    # A record too old for any feed changes: every output stands, so the rebuild must not
    # pay for importing Jinja or feedgen (a fresh interpreter, as the command runs).
    import subprocess
    import sys

    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    old = write_record(seeds / "old.md", title="Old news", publishedDateTime="2019-01-01T00:00:00Z",
                       webUrl="https://example.com/old")
    config = tmp_path / "feeds.yaml"
    config.write_text("max_age_days: 30\n", encoding="utf-8")
    out = tmp_path / "out"
    command = ["build", "--seeds", str(seeds), "--out", str(out), "--now", SEEDS_NOW, "--config", str(config)]
    assert "Wrote 17 files" in run_cli(*command).stdout
    before = snapshot(out)
    write_record(old, title="Old news, corrected", publishedDateTime="2019-01-01T00:00:00Z",
                 webUrl="https://example.com/old")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "feeds", *command],
                            capture_output=True, text=True, check=True)
    assert "(5 unchanged since the last build)" in result.stdout and "Wrote 0 files" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"feeds.cache", "feeds.select"} <= imported  # the list is the real one
    assert not imported & {"jinja2", "feedgen", "feeds.render.feeds"}
    assert snapshot(out) == before


def test_a_rebuild_with_nothing_to_do_imports_no_library_parser_or_logging(tmp_path: Path) -> None:
    # Its start-up is most of its time: the manifest check runs before any of these.
    import subprocess
    import sys

    command = ["build", "--seeds", str(SEEDS), "--out", str(tmp_path / "out"), "--now", SEEDS_NOW]
    build(SEEDS, tmp_path / "out")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "feeds", *command],
                            capture_output=True, text=True, check=True)
    assert "Read 5 records (5 unchanged since the last build)" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"feeds.manifest", "click"} <= imported  # the list is the real one
    # Nor importlib.metadata: the libraries' versions come from their folders' names.
    assert not imported & {"feeds.cache", "feeds.load", "feeds.model", "yaml", "logging", "sqlite3",
                           "importlib.metadata"}


def test_a_build_does_not_import_the_digest_machinery() -> None:
    # The CLI's build imports feeds.api lazily; a rebuild must not pay for SQLAlchemy.
    import subprocess
    import sys

    code = ("import sys, feeds.api as api; api.build; "
            "print(sorted(api.__all__) == sorted(api._MODULES), 'sqlalchemy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False"]


def test_a_bad_topic_file_is_reported_and_the_build_goes_on(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "a.md", title="Canvas news", topics=["Canvas apps"], webUrl="https://example.com/a")
    write_record(seeds / "b.md", title="Portal news", topics=["Portals"], webUrl="https://example.com/b")
    topics = tmp_path / "topics"
    topics.mkdir()
    (topics / "canvas.yaml").write_text("_id: canvas-apps\nname: Canvas apps\nparent: Power Apps\n---\n",
                                        encoding="utf-8")
    (topics / "power-apps.yaml").write_text("_id: power-apps\nname: Power Apps\n", encoding="utf-8")
    (topics / "portals.yaml").write_text("_id: portals\nname: [unclosed\n", encoding="utf-8")
    config = tmp_path / "feeds.yaml"
    config.write_text("topics: topics\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ("build", "--seeds", str(seeds), "--out", str(out), "--config", str(config), "--now", SEEDS_NOW)
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"skipped {topics / 'portals.yaml'}: not valid YAML: "
                                          + result.stderr.split("not valid YAML: ", 1)[1].splitlines()[0]]
    assert "1 topic file skipped" in result.stdout
    power_apps = feedparser.parse((out / "topics/power-apps/rss.xml").read_bytes())
    assert [e.title for e in power_apps.entries] == ["Canvas news"]  # the good definitions stand
    portals = feedparser.parse((out / "topics/portals/rss.xml").read_bytes())
    assert [e.title for e in portals.entries] == ["Portal news"]  # an undefined topic, as records name it
    strict = run_cli(*args, "--strict")  # nothing changed: the shortcut's report says the same
    assert strict.exit_code == 1 and strict.stderr == result.stderr and "Wrote 0 files" in strict.stdout


def test_records_of_one_page_are_folded_with_a_line_naming_both_files(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "a-original.md", title="Chips", webUrl="https://www.example.com/chips", quality=40)
    write_record(seeds / "b-amp.md", title="Chips (amp)", webUrl="https://example.com/chips/amp/?utm_source=x",
                 quality=90)
    write_record(seeds / "c-other.md", title="Other", webUrl="https://example.com/other")
    result = run_cli("build", "--seeds", str(seeds), "--out", str(tmp_path / "out"), "--now", SEEDS_NOW)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"note    {seeds / 'a-original.md'}: same page as {seeds / 'b-amp.md'} (one canonical URL); "
        f"{seeds / 'b-amp.md'} was kept, the better ranked"]
    assert "3 records: 2 articles, 0 skipped, 1 duplicates folded" in result.stdout
    rss = feedparser.parse((tmp_path / "out/topics/all/rss.xml").read_bytes())
    assert sorted(e.title for e in rss.entries) == ["Chips (amp)", "Other"]


# ------------------------------------------------- what a killed or hostile run leaves


def children_of(pid: int) -> list[int]:
    """``pid``'s child processes, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running_with(marker: str) -> list[int]:
    """Processes, not zombies (they have exited), whose command line names ``marker``:
    a build and every worker it forked, whoever their parent is now."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes() and \
                    (cmdline.parent / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                found.append(int(cmdline.parent.name))
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").is_file() or (os.cpu_count() or 1) < 2,
                    reason="needs Linux's /proc and two cores for worker processes")
@pytest.mark.parametrize("pool, records", [("parse", 2000), ("render", 300)])
def test_workers_die_with_a_killed_build(tmp_path: Path, pool: str, records: int) -> None:
    # 2,000 records: parsed by workers (400 or more). 300: parsed here, but their 40
    # topics' feeds rendered by workers (8 feeds or more).
    import signal
    import subprocess
    import sys
    import time

    from benchmarks.generate import generate
    generate(tmp_path / "records", records, seed=31)
    build = subprocess.Popen([sys.executable, "-m", "feeds", "build", "--seeds", str(tmp_path / "records"),
                              "--out", str(tmp_path / "out"), "--now", "2021-01-01T00:00:00Z"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = str(tmp_path / "records")
    try:
        deadline = time.monotonic() + 60
        while not children_of(build.pid) and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert build.poll() is None, "the build ended before it started workers"
        build.send_signal(signal.SIGKILL)
        build.wait()
        deadline = time.monotonic() + 5
        while running_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running_with(marker) == []
    finally:
        for pid in running_with(marker):  # without the fix: they would stay for good
            os.kill(pid, signal.SIGKILL)


def test_a_killed_writes_temporary_files_are_removed_by_the_next_build(tmp_path: Path) -> None:
    import subprocess
    import sys
    out = tmp_path / "out"
    build(SEEDS, out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone = int(dead.stdout)  # a process that has exited: its files are leftovers
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        leftovers = [out / f".index.html.{gone}.0.tmp", out / f"topics/ai/.rss.xml.{gone}.3.tmp"]
        kept = [out / f"topics/ai/.atom.xml.{alive.pid}.0.tmp",  # another build, mid-write
                out / "topics/ai/.notes.tmp", elsewhere / f".rss.xml.{gone}.0.tmp"]
        for path in leftovers + kept:
            path.write_bytes(b"<rss>half")
        (out / "topics/linked").symlink_to(elsewhere)  # not followed out of out/
        (out / "topics/ai/rss.xml").unlink()  # something to build
        build(SEEDS, out)
        assert [p for p in leftovers if p.exists()] == []
        assert all(p.exists() for p in kept)
    finally:
        alive.kill()
        alive.wait()


def test_removing_a_topics_old_feeds_never_follows_a_symlink_out_of_out(tmp_path: Path) -> None:
    seeds, out, elsewhere = tmp_path / "seeds", tmp_path / "out", tmp_path / "elsewhere"
    shutil.copytree(SEEDS, seeds)
    build(seeds, out)
    elsewhere.mkdir()
    for name in ("rss.xml", "atom.xml", "feed.json"):
        (elsewhere / name).write_text("someone else's", encoding="utf-8")
    (out / "topics/zzz").symlink_to(elsewhere)
    # The manifest says the last build wrote topics/zzz's feeds: this build would remove them.
    manifest = json.loads((out / ".feeds-build.json").read_text(encoding="utf-8"))
    manifest["outputs"].update({f"topics/zzz/{name}": 14 for name in ("rss.xml", "atom.xml", "feed.json")})
    (out / ".feeds-build.json").write_text(json.dumps(manifest), encoding="utf-8")
    write_record(seeds / "new.md", title="Something new", webUrl="https://example.com/new")
    result = run_cli("build", "--seeds", str(seeds), "--out", str(out), "--now", SEEDS_NOW)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in elsewhere.iterdir()) == ["atom.xml", "feed.json", "rss.xml"]
    assert {p.read_text(encoding="utf-8") for p in elsewhere.iterdir()} == {"someone else's"}
    assert "removed" not in result.stdout
    warnings = [json.loads(line) for line in result.stderr.splitlines()]  # one line per file refused
    assert {w["event"] for w in warnings} == {"not removed: its path leads outside the output folder"}
    assert sorted(w["path"] for w in warnings) == [str(out / "topics/zzz" / name)
                                                   for name in ("atom.xml", "feed.json", "rss.xml")]


def test_a_topic_named_all_and_one_named_topic_all_keep_two_feeds(tmp_path: Path) -> None:
    """Both used to land in topics/topic-all/, titled "all", and "topic-all" vanished from
    the OPML list: two names must never share a feed unless their slugs are equal."""
    seeds = tmp_path / "seeds"
    write_record(seeds / "a.md", title="Everything story", topics=["all"], webUrl="https://example.com/a")
    write_record(seeds / "b.md", title="Topic-all story", topics=["topic-all"], webUrl="https://example.com/b")
    out = tmp_path / "out"
    build(seeds, out)
    named_all = feedparser.parse((out / "topics/topic--all/atom.xml").read_bytes())
    named_topic_all = feedparser.parse((out / "topics/topic-all/atom.xml").read_bytes())
    assert not named_all.bozo and not named_topic_all.bozo
    assert [e.title for e in named_all.entries] == ["Everything story"]
    assert [e.title for e in named_topic_all.entries] == ["Topic-all story"]
    outlines = {o.get("text"): o.get("xmlUrl") for o in etree.parse(str(out / "feeds.opml")).iter("outline")}
    assert "/topics/topic--all/" in outlines["all"] and "/topics/topic-all/" in outlines["topic-all"]
