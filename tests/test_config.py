"""The config file: defaults, layering, relative paths and clear errors."""

from __future__ import annotations

from pathlib import Path

import feedparser
import pytest

from feeds.config import Config, load_config
from feeds.errors import ConfigError
from tests.conftest import SEEDS, run_cli, write_record


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "feeds.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.base_url == "http://localhost:8000/" and config.items_per_feed == 50


def test_file_overrides_defaults_and_resolves_paths_against_itself(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "title: AI Daily\nbase_url: https://example.org/news\n"
                                         "seeds: ../records\nout: public\nhalf_life_hours: 12\n"))
    assert config.title == "AI Daily"
    assert config.base_url == "https://example.org/news/"
    assert config.seeds == tmp_path / "conf" / "../records"
    assert config.out == tmp_path / "conf" / "public"
    assert config.half_life.total_seconds() == 12 * 3600
    assert config.language == "en"  # untouched keys keep their defaults


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).items_per_feed == Config().items_per_feed


@pytest.mark.parametrize("text, message", [
    ("titel: typo\n", "unknown key 'titel'; known keys:"),
    ("base_url: ftp://example.org/\n", "base_url: expected an absolute http(s) URL"),
    ("base_url: /relative/\n", "base_url: expected an absolute http(s) URL"),
    ("items_per_feed: 0\n", "items_per_feed: expected a whole number of at least 1"),
    ("items_per_feed: ten\n", "items_per_feed: expected a whole number of at least 1"),
    ("half_life_hours: -3\n", "half_life_hours: expected a number greater than 0"),
    ("language: english please\n", "language: expected a language tag"),
    ("max_items_per_provider: true\n", "max_items_per_provider: expected a whole number"),
    ("- a list\n", "expected a mapping of keys at the top level"),
    ("title: [unclosed\n", "not valid YAML"),
    ("topics:\n  - shortname: no name\n", "topics: topic definition"),
    ("topics:\n  - {name: AI}\n  - {name: ai}\n", "topic 'ai' is defined more than once"),
    ("topics: missing-folder\n", "missing-folder: cannot read"),
    ("digest_items_per_topic: 0\n", "digest_items_per_topic: expected a whole number of at least 1"),
    ("smtp:\n  port: 70000\n", "smtp: port: expected a port number"),
    ("smtp:\n  retries: yes\n", "smtp: retries: expected a whole number of at least 0"),
    ("smtp:\n  password: hunter2\n", "the password comes from FEEDS_SMTP_PASSWORD"),
    ("schedule:\n  daily_digest_at: '7 am'\n", "schedule: daily_digest_at: '7 am' is not a time"),
    ("schedule:\n  weekly_digest_at: '07:00'\n", "weekly_digest_at: expected a day and HH:MM"),
    ("schedule:\n  build_every_minutes: 0\n", "build_every_minutes: expected a number greater than 0"),
    ("schedule:\n  build_cron: 'not a cron'\n", "schedule: build_cron:"),
    ("serve:\n  cache_seconds: -1\n", "serve: cache_seconds: expected a whole number of seconds"),
    ("timezone: Mars/Olympus\n", "timezone: unknown time zone 'Mars/Olympus'"),
])
def test_bad_config_names_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "items_per_feed: many\n")
    result = run_cli("build", "--config", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}: items_per_feed:")
    assert "Traceback" not in result.output


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("build", "--config", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "cannot read" in result.output


def test_inline_topic_definitions_nest_and_answer_to_aliases(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "a.md", title="Chips", topics=["ML hardware"], webUrl="https://example.com/chips")
    write_record(seeds / "b.md", title="Ethics", topics=["AI Ethics"], webUrl="https://example.com/ethics")
    config = write(tmp_path, """
topics:
  - _id: artificial-intelligence
    name: Artificial Intelligence
    description: Everything AI.
  - _id: ai-hardware
    name: AI Hardware
    shortname: ML hardware
    parent: Artificial Intelligence
  - _id: ai-ethics
    name: AI Ethics
    parent: artificial-intelligence
""")
    out = tmp_path / "out"
    result = run_cli("build", "--config", str(config), "--seeds", str(seeds), "--out", str(out))
    assert result.exit_code == 0, result.output
    parent = feedparser.parse((out / "topics/artificial-intelligence/rss.xml").read_bytes())
    assert parent.feed.description == "Everything AI."
    assert {e.title for e in parent.entries} == {"Chips", "Ethics"}
    assert [e.title for e in feedparser.parse((out / "topics/ai-hardware/rss.xml").read_bytes()).entries] == ["Chips"]
    assert not (out / "topics/ml-hardware").exists()


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    config = write(tmp_path, f"seeds: {SEEDS}\nout: from-file\n")
    result = run_cli("build", "--config", str(config), "--out", str(tmp_path / "from-flag"),
                     "--now", "2020-06-18T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-flag/topics/ai/rss.xml").is_file()
    assert not (tmp_path / "conf/from-file").exists()


SMARTABLE_TOPIC = "taxonomy: topic\n_id: canvas-apps\nname: Canvas apps\nparent: Power Apps\n"


@pytest.mark.parametrize("ending", ["---\n", "---", "---\n---\n", "--- \n# the end\n", "...\n---\n"])
def test_a_topic_file_may_end_with_empty_documents(tmp_path: Path, ending: str) -> None:
    """Smartable's own topic files often end with a '---' line: an empty second document."""
    (tmp_path / "conf/topics").mkdir(parents=True)
    (tmp_path / "conf/topics/canvas.yaml").write_text(SMARTABLE_TOPIC + ending, encoding="utf-8")
    config = load_config(write(tmp_path, "topics: topics\n"))
    assert [(t.slug, t.name, t.parent) for t in config.topics] == [("canvas-apps", "Canvas apps", "Power Apps")]
    assert config.topic_errors == ()


def test_a_second_document_with_content_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/both.yaml").write_text(SMARTABLE_TOPIC + "---\n_id: portals\nname: Portals\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "topics: both.yaml\n"))
    assert f"{tmp_path / 'conf/both.yaml'}: not valid YAML: holds 2 YAML documents" in str(caught.value)


