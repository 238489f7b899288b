"""Feeds are valid by the rules the W3C Feed Validation Service applies, checked on every
feed of the seeds and of the real corpus (the service itself is off-limits: tests never
reach the internet), and JSON Feeds against a JSON Feed 1.1 schema."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree, html

from tests.conftest import CORPUS, DATA, SEEDS, run_cli

ATOM = "{http://www.w3.org/2005/Atom}"
MEDIA = "{http://search.yahoo.com/mrss/}"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-zA-Z0-9]{2,8})*$")
# RFC 3986 characters; the validator's rfc2396_full check refuses anything else in a URL.
URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*)?(\?[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*)?(#[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*)?$")
SAFE_TAGS = {"p", "a"}  # all an item's HTML may hold; no script, iframe, style, img handlers


@pytest.fixture(scope="module", params=["seeds", "corpus"])
def out(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    seeds, now = (SEEDS, "2020-06-18T00:00:00Z") if request.param == "seeds" else (
        CORPUS / "articles", "2021-06-03T00:00:00Z")
    if not seeds.is_dir():
        pytest.skip(f"{seeds} is not there")
    folder = tmp_path_factory.mktemp(request.param)
    result = run_cli("build", "--seeds", str(seeds), "--out", str(folder), "--now", now)
    assert result.exit_code == 0, result.output
    return folder


def feeds_of(out: Path, name: str) -> list[Path]:
    found = sorted((out / "topics").glob(f"*/{name}"))
    assert found
    return found


def assert_safe_html(fragment: str) -> None:
    tree = html.fragment_fromstring(fragment, create_parent="div")
    for element in tree.iter():
        assert element.tag in SAFE_TAGS | {"div"}, element.tag
        for attr, value in element.attrib.items():
            assert attr == "href" and element.tag == "a", attr
            assert URL.match(value), value


def assert_rfc822(text: str) -> None:
    moment = parsedate_to_datetime(text)
    assert moment.tzinfo is not None and re.match(r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$", text), text


def test_rss_follows_the_validators_rules(out: Path) -> None:
    for path in feeds_of(out, "rss.xml"):
        root = etree.parse(str(path)).getroot()
        assert root.tag == "rss" and root.get("version") == "2.0"
        [channel] = root.findall("channel")
        for required in ("title", "link", "description"):
            assert (channel.findtext(required) or "").strip(), (path, required)
        assert URL.match(channel.findtext("link"))
        assert LANGUAGE.match(channel.findtext("language"))
        assert_rfc822(channel.findtext("lastBuildDate"))
        assert channel.findtext("ttl").isdigit()
        [self_link] = channel.findall(f"{ATOM}link")
        assert self_link.get("rel") == "self" and self_link.get("type") == "application/rss+xml"
        assert self_link.get("href") == f"http://localhost:8000/topics/{path.parent.name}/rss.xml"
        guids = []
        for item in channel.findall("item"):
            assert item.findtext("title").strip()
            assert URL.match(item.findtext("link")), item.findtext("link")
            assert item.find("author") is None  # RSS author must be an e-mail; outlets go in dc:creator
            guid = item.find("guid")
            assert guid.get("isPermaLink") == "false" and guid.text.startswith("urn:uuid:")
            guids.append(guid.text)
            assert_rfc822(item.findtext("pubDate"))
            assert_safe_html(item.findtext("description"))
            assert all(c.text and c.text.strip() for c in item.findall("category"))
            for media in item.findall(f"{MEDIA}content") + item.findall(f"{MEDIA}thumbnail"):
                assert URL.match(media.get("url")), media.get("url")
                assert all(media.get(d, "1").isdigit() and int(media.get(d, "1")) > 0 for d in ("width", "height"))
            for media in item.findall(f"{MEDIA}content"):
                assert media.get("medium") == "image" and re.match(r"^image/[\w.+-]+$", media.get("type"))
        assert len(guids) == len(set(guids)), path


def test_atom_follows_rfc_4287_and_the_validators_rules(out: Path) -> None:
    for path in feeds_of(out, "atom.xml"):
        feed = etree.parse(str(path)).getroot()
        assert feed.tag == f"{ATOM}feed"
        assert LANGUAGE.match(feed.get("{http://www.w3.org/XML/1998/namespace}lang"))
        assert URL.match(feed.findtext(f"{ATOM}id"))
        assert feed.findtext(f"{ATOM}title").strip()
        assert RFC3339.match(feed.findtext(f"{ATOM}updated"))
        feed_author = feed.find(f"{ATOM}author/{ATOM}name")
        links = {link.get("rel"): link for link in feed.findall(f"{ATOM}link")}
        assert links["self"].get("href") == f"http://localhost:8000/topics/{path.parent.name}/atom.xml"
        assert links["self"].get("type") == "application/atom+xml"
        assert URL.match(links["alternate"].get("href"))
        ids = []
        for entry in feed.findall(f"{ATOM}entry"):
            ids.append(entry.findtext(f"{ATOM}id"))
            assert ids[-1].startswith("urn:uuid:")
            assert entry.findtext(f"{ATOM}title").strip()
            for stamp in ("updated", "published"):
                assert RFC3339.match(entry.findtext(f"{ATOM}{stamp}"))
            assert entry.find(f"{ATOM}author/{ATOM}name") is not None or feed_author is not None
            entry_links = entry.findall(f"{ATOM}link")
            assert next(link.get("rel") for link in entry_links) == "alternate"
            for link in entry_links:
                assert link.get("rel") in ("alternate", "enclosure") and link.get("type")
                assert URL.match(link.get("href")), link.get("href")
            summary = entry.find(f"{ATOM}summary")
            assert summary.get("type") == "html"
            assert_safe_html(summary.text)
        assert len(ids) == len(set(ids)), path


def test_json_feeds_are_valid_json_feed_1_1(out: Path) -> None:
    schema = json.loads((DATA / "jsonfeed-1.1.schema.json").read_text())
    for path in feeds_of(out, "feed.json"):
        feed = json.loads(path.read_bytes())
        jsonschema.validate(feed, schema)
        assert feed["feed_url"] == f"http://localhost:8000/topics/{path.parent.name}/feed.json"
        for item in feed["items"]:
            assert_safe_html(item["content_html"])
            datetime.fromisoformat(item["date_published"])


def test_opml_and_index_are_well_formed(out: Path) -> None:
    opml = etree.parse(str(out / "feeds.opml")).getroot()
    assert opml.get("version") == "2.0"
    parsedate_to_datetime(opml.findtext("head/dateModified"))
    for outline in opml.iter("outline"):
        for attr in ("xmlUrl", "htmlUrl", "atomUrl", "jsonUrl"):
            assert URL.match(outline.get(attr)) and urlsplit(outline.get(attr)).netloc == "localhost:8000"
    page = etree.parse(str(out / "index.html"), etree.HTMLParser(recover=False))
    assert page.getroot().get("lang") == "en"


@given(st.datetimes(min_value=datetime(1, 1, 2), timezones=  # noqa: DTZ001 (naive bounds: hypothesis adds the zone)
       st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=11))])))
def test_the_opml_date_is_what_the_email_package_would_write(moment: datetime) -> None:
    from email.utils import format_datetime

    from feeds.render.feeds import rfc5322
    assert rfc5322(moment) == format_datetime(moment.astimezone(UTC), usegmt=True)
