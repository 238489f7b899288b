"""Loading the real records: every one of the corpus and the seeds becomes an Article."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from feeds.errors import RecordError
from feeds.load import (
    _front_matter_by_lines,
    front_matter_text,
    iter_record_paths,
    iter_records,
    load_record,
)
from feeds.model import Kind
from feeds.normalise import Notes, _story_key, article_id, clean_text, clean_url, slugify, story_key
from tests.conftest import SEEDS, write_record


@pytest.fixture
def real_records(corpus: Path) -> list[Path]:
    return iter_record_paths(corpus / "articles") + iter_record_paths(SEEDS)


def test_every_real_record_loads_cleanly(real_records: list[Path]) -> None:
    assert len(real_records) == 192 + 5
    for path in real_records:
        result = load_record(path, 1_048_576)
        assert result.error is None, result.error
        assert result.notes == (), result.notes


def test_real_records_keep_what_the_yaml_says(real_records: list[Path]) -> None:
    for path in real_records:
        raw = yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])
        article = load_record(path, 1_048_576).article
        assert article is not None
        assert article.title == " ".join(raw["title"].split())
        assert article.published == raw["publishedDateTime"].astimezone(UTC)
        assert article.published.tzinfo is UTC
        assert article.url == (raw.get("webUrl") or raw["originalUrl"])  # publisher's page first
        assert article.quality == raw["quality"]
        assert article.provider is not None and article.provider.name == raw["provider"]["name"]
        assert article.topics == tuple(raw["topics"])
        assert article.kind is Kind(raw["type"])
        if raw.get("images"):
            first = raw["images"][0]
            assert article.image is not None
            assert article.image.url == first["url"].replace("&#038;", "&")  # WordPress escapes
            assert (article.image.width, article.image.height) == (first["width"], first["height"])
        assert article.id == article_id(article.url)


def test_real_videos_carry_a_thumbnail_and_their_embed(corpus: Path) -> None:
    videos = [r.article for r in iter_records(corpus / "articles", 1_048_576)
              if r.article and r.article.is_video]
    assert len(videos) == 12
    for video in videos:
        assert video.image is not None
        assert video.embed_url is not None and video.embed_url.startswith("https://www.youtube.com/embed/")


def test_amp_urls_are_only_a_fallback_and_fold_into_one_identity(tmp_path: Path) -> None:
    amp_only = write_record(tmp_path / "a.md", webUrl=None,
                            ampWebUrl="https://www.forbes.com/sites/x/2020/06/17/story/amp/")
    cdn_only = write_record(tmp_path / "b.md", webUrl=None,
                            cdnAmpWebUrl="https://www-forbes-com.cdn.ampproject.org/c/s/www.forbes.com/sites/x/2020/06/17/story/amp/")
    web = write_record(tmp_path / "c.md", webUrl="https://www.forbes.com/sites/x/2020/06/17/story/?utm_source=twitter",
                       ampWebUrl="https://www.forbes.com/sites/x/2020/06/17/story/amp/")
    a, b, c = (load_record(p, 10_000).article for p in (amp_only, cdn_only, web))
    assert a and b and c
    assert c.url == "https://www.forbes.com/sites/x/2020/06/17/story/"
    assert a.url.endswith("/amp/")
    assert a.id == b.id == c.id


def test_a_video_without_images_gets_its_youtube_thumbnail(tmp_path: Path) -> None:
    path = write_record(tmp_path / "v.md", type="video", images=None,
                        featuredContent='<iframe src="https://www.youtube.com/embed/WJk-Y8LQlfE"></iframe>')
    article = load_record(path, 10_000).article
    assert article and article.image and article.image.url == "https://i.ytimg.com/vi/WJk-Y8LQlfE/hqdefault.jpg"


@pytest.mark.parametrize("value, expected", [
    ("2020-06-17T12:00:00Z", datetime(2020, 6, 17, 12, tzinfo=UTC)),
    ("2020-06-17T14:00:00+02:00", datetime(2020, 6, 17, 12, tzinfo=UTC)),
    ("2020-06-17 12:00:00", datetime(2020, 6, 17, 12, tzinfo=UTC)),
    ("2020-06-17", datetime(2020, 6, 17, tzinfo=UTC)),
])
def test_dates_become_aware_utc(tmp_path: Path, value: str, expected: datetime) -> None:
    path = tmp_path / "d.md"
    path.write_text(f"---\ntitle: T\npublishedDateTime: {value}\nwebUrl: https://example.com/d\n---\n")
    article = load_record(path, 10_000).article
    assert article is not None and article.published == expected and article.published.tzinfo is UTC


@pytest.mark.parametrize("name, slug", [
    ("AWS AI", "aws-ai"), ("Power Apps", "power-apps"), ("AI in Healthcare", "ai-in-healthcare"),
    ("Ünïcode Tópic", "unicode-topic"), ("C++ / C#", "c-c"), ("  --AI--  ", "ai"),
])
def test_slugs_are_lowercase_ascii_with_hyphens(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_story_key_folds_variants_of_one_page() -> None:
    variants = [
        "https://www.example.com/news/story",
        "http://example.com/news/story/",
        "https://example.com/news/story?utm_source=feed&utm_medium=rss",
        "https://amp.example.com/news/story/amp/",
        "https://www-example-com.cdn.ampproject.org/c/s/www.example.com/news/story/amp/",
        "https://example.com/news/story?amp=1#comments",
    ]
    assert {story_key(clean_url(v) or "") for v in variants} == {"example.com/news/story"}
    assert story_key("https://example.com/news/story?id=2") != story_key("https://example.com/news/story?id=3")


# URLs shaped like records' own: plain, amp, www/m/amp hosts, queries, the amp cache,
# escapes, upper case and odd characters, so both paths of story_key are exercised.
_url_parts = st.tuples(
    st.sampled_from(["http://", "https://", "HTTPS://"]),
    st.sampled_from(["", "www.", "m.", "amp.", "www.amp.", "www-example-com.cdn.ampproject.org/c/s/www."]),
    st.sampled_from(["example.com", "news.example.co.uk", "Example.COM", "xn--bcher-kva.example"]),
    st.lists(st.text(alphabet="abcAMP019-._~%!$'()*+,;=:@/ é", max_size=8), max_size=4),
    st.sampled_from(["", "/", "/amp", "/amp/", ".amp.html", ".html"]),
    st.sampled_from(["", "?", "?a=1", "?utm_source=x&id=2", "?amp=1", "#top"]),
)


@given(_url_parts)
def test_story_key_fast_path_agrees_with_the_general_one(parts: tuple[str, str, str, list[str], str, str]) -> None:
    scheme, prefix, host, segments, suffix, tail = parts
    url = scheme + prefix + host + "".join("/" + s for s in segments) + suffix + tail
    assert story_key(url) == _story_key(url)
    cleaned = clean_url(url)
    if cleaned:
        assert story_key(cleaned) == _story_key(cleaned)
        assert article_id(cleaned) == str(uuid.uuid5(uuid.NAMESPACE_URL, _story_key(cleaned)))


def _unwanted(code: int) -> bool:
    """The characters no text keeps, from their definitions rather than a regex: C0 and C1
    controls but tab, LF, CR and NEL; surrogates; U+FDD0..U+FDEF and U+nFFFE/U+nFFFF."""
    return ((code < 0x20 and chr(code) not in "\t\n\r") or (0x7F <= code <= 0x9F and code != 0x85)
            or 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE)


def _reference_clean(text: str) -> str:
    chars: list[str] = []
    for c in text:
        if chars and 0xD800 <= ord(chars[-1]) <= 0xDBFF and 0xDC00 <= ord(c) <= 0xDFFF:
            c = chr(0x10000 + ((ord(chars.pop()) - 0xD800) << 10) + (ord(c) - 0xDC00))  # an escaped pair
        chars.append(c)
    return " ".join("".join(" " if _unwanted(ord(c)) else c for c in chars).split())


# Every plane, surrogates and controls included, and the edges of the unwanted ranges.
_ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()) | st.integers(0xD800, 0xDFFF).map(chr),
                    max_size=40) | st.text(
    alphabet="a \x00\x08\x09\x0b\x1f\x7f\x85\x9f\xa0\ud7ff\ud800\udbff\udc00\udfff\ue000\ufdcf\ufdd0\ufdef"
             "\ufdf0\ufffd\ufffe\uffff\U0001fffd\U0001fffe\U0001ffff\U00020000\U0010fffe\U0010ffff", max_size=12)


@given(_ANY_TEXT)
def test_text_is_cleaned_as_the_definitions_say(text: str) -> None:
    cleaned = clean_text(text, "title", Notes())
    if "<" not in text and "&" not in text:
        assert cleaned == _reference_clean(text)
    assert cleaned is not None
    cleaned.encode("utf-8")  # no surrogate is left
    assert not any(_unwanted(ord(c)) for c in cleaned)


@given(_ANY_TEXT)
def test_the_quick_look_for_control_characters_misses_none(text: str) -> None:
    from feeds.normalise import _MAY_HOLD_CONTROL, CONTROL_CHARACTERS
    if CONTROL_CHARACTERS.search(text):
        assert _MAY_HOLD_CONTROL.search(text)
    assert bool(CONTROL_CHARACTERS.search(text)) == any(_unwanted(ord(c)) for c in text)


def test_plain_text_takes_the_quick_path() -> None:
    from feeds.normalise import _MAY_HOLD_CONTROL
    assert not _MAY_HOLD_CONTROL.search("Ünïcode Tópic \u2013 \u201cquoted\u201d 人工知能 🤖 text")


@pytest.mark.parametrize("text, expected", [
    ("vertical\vtab", "vertical tab"), ("null\0byte", "null byte"), ("a\x85b", "a b"),
    ("lone \ud800 surrogate", "lone surrogate"), ("escaped pair \ud83e\udd16", "escaped pair 🤖"),
    ("non\ufdd0character\U0010ffff", "non character"),
])
def test_control_characters_become_a_space(text: str, expected: str) -> None:
    notes = Notes()
    assert clean_text(text, "title", notes) == expected
    assert notes == (["title: control characters removed"] if "pair" not in text and "\x85" not in text else [])


def test_published_false_does_not_hide_a_record(tmp_path: Path) -> None:
    article = load_record(write_record(tmp_path / "p.md", published=False), 10_000).article
    assert article is not None


def test_hidden_files_and_other_suffixes_are_not_records(tmp_path: Path) -> None:
    write_record(tmp_path / "a.md")
    write_record(tmp_path / "sub" / "b.markdown")
    write_record(tmp_path / ".git" / "c.md")
    write_record(tmp_path / ".#d.md")
    (tmp_path / "notes.txt").write_text("not a record")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_record_paths(tmp_path)] == ["a.md", "sub/b.markdown"]


def test_the_clean_url_shortcut_changes_nothing_the_full_path_would(corpus: Path, tmp_path: Path) -> None:
    from benchmarks.generate import generate
    from feeds.normalise import _clean_url, is_already_clean
    files = [*corpus.glob("articles/*.md"), *SEEDS.glob("*.md"), *generate(tmp_path, 100, seed=3)]
    urls = {u for f in files for u in re.findall(r'"(https?://[^"]+)"', f.read_text(encoding="utf-8"))}
    shortcut = [u for u in urls if is_already_clean(u)]
    assert len(shortcut) > 0.9 * len(urls)
    assert all(_clean_url(u) == u for u in shortcut)


@given(st.text(alphabet="abcXYZ019-._~%!$'()*+,;=:@/?&#=<>\" é", max_size=40), st.sampled_from(["http://", "https://", "HTTP://"]),
       st.sampled_from(["example.com", "Example.com", "a.b.co", "localhost", "ex.com:80", "a..b.com", "-a.com",
                                   "a-.com", "%00", "x" * 64 + ".com"]))
def test_the_shortcut_agrees_with_the_full_path_on_generated_urls(tail: str, scheme: str, host: str) -> None:
    from feeds.normalise import _clean_url, is_already_clean
    url = f"{scheme}{host}/{tail}"
    if is_already_clean(url):
        assert _clean_url(url) == url


def test_parsing_on_several_cores_gives_what_one_core_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from benchmarks.generate import generate
    from feeds import cache
    from feeds.manifest import scan
    generate(tmp_path / "records", 450, seed=5)
    for bad in (Path(__file__).parent / "data/bad").glob("*.md"):
        shutil.copy(bad, tmp_path / "records" / bad.name)
    scanned = scan(tmp_path / "records")

    def parse(parallel_after: int) -> tuple[list[tuple[object, ...]], int]:
        monkeypatch.setattr(cache, "PARALLEL_AFTER", parallel_after)
        with cache.RecordCache(None) as store:
            index = store.index(tmp_path / "records", scanned, 1_048_576)
            articles = store.articles(index, [e.key for e in index.entries if e.summary])
        return ([(e.path, e.sha256, e.summary, articles.get(e.key), e.error, e.notes) for e in index.entries],
                index.parsed)

    one, parsed_one = parse(10**9)
    several, parsed_several = parse(1)
    assert parsed_one == parsed_several == len(scanned) > 450
    assert one == several
    assert sum(entry[4] is not None for entry in several) == 13


@given(st.lists(st.sampled_from(["---", "...", "--- ", "---\xa0", "----", " ---", "a: 1", "", " ", "x"]), max_size=8),
       st.sampled_from(["\n", "\r\n", "\x85", "\u2028", "\x0c"]), st.booleans())
def test_front_matter_is_found_as_line_by_line_reading_finds_it(lines: list[str], newline: str, final: bool) -> None:
    text = newline.join(lines) + (newline if final else "")
    if not text:
        return

    def outcome(read: Callable[[Path, str], str]) -> str:
        try:
            return "ok: " + read(Path("r.md"), text)
        except RecordError as e:
            return "error: " + e.reason

    assert outcome(front_matter_text) == outcome(_front_matter_by_lines)


def test_records_are_found_in_path_order_whatever_the_names(tmp_path: Path) -> None:
    names = ["a.md", "a-b/c.md", "a/b.md", "a/b/c.md", "a.b/x.md", "a b.md", "A.md", "a0.md",
             "z/.hidden.md", ".git/x.md", "é.md", "a/a-z.md", "a/a/z.md", "notes.txt"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("---\ntitle: x\n---\n", encoding="utf-8")
    found = iter_record_paths(tmp_path)
    assert found == sorted(found)
    assert {p.relative_to(tmp_path).as_posix() for p in found} == {
        n for n in names if n.endswith(".md") and "/." not in "/" + n}


def test_links_to_records_are_records_and_links_to_folders_are_not_followed(tmp_path: Path) -> None:
    import os

    from feeds.manifest import scan
    records, elsewhere = tmp_path / "records", tmp_path / "elsewhere"
    write_record(elsewhere / "far.md")
    write_record(records / "near.md")
    os.symlink(elsewhere / "far.md", records / "linked.md")
    os.symlink(elsewhere, records / "folder")
    os.symlink(tmp_path / "missing.md", records / "dangling.md")
    found = {Path(path).name: size for path, size, _ in scan(records)}
    assert found == {"linked.md": (elsewhere / "far.md").stat().st_size,
                     "near.md": (records / "near.md").stat().st_size}
    assert [path for path, _, _ in scan(records)] == [str(records / "linked.md"), str(records / "near.md")]


def test_a_scan_gives_each_file_size_and_mtime_as_stat_gives_them(tmp_path: Path) -> None:
    import os

    from feeds.manifest import scan
    for name in ("a.md", "b/c.md", "b/d/e.markdown"):
        write_record(tmp_path / name)
    os.utime(tmp_path / "b/c.md", ns=(1, 1_234_567_891))
    assert scan(tmp_path) == [(str(p), p.stat().st_size, max(p.stat().st_mtime_ns, p.stat().st_ctime_ns))
                              for p in (tmp_path / "a.md", tmp_path / "b/c.md", tmp_path / "b/d/e.markdown")]


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
       | st.text(alphabet="a\n\t\r\x00\x1f\x7f\x80\x85\x9f\xa0\u2028\u2029\ufeff\ufffe\uffff", max_size=10))
def test_the_byte_check_never_calls_text_usual_that_is_not(text: str) -> None:
    from feeds.load import _UNUSUAL, usual_bytes
    if usual_bytes(text.encode("utf-8")):
        assert not _UNUSUAL.search(text)


def test_a_record_may_be_exactly_max_bytes_long_and_not_one_more(tmp_path: Path) -> None:
    from feeds.load import read_bytes
    path = tmp_path / "r.md"
    path.write_bytes(b"x" * 100)
    stat, data = read_bytes(path, 100)
    assert data == b"x" * 100 and stat.st_size == 100
    with pytest.raises(RecordError, match=r"larger than max_record_bytes \(99 bytes\)"):
        read_bytes(path, 99)
    with pytest.raises(RecordError, match="cannot read"):
        read_bytes(tmp_path / "missing.md", 100)