def test_one_bad_file_in_a_topics_folder_costs_only_its_topics(tmp_path: Path) -> None:
    topics = tmp_path / "conf/topics"
    topics.mkdir(parents=True)
    (topics / "a-good.yaml").write_text(SMARTABLE_TOPIC, encoding="utf-8")
    (topics / "b-two-docs.yaml").write_text("name: One\n---\nname: Two\n", encoding="utf-8")
    (topics / "c-malformed.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    (topics / "d-not-utf8.yaml").write_bytes(b"name: caf\xe9\n")
    (topics / "e-list.yaml").write_text("- just\n- words\n", encoding="utf-8")
    (topics / "f-no-name.yaml").write_text("_id: nameless\n", encoding="utf-8")
    (topics / "g-unreadable.yaml").mkdir()  # a folder by a topic file's name: cannot be read
    (topics / "h-good.yml").write_text("_id: portals\nname: Portals\n", encoding="utf-8")
    config = load_config(write(tmp_path, "topics: topics\n"))
    assert [t.slug for t in config.topics] == ["canvas-apps", "portals"]
    reasons = {e.path.name: e.reason for e in config.topic_errors}
    assert sorted(reasons) == ["b-two-docs.yaml", "c-malformed.yaml", "d-not-utf8.yaml", "e-list.yaml",
                               "f-no-name.yaml", "g-unreadable.yaml"]
    assert "holds 2 YAML documents" in reasons["b-two-docs.yaml"]
    assert reasons["c-malformed.yaml"].startswith("not valid YAML")
    assert reasons["e-list.yaml"] == "expected a topic definition (a mapping)"
    assert "has no name" in reasons["f-no-name.yaml"]
    assert reasons["g-unreadable.yaml"].startswith("cannot read")


def test_the_corpus_topic_files_load_with_a_closing_document_marker(tmp_path: Path, corpus: Path) -> None:
    """The corpus's topic files, each with the '---' line Smartable's files often end with."""
    (tmp_path / "conf/topics").mkdir(parents=True)
    for file in sorted((corpus / "topics").glob("*.yaml")):
        text = file.read_text(encoding="utf-8")
        (tmp_path / "conf/topics" / file.name).write_text(text + "\n---\n", encoding="utf-8")
    config = load_config(write(tmp_path, "topics: topics\n"))
    assert len(config.topics) == 7 and config.topic_errors == ()


def test_a_topic_name_with_controls_or_a_lone_surrogate_does_not_stop_the_build(tmp_path: Path) -> None:
    """A topic file's name reaches the OPML list, the index and every feed, as a record's
    title does: the characters no feed can carry (YAML's "\\uD800" escape, a "\\v") are
    cleaned there too, rather than aborting the whole build with a traceback."""
    topics = tmp_path / "conf/topics"
    topics.mkdir(parents=True)
    (topics / "a-surrogate.yaml").write_text('_id: ai\nname: "AI \\uD800 news"\ndescription: "Bad \\uD800"\n',
                                             encoding="utf-8")
    (topics / "b-control.yaml").write_text('_id: robots\nname: "Robots\\vand drones"\n', encoding="utf-8")
    write_record(tmp_path / "seeds/a.md", topics=["AI", "Robots"])
    config = write(tmp_path, f"topics: topics\nseeds: {tmp_path / 'seeds'}\nout: {tmp_path / 'out'}\n")
    result = run_cli("build", "--config", str(config), "--now", "2020-06-18T00:00:00Z")
    assert result.exit_code == 0, result.output
    from lxml import etree
    opml = etree.parse(str(tmp_path / "out/feeds.opml"))
    assert [o.get("text") for o in opml.iter("outline")] == ["All topics", "AI news", "Robots and drones"]
    feed = feedparser.parse((tmp_path / "out/topics/ai/atom.xml").read_bytes())
    assert not feed.bozo and feed.feed.title.endswith("AI news")


def test_a_topic_defined_again_in_a_later_file_skips_that_file_only(tmp_path: Path) -> None:
    """A copied topic file (same ``_id``) used to stop the whole build with a config error:
    one bad file in a folder costs its own topics only, with a line naming the first file."""
    topics = tmp_path / "conf/topics"
    topics.mkdir(parents=True)
    (topics / "a-ai.yaml").write_text("_id: ai\nname: AI\n", encoding="utf-8")
    (topics / "b-ai-copy.yaml").write_text("_id: ai\nname: AI again\n", encoding="utf-8")
    (topics / "c-list.yaml").write_text("- _id: robots\n  name: Robots\n- _id: robots\n  name: Bots\n",
                                        encoding="utf-8")
    (topics / "d-portals.yaml").write_text("_id: portals\nname: Portals\n", encoding="utf-8")
    write_record(tmp_path / "seeds/a.md", topics=["AI", "Portals"])
    config = write(tmp_path, f"topics: topics\nseeds: {tmp_path / 'seeds'}\nout: {tmp_path / 'out'}\n")
    result = run_cli("build", "--config", str(config), "--now", "2020-06-18T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert f"skipped {topics / 'b-ai-copy.yaml'}: topic 'ai' is already defined in {topics / 'a-ai.yaml'}" \
        in result.output
    assert f"skipped {topics / 'c-list.yaml'}: defines topic 'robots' more than once" in result.output
    from lxml import etree
    opml = etree.parse(str(tmp_path / "out/feeds.opml"))
    assert [o.get("text") for o in opml.iter("outline")] == ["All topics", "AI", "Portals"]


def test_a_topic_defined_twice_in_the_config_itself_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="topic 'ai' is defined more than once"):
        load_config(write(tmp_path, "topics:\n  - _id: ai\n    name: AI\n  - _id: ai\n    name: AI 2\n"))


def test_a_topic_file_redefining_an_inline_topic_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "conf/topics").mkdir(parents=True)
    (tmp_path / "conf/topics/ai.yaml").write_text("_id: ai\nname: AI\n", encoding="utf-8")
    config = load_config(write(tmp_path, "topics:\n  - _id: ai\n    name: AI\n  - topics\n"))
    assert [t.slug for t in config.topics] == ["ai"]
    assert [e.reason for e in config.topic_errors] == ["topic 'ai' is already defined in the config"]


