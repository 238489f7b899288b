"""Real HTTP requests to a real `feeds serve` process on loopback."""

from __future__ import annotations

import gzip
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from feeds import state
from feeds.api import unsubscribe_url
from feeds.config import load_config
from feeds.digest import unsubscribe_token
from tests.conftest import SEEDS, run_cli, write_record
from tests.mail import free_port, smtp_server
from tests.test_daemon import wait_for

SECRET = "a-test-secret-that-is-long-enough"


@dataclass
class Site:
    base: str
    config: Path
    tmp: Path


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            data: bytes | None = None) -> Reply:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    port = free_port()
    config = tmp_path / "feeds.yaml"
    config.write_text(f"""
title: AI Digest
seeds: {SEEDS}
out: {tmp_path / 'out'}
state_db: {tmp_path / 'state.db'}
secret: {SECRET}
base_url: http://127.0.0.1:{port}/
serve:
  port: {port}
  cache_seconds: 120
""")
    assert run_cli("build", "--config", str(config), "--now", "2020-06-18T00:00:00Z").exit_code == 0
    for address in ("ada@example.org", "bob@example.org"):
        assert run_cli("subscribers", "add", address, "--topics", "ai", "--cadence", "weekly",
                       "--config", str(config)).exit_code == 0
    assert run_cli("digest", "--date", "2020-06-18T00:00:00Z", "--config", str(config)).exit_code == 0
    process = subprocess.Popen([sys.executable, "-m", "feeds", "serve", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"

    try:
        wait_until_serving(base, process, what="feeds serve")
        yield Site(base, config, tmp_path)
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_serving(base: str, process: subprocess.Popen[bytes], *, what: str, log: Path | None = None) -> None:
    """Wait until ``base`` answers 200, or ``process`` dies (then fail at once, with its
    ``log`` or what it said on stderr when that is piped, rather than wait out the timeout)."""
    def up() -> bool:
        try:
            return request(base).status == 200
        except OSError:
            return process.poll() is not None

    wait_for(up, what=what)
    if process.poll() is not None:
        said = log.read_text() if log else process.stderr.read().decode(errors="replace") if process.stderr else ""
        pytest.fail(f"{what} stopped: {said}")


def token_for(site: Site, address: str) -> tuple[int, str]:
    engine = state.open_state(load_config(site.config).state_db)
    person = next(p for p in state.list_subscribers(engine) if p.email == address)
    return person.id, unsubscribe_token(SECRET, person.id, person.email)


def active(site: Site, address: str) -> bool:
    engine = state.open_state(load_config(site.config).state_db)
    return next(p for p in state.list_subscribers(engine) if p.email == address).active


# What a feed reader must be told of each kind of file, by feeds serve and by nginx alike.
MEDIA_TYPES = [
    ("topics/ai/rss.xml", "application/rss+xml; charset=utf-8"),
    ("topics/ai/atom.xml", "application/atom+xml; charset=utf-8"),
    ("topics/ai/feed.json", "application/feed+json; charset=utf-8"),
    ("feeds.opml", "text/x-opml; charset=utf-8"),
    ("", "text/html; charset=utf-8"),
    ("newsletter/2020-06-18/ai-weekly/", "text/html; charset=utf-8"),
]


@pytest.mark.parametrize("path, media_type", MEDIA_TYPES)
def test_content_types_and_cache_headers(site: Site, path: str, media_type: str) -> None:
    reply = request(site.base + path)
    assert reply.status == 200
    assert reply.headers["content-type"] == media_type
    assert reply.headers["cache-control"] == "public, max-age=120"
    assert reply.headers["etag"] and reply.headers["last-modified"]


def test_etag_and_last_modified_round_trip_with_304(site: Site) -> None:
    url = site.base + "topics/ai/atom.xml"
    first = request(url)
    again = request(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.body == b""
    since = request(url, headers={"If-Modified-Since": first.headers["last-modified"]})
    assert since.status == 304
    stale = request(url, headers={"If-None-Match": '"not-the-etag"'})
    assert stale.status == 200 and stale.body == first.body


def test_an_unchanged_rebuild_keeps_the_etag(site: Site) -> None:
    url = site.base + "topics/ai/rss.xml"
    before = request(url).headers["etag"]
    assert run_cli("build", "--config", str(site.config), "--now", "2020-06-18T00:00:00Z").exit_code == 0
    assert request(url, headers={"If-None-Match": before}).status == 304


def test_gzip_when_asked(site: Site) -> None:
    plain = request(site.base + "topics/all/feed.json")
    zipped = request(site.base + "topics/all/feed.json", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers.get("content-encoding") == "gzip"
    assert gzip.decompress(zipped.body) == plain.body
    assert "content-encoding" not in plain.headers


@pytest.mark.parametrize("path", ["outbox/2020-06-18/ada-at-example.org.eml", "outbox/", "topics/ai/.rss.xml.tmp",
                                  "../state.db", "%2e%2e/state.db"])
def test_private_files_are_not_served(site: Site, path: str) -> None:
    assert (site.tmp / "out/outbox/2020-06-18/ada-at-example.org.eml").is_file()
    assert request(site.base + path).status == 404


def test_unsubscribe_get_confirms_and_changes_nothing(site: Site) -> None:
    _, token = token_for(site, "ada@example.org")
    reply = request(f"{site.base}unsubscribe?token={token}")
    assert reply.status == 200 and b"<form method=\"post\">" in reply.body and b"ada@example.org" in reply.body
    assert active(site, "ada@example.org")


def test_one_click_post_unsubscribes_at_once(site: Site) -> None:
    _subscriber_id, token = token_for(site, "ada@example.org")
    url = unsubscribe_url(load_config(site.config), token)
    reply = request(url, method="POST", data=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 200 and b"You are unsubscribed" in reply.body
    assert not active(site, "ada@example.org") and active(site, "bob@example.org")
    assert request(url, method="POST", data=b"List-Unsubscribe=One-Click").status == 200  # idempotent
    with smtp_server() as (server, port):
        config = site.config
        config.write_text(config.read_text() + f"smtp:\n  host: 127.0.0.1\n  port: {port}\n")
        assert run_cli("digest", "--date", "2020-06-18T00:00:00Z", "--send", "--config", str(config)).exit_code == 0
        assert [m["To"] for m in server.received()] == ["bob@example.org"]


@pytest.mark.parametrize("token, status", [
    ("", 400), ("nonsense", 400), ("1.zz", 400),
    ("1." + "0" * 32, 403),  # well-formed, forged
    ("999." + "a" * 32, 403),  # nobody
])
def test_bad_or_forged_tokens_get_a_clear_4xx_and_change_nothing(site: Site, token: str, status: int) -> None:
    _, real = token_for(site, "ada@example.org")
    forged_for_ada = real.split(".")[0] + "." + ("0" * 32 if not real.endswith("0" * 32) else "1" * 32)
    for candidate in (token, forged_for_ada if status == 403 else token):
        for method, data in (("GET", None), ("POST", b"List-Unsubscribe=One-Click")):
            reply = request(f"{site.base}unsubscribe?token={candidate}", method=method, data=data)
            assert reply.status == status
            assert b"This link is not valid" in reply.body
    assert active(site, "ada@example.org") and active(site, "bob@example.org")


def test_post_without_one_click_body_changes_nothing(site: Site) -> None:
    _, token = token_for(site, "ada@example.org")
    reply = request(f"{site.base}unsubscribe?token={token}", method="POST", data=b"")
    assert reply.status == 400 and active(site, "ada@example.org")


def multipart_form(fields: dict[str, str], boundary: str = "----feeds-test-boundary") -> tuple[bytes, str]:
    """A multipart/form-data body as a browser or mail client writes it (RFC 7578)."""
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_one_click_post_as_multipart_form_data_unsubscribes(site: Site) -> None:
    """RFC 8058 section 3.1: the POST SHOULD be multipart/form-data."""
    _, token = token_for(site, "ada@example.org")
    body, content_type = multipart_form({"List-Unsubscribe": "One-Click"})
    reply = request(f"{site.base}unsubscribe?token={token}", method="POST", data=body,
                    headers={"Content-Type": content_type})
    assert reply.status == 200 and b"You are unsubscribed" in reply.body
    assert not active(site, "ada@example.org") and active(site, "bob@example.org")
    engine = state.open_state(load_config(site.config).state_db)
    ada_id, _ = token_for(site, "ada@example.org")
    assert [(c.status, c.source) for c in state.status_history(engine, ada_id)][-1] == (state.UNSUBSCRIBED, "one-click")


@pytest.mark.parametrize("fields", [{"List-Unsubscribe": "Other"}, {"Something": "One-Click"}, {}])
def test_multipart_post_without_one_click_changes_nothing(site: Site, fields: dict[str, str]) -> None:
    _, token = token_for(site, "ada@example.org")
    body, content_type = multipart_form(fields)
    reply = request(f"{site.base}unsubscribe?token={token}", method="POST", data=body,
                    headers={"Content-Type": content_type})
    assert reply.status == 400 and b"Nothing was changed" in reply.body
    assert active(site, "ada@example.org")


def test_a_malformed_multipart_body_is_a_400_page_and_changes_nothing(site: Site) -> None:
    _, token = token_for(site, "ada@example.org")
    reply = request(f"{site.base}unsubscribe?token={token}", method="POST", data=b"--x\r\nnot a part",
                    headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert reply.status == 400 and b"Nothing was changed" in reply.body
    assert active(site, "ada@example.org")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
def test_head_never_unsubscribes_even_with_a_one_click_body(site: Site, content_type: str | None) -> None:
    """What `curl -X HEAD -d List-Unsubscribe=One-Click URL` sends: a HEAD with a body."""
    _, token = token_for(site, "ada@example.org")
    reply = request(f"{site.base}unsubscribe?token={token}", method="HEAD", data=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": content_type} if content_type else {})
    assert reply.status == 200 and reply.body == b""
    body, multipart_type = multipart_form({"List-Unsubscribe": "One-Click"})
    assert request(f"{site.base}unsubscribe?token={token}", method="HEAD", data=body,
                   headers={"Content-Type": multipart_type}).status == 200
    assert active(site, "ada@example.org")


def test_an_import_after_a_one_click_unsubscribe_does_not_mail_them_again(site: Site) -> None:
    """The issue's case: one-click, then the operator imports the same list again. Before,
    the import said "1 updated" and the person was mailed again."""
    _, token = token_for(site, "ada@example.org")
    body, content_type = multipart_form({"List-Unsubscribe": "One-Click"})
    assert request(f"{site.base}unsubscribe?token={token}", method="POST", data=body,
                   headers={"Content-Type": content_type}).status == 200
    people = site.tmp / "people.csv"
    people.write_text("email,topics,cadence\nada@example.org,ai,weekly\nbob@example.org,ai,weekly\n")
    result = run_cli("subscribers", "import", str(people), "--config", str(site.config))
    assert result.exit_code == 0, result.output
    assert "Imported 0 new, 0 updated, 1 unchanged, 1 not reactivated, 0 skipped." in result.stdout
    assert "left ada@example.org: unsubscribed (one-click); not reactivated (use --reactivate)" in result.stderr
    assert not active(site, "ada@example.org")
    with smtp_server() as (server, port):
        site.config.write_text(site.config.read_text() + f"smtp:\n  host: 127.0.0.1\n  port: {port}\n")
        sent = run_cli("digest", "--date", "2020-06-18T00:00:00Z", "--send", "--config", str(site.config))
        assert sent.exit_code == 0
        assert [m["To"] for m in server.received()] == ["bob@example.org"]


# HTTP details: each body its own ETag, Vary on every compressible reply, HEAD's length.

def test_gzip_and_identity_bodies_have_their_own_etags_and_vary(site: Site) -> None:
    url = site.base + "topics/ai/rss.xml"
    plain = request(url)
    zipped = request(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert plain.headers["etag"] != zipped.headers["etag"]
    for reply in (plain, zipped):
        assert reply.headers["vary"] == "Accept-Encoding"
    # Each ETag revalidates its own body, and the 304 still says what it varies on.
    again = request(url, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]})
    assert again.status == 304 and again.headers["vary"] == "Accept-Encoding"
    assert again.headers["etag"] == zipped.headers["etag"]
    assert request(url, headers={"If-None-Match": plain.headers["etag"]}).status == 304
    # A cache holding the identity body must not be told that it is the gzip one.
    assert request(url, headers={"Accept-Encoding": "gzip", "If-None-Match": plain.headers["etag"]}).status == 200


def test_head_with_gzip_reports_the_gzip_length(site: Site) -> None:
    url = site.base + "topics/ai/atom.xml"
    zipped = request(url, headers={"Accept-Encoding": "gzip"})
    head = request(url, method="HEAD", headers={"Accept-Encoding": "gzip"})
    assert head.status == 200 and head.body == b""
    assert head.headers["content-encoding"] == "gzip"
    assert int(head.headers["content-length"]) == len(zipped.body) == int(zipped.headers["content-length"])
    assert head.headers["etag"] == zipped.headers["etag"]


@pytest.mark.parametrize("value", ["bytes=abc", "bytes=5-2", "lines=0-10", "bytes=", "bytes=0-1,4-5", "nonsense"])
def test_a_range_that_cannot_be_honoured_is_ignored(site: Site, value: str) -> None:
    url = site.base + "topics/ai/rss.xml"
    whole = request(url)
    reply = request(url, headers={"Range": value})
    assert reply.status == 200 and reply.body == whole.body


def test_a_valid_range_still_gets_its_bytes(site: Site) -> None:
    url = site.base + "topics/ai/rss.xml"
    whole = request(url).body
    part = request(url, headers={"Range": "bytes=10-19"})
    assert part.status == 206 and part.body == whole[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(whole)}"
    assert request(url, headers={"Range": "bytes=-5"}).body == whole[-5:]
    assert request(url, headers={"Range": f"bytes={len(whole)}-"}).status == 416


# Compressed copies, written by the build and sent as they are.

def test_the_build_writes_deterministic_compressed_copies(site: Site) -> None:
    import brotli  # type: ignore[import-untyped]

    out = site.tmp / "out"
    for relative in ("topics/ai/rss.xml", "topics/all/feed.json", "feeds.opml", "index.html"):
        data = (out / relative).read_bytes()
        zipped = (out / f"{relative}.gz").read_bytes()
        assert gzip.decompress(zipped) == data
        assert zipped[4:8] == b"\0\0\0\0" and zipped[3] & 0x08 == 0  # no time, no file name
        assert brotli.decompress((out / f"{relative}.br").read_bytes()) == data
    assert not list(out.glob("*.gz.gz")) and not list(out.rglob(".*.gz"))


def test_copies_are_sent_as_written_with_their_encoding(site: Site) -> None:
    out = site.tmp / "out"
    url = site.base + "topics/ai/rss.xml"
    zipped = request(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.body == (out / "topics/ai/rss.xml.gz").read_bytes()  # not compressed per request
    brotli = request(url, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert brotli.headers["content-encoding"] == "br"
    assert brotli.body == (out / "topics/ai/rss.xml.br").read_bytes()
    assert len({brotli.headers["etag"], zipped.headers["etag"], request(url).headers["etag"]}) == 3
    assert request(url, headers={"Accept-Encoding": "br;q=0, gzip"}).headers["content-encoding"] == "gzip"
    # A file the build did not write (a digest's web page) is gzipped by the server instead.
    page = "newsletter/2020-06-18/ai-weekly/index.html"
    assert not (out / f"{page}.gz").exists()
    served = request(site.base + page, headers={"Accept-Encoding": "gzip"})
    assert served.headers["content-encoding"] == "gzip" and served.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(served.body) == (out / page).read_bytes()


def test_copies_follow_their_file_rewritten_kept_and_removed(tmp_path: Path) -> None:
    seeds, out = tmp_path / "seeds", tmp_path / "out"
    write_record(seeds / "a.md", topics=["AI", "Robots"], webUrl="https://example.com/a")
    write_record(seeds / "b.md", topics=["AI"], webUrl="https://example.com/b", title="Another story")
    config = tmp_path / "feeds.yaml"
    config.write_text(f"seeds: {seeds}\nout: {out}\ncache_db: {tmp_path / 'cache.db'}\n")

    def build() -> None:
        assert run_cli("build", "--config", str(config), "--now", "2020-06-18T00:00:00Z").exit_code == 0

    build()
    copy = out / "topics/robots/rss.xml.gz"
    assert gzip.decompress(copy.read_bytes()) == (out / "topics/robots/rss.xml").read_bytes()
    # A rebuild that changes nothing leaves every copy alone; a copy deleted while its
    # feed is re-rendered unchanged comes back.
    mtimes = {path: path.stat().st_mtime_ns for path in out.rglob("*.gz")}
    build()
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.gz")} == mtimes
    (out / "topics/ai/atom.xml.br").unlink()
    write_record(seeds / "b.md", topics=["AI"], webUrl="https://example.com/b", title="A new title")
    build()
    assert gzip.decompress((out / "topics/ai/rss.xml.gz").read_bytes()) == (out / "topics/ai/rss.xml").read_bytes()
    assert b"A new title" in gzip.decompress((out / "topics/ai/rss.xml.gz").read_bytes())
    assert (out / "topics/ai/atom.xml.br").is_file()
    # A topic no record names any more: its feeds go, copies and folder with them.
    write_record(seeds / "a.md", topics=["AI"], webUrl="https://example.com/a")
    build()
    assert not (out / "topics/robots").exists()
