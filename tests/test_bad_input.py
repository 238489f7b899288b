"""Every kind of bad record gets one line naming the file and the reason; the run goes on
and no good record is lost. Fixtures are real files in tests/data/bad/."""

from __future__ import annotations

import shutil
from pathlib import Path

import feedparser
import pytest

from feeds.config import Config
from feeds.load import load_record
from tests.conftest import DATA, run_cli, write_record

BAD = DATA / "bad"

# file -> the reason its one line must give. Skipped records are lost on purpose.
SKIPPED = {
    "malformed-yaml.md": "malformed YAML: line 4: did not find expected key",
    "no-front-matter.md": "no front matter: the first line must be '---'",
    "unclosed-front-matter.md": "no front matter: no closing '---' line",
    "empty.md": "empty file",
    "missing-title.md": "missing title",
    "missing-date.md": "missing publishedDateTime",
    "bad-date.md": "publishedDateTime: not a date: 'last Tuesday-ish'",
    "title-wrong-type.md": "title: expected text, got list",
    "not-a-mapping.md": "front matter is a list, not a mapping of fields",
    "javascript-url.md": "no usable URL",
    "alias-bomb.md": "YAML aliases to lists or mappings are not allowed",
    "not-utf8.md": "not UTF-8: byte 0xe9 at offset",
}
# file -> (what the note says, what the kept article looks like)
KEPT = {
    "kept-control-characters.md": ("title: control characters removed", "Bell and null in the title"),
    "kept-raw-control-bytes.md": ("control characters removed from the file", "Raw bell and C1 bytes in the file"),
    "kept-html-and-script.md": ("title: HTML removed", "Bold claims"),
    "kept-javascript-image.md": ("images: an image URL is not an absolute http(s) URL", "A good story with a bad picture"),
    "kept-path-topic.md": ("topics: '../../x' is not a usable topic name; dropped", "A topic that tries to climb out"),
    "kept-quality-wrong-type.md": ("quality: expected a number, got str; using 0", "Quality written as a word"),
}


def test_every_fixture_has_an_expectation() -> None:
    assert {p.name for p in BAD.glob("*.md")} == set(SKIPPED) | set(KEPT)


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_bad_record_is_skipped_with_file_and_reason(name: str) -> None:
    result = load_record(BAD / name, Config().max_record_bytes)
    assert result.article is None and result.error is not None
    assert result.error.path == BAD / name
    assert SKIPPED[name] in result.error.reason
    assert str(result.error).startswith(f"{BAD / name}: ")
    assert "\n" not in str(result.error)


@pytest.mark.parametrize("name", sorted(KEPT))
def test_fixable_record_is_kept_with_a_note(name: str) -> None:
    result = load_record(BAD / name, Config().max_record_bytes)
    note, title = KEPT[name]
    assert result.error is None and result.article is not None
    assert result.article.title == title
    assert any(note in n.reason for n in result.notes), result.notes
    assert all(str(n).startswith(f"{BAD / name}: ") for n in result.notes)


def test_html_and_script_never_reach_the_article() -> None:
    article = load_record(BAD / "kept-html-and-script.md", 10_000).article
    assert article is not None
    text = article.title + article.excerpt
    for marker in ("<", "script", "onerror", "javascript:", "iframe", "alert"):
        assert marker not in text
    assert article.excerpt == "Read this & weep"


def test_path_like_topics_are_dropped_and_real_ones_kept() -> None:
    article = load_record(BAD / "kept-path-topic.md", 10_000).article
    assert article is not None and article.topics == ("AI",)


def test_huge_file_is_skipped(tmp_path: Path) -> None:
    huge = write_record(tmp_path / "huge.md", excerpt="x" * 2_000_000)
    result = load_record(huge, Config().max_record_bytes)
    assert result.error is not None
    assert result.error.reason == "larger than max_record_bytes (1048576 bytes)"


def test_a_build_over_every_bad_file_keeps_every_good_record(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(BAD, seeds)
    write_record(seeds / "good.md", title="The good one", webUrl="https://example.com/good")
    write_record(tmp_path / "seeds/huge.md", excerpt="x" * 2_000_000)

    result = run_cli("build", "--seeds", str(seeds), "--out", str(tmp_path / "out"),
                     "--now", "2020-06-18T00:00:00Z")

    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    for name, reason in {**SKIPPED, "huge.md": "larger than max_record_bytes"}.items():
        assert any(line.startswith(f"skipped {seeds / name}: ") and reason in line for line in lines), name
    for name, (note, _) in KEPT.items():
        assert any(line.startswith(f"note    {seeds / name}: ") and note in line for line in lines), name
    feed = feedparser.parse((tmp_path / "out/topics/ai/rss.xml").read_bytes())
    assert not feed.bozo
    kept_titles = {title for _, title in KEPT.values()} | {"The good one"}
    assert {e.title for e in feed.entries} == kept_titles
    assert "13 skipped" in result.stdout


def test_strict_turns_skips_into_a_failing_exit(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "good.md")
    shutil.copy(BAD / "missing-title.md", seeds)
    args = ["build", "--seeds", str(seeds), "--out", str(tmp_path / "out"), "--now", "2020-06-18T00:00:00Z"]
    assert run_cli(*args).exit_code == 0
    strict = run_cli(*args, "--strict")
    assert strict.exit_code == 1
    assert (tmp_path / "out/topics/ai/rss.xml").is_file()  # the good record was still published


def test_strict_passes_when_nothing_was_skipped(tmp_path: Path) -> None:
    write_record(tmp_path / "seeds/good.md")
    result = run_cli("build", "--seeds", str(tmp_path / "seeds"), "--out", str(tmp_path / "out"), "--strict")
    assert result.exit_code == 0, result.output
