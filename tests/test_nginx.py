"""The shipped nginx config (deploy/nginx/feeds.conf), run by Debian's nginx in front of a
real `feeds serve`, as a feed reader and a mail provider would meet it."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import feedparser
import pytest

from benchmarks.serve import BROTLI, nginx_main_conf
from feeds import state
from feeds.config import load_config
from feeds.digest import preferences_token
from tests.conftest import ROOT
from tests.mail import free_port
from tests.test_daemon import wait_for
from tests.test_serve import MEDIA_TYPES, SECRET, Site, active, request, token_for, wait_until_serving
from tests.test_serve import site as site  # the fixture: a built site and its feeds serve

CONFIG = ROOT / "deploy" / "nginx" / "feeds.conf"


@dataclass
class Proxy:
    base: str
    out: Path
    site: Site


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("FEEDS_REQUIRE_NGINX"):
            pytest.fail("nginx is required here (FEEDS_REQUIRE_NGINX) but was not found")
        pytest.skip("Debian's nginx is not installed (apt-get install nginx libnginx-mod-http-brotli-static)")
    return found


def server_block(out: Path, port: int, upstream: int) -> str:
    """The shipped server block with this test's folder and ports in place of the
    example ones (each must be there: a config edited out of shape fails here), and
    without brotli_static where its module is not installed, as the config says."""
    text = CONFIG.read_text()
    if not BROTLI.exists():
        text = text.replace("brotli_static on;", "")
    for example, ours in (("root /var/lib/feeds/out;", f"root {out};"),
                          ("listen 80;", f"listen 127.0.0.1:{port};"),
                          ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")):
        assert text.count(example) == 1, example
        text = text.replace(example, ours)
    return text


@pytest.fixture
def proxy(site: Site, tmp_path: Path) -> Iterator[Proxy]:
    nginx = nginx_binary()
    port = free_port()
    upstream = int(site.base.rstrip("/").rsplit(":", 1)[1])
    out = site.tmp / "out"
    folder = tmp_path / "nginx"
    folder.mkdir()
    (folder / "feeds.conf").write_text(server_block(out, port, upstream))
    (folder / "nginx.conf").write_text(nginx_main_conf(folder, workers="1", connections=64))
    checked = subprocess.run([nginx, "-t", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}/"

    try:
        wait_until_serving(base, process, what="nginx", log=folder / "error.log")
        yield Proxy(base, out, site)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("path, media_type", MEDIA_TYPES)
def test_media_types_and_cache_headers(proxy: Proxy, path: str, media_type: str) -> None:
    reply = request(proxy.base + path)
    assert reply.status == 200
    assert reply.headers["content-type"] == media_type
    assert reply.headers["cache-control"] == "public, max-age=300"
    assert reply.headers["etag"] and reply.headers["last-modified"]


def test_a_feed_reader_gets_200_then_304(proxy: Proxy) -> None:
    url = proxy.base + "topics/ai/rss.xml"
    first = feedparser.parse(url)
    assert first.status == 200 and not first.bozo and first.entries
    assert first.etag and first.modified
    assert feedparser.parse(url, etag=first.etag).status == 304
    assert feedparser.parse(url, modified=first.modified).status == 304
    plain = request(url)
    again = request(url, headers={"If-None-Match": plain.headers["etag"]})
    assert again.status == 304 and again.body == b""


def test_the_builds_compressed_copies_are_sent_as_they_are(proxy: Proxy) -> None:
    url = proxy.base + "topics/ai/rss.xml"
    plain = request(url)
    zipped = request(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.body == (proxy.out / "topics/ai/rss.xml.gz").read_bytes()  # gzip_static
    assert gzip.decompress(zipped.body) == plain.body
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert zipped.headers["etag"] != plain.headers["etag"]
    if BROTLI.exists():
        brotli = request(url, headers={"Accept-Encoding": "br"})
        assert brotli.headers["content-encoding"] == "br"
        assert brotli.body == (proxy.out / "topics/ai/rss.xml.br").read_bytes()


@pytest.mark.parametrize("path", [".feeds-build.json", "outbox/", "topics/ai/.rss.xml.1.0.tmp"])
def test_private_files_are_not_served(proxy: Proxy, path: str) -> None:
    target = proxy.out / path
    if path == "outbox/":
        assert any(target.iterdir())  # the digest wrote its .eml files there
        path += next(target.iterdir()).name
    elif not target.exists():
        target.write_text("private")
    assert request(proxy.base + path).status == 404


def test_one_click_unsubscribe_through_the_proxy(proxy: Proxy) -> None:
    _subscriber_id, token = token_for(proxy.site, "ada@example.org")
    url = f"{proxy.base}unsubscribe?token={token}"
    page = request(url)
    assert page.status == 200 and b"ada@example.org" in page.body and active(proxy.site, "ada@example.org")
    assert page.headers["cache-control"] == "no-store"
    reply = request(url, method="POST", data=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 200 and b"You are unsubscribed" in reply.body
    assert not active(proxy.site, "ada@example.org") and active(proxy.site, "bob@example.org")


def test_sign_up_through_the_proxy(proxy: Proxy) -> None:
    """The static index page's form posts to /subscribe through nginx, which passes the
    browser's Host (port included) on, so that the same-origin check holds."""
    index = request(proxy.base)
    assert index.headers["x-content-type-options"] == "nosniff"  # nginx's own static files too
    assert "frame-ancestors 'none'" in index.headers["content-security-policy"]
    form = request(proxy.base + "subscribe/ai")
    assert form.status == 200 and form.headers["cache-control"] == "no-store"
    assert "style-src 'sha256-" in form.headers["content-security-policy"]
    data = urlencode({"email": "new@example.org", "topics": "ai", "cadence": "daily", "website": ""}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": proxy.base.rstrip("/")}
    reply = request(proxy.base + "subscribe", method="POST", data=data, headers=headers)
    assert reply.status == 200, reply.body
    assert reply.headers["cache-control"] == "no-store" and reply.headers["referrer-policy"] == "same-origin"
    eml = proxy.site.tmp / "out/outbox/confirmations/new-at-example.org.eml"
    wait_for(eml.exists, what="the confirmation mail")
    evil = request(proxy.base + "subscribe", method="POST", data=data,
                   headers={**headers, "Origin": "https://evil.example"})
    assert evil.status == 403


def test_the_preferences_page_through_the_proxy(proxy: Proxy) -> None:
    """The page and its form's POST reach the daemon: a change made through the proxy is saved."""
    engine = state.open_state(load_config(proxy.site.config).state_db)
    ada = state.find_subscriber(engine, "ada@example.org")
    assert ada is not None
    token = preferences_token(SECRET, ada.id, ada.email)
    page = request(f"{proxy.base}preferences?token={token}")
    assert page.status == 200 and b"ada@example.org" in page.body
    assert page.headers["cache-control"] == "no-store"
    form = urlencode([("token", token), ("topics", "computer-vision"), ("cadence", "daily"), ("action", "save")])
    reply = request(f"{proxy.base}preferences", method="POST", data=form.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": proxy.base.rstrip("/")})
    assert reply.status == 200, reply.body
    ada = state.find_subscriber(engine, "ada@example.org")
    assert ada is not None and (ada.topics, ada.cadence) == (("computer-vision",), "daily")