def test_a_topic_file_with_a_huge_name_is_skipped_with_the_reason(tmp_path: Path) -> None:
    """A record's topic name is limited to 100 characters; a definition's was not, and a
    100,000-character name reached the OPML list and the index page."""
    topics = tmp_path / "conf/topics"
    topics.mkdir(parents=True)
    (topics / "huge.yaml").write_text(f"_id: huge\nname: {'x' * 100_000}\n", encoding="utf-8")
    (topics / "ok.yaml").write_text("_id: ai\nname: AI\n", encoding="utf-8")
    write_record(tmp_path / "seeds/a.md", topics=["AI"])
    config = write(tmp_path, f"topics: topics\nseeds: {tmp_path / 'seeds'}\nout: {tmp_path / 'out'}\n")
    result = run_cli("build", "--config", str(config), "--now", "2020-06-18T00:00:00Z")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "huge.yaml" in line)
    assert "is longer than 100 characters" in line and len(line) < 300
    assert "x" * 101 not in (tmp_path / "out/feeds.opml").read_text(encoding="utf-8")
    assert "x" * 101 not in (tmp_path / "out/index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("text", [
    "_id: portals\nname: Portal pages\ndescription: Sites\nname: Portals\n",  # fastyaml's subset
    "_id: portals\nname: Portal pages  # first\ndescription: Sites\nname: Portals\n",  # PyYAML's
], ids=["plain", "with a comment"])
def test_a_key_given_twice_in_a_topic_file_is_noted_and_the_build_goes_on(tmp_path: Path, text: str) -> None:
    topics = tmp_path / "conf/topics"
    topics.mkdir(parents=True)
    (topics / "portals.yaml").write_text(text, encoding="utf-8")
    write_record(tmp_path / "conf/seeds/a.md", topics=["portals"])
    config = write(tmp_path, "topics: topics\n")
    result = run_cli("build", "--config", str(config), "--now", "2020-06-18T00:00:00Z")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note ")]
    assert notes == [f"note    {topics / 'portals.yaml'}: name: given more than once; the last one is used"]
    feed = feedparser.parse((tmp_path / "conf/out/topics/portals/rss.xml").read_bytes())
    assert not feed.bozo and feed.feed.title.endswith("Portals")
