"""The digest reads well on a phone and on a desktop, in light and dark mode: headless
Chromium renders the real email HTML at 375 and 800 px, nothing may overflow sideways, and
text stays readable whichever colour scheme the reader's mail app asks for."""

from __future__ import annotations

import email
import os
import shutil
from collections.abc import Iterator
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SEEDS, run_cli, write_record
from tests.test_digest import DATE, parts, write_config

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [  # this machine's network is closed: keep Chromium from reaching out
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Stands in for every remote image: no test reaches the internet.
PLACEHOLDER = (b'<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="675">'
               b'<rect width="1200" height="675" fill="#c9b8d6"/></svg>')


def chromium_path() -> str | None:
    return os.environ.get("FEEDS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("FEEDS_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required here (FEEDS_REQUIRE_BROWSER) but was not found")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


def open_page(browser: Any, html_file: Path, width: int, color_scheme: str = "light") -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.emulate_media(color_scheme=color_scheme)

    def route(request_route: Any) -> None:
        if request_route.request.url.startswith("file:"):
            request_route.continue_()
        else:
            request_route.fulfill(status=200, content_type="image/svg+xml", body=PLACEHOLDER)

    page.route("**/*", route)
    page.goto(html_file.as_uri(), wait_until="load")
    return page


def edition_html(tmp_path: Path, seeds: Path = SEEDS, topics: str = "ai,computer-vision") -> Path:
    config = write_config(tmp_path, seeds=seeds)
    result = run_cli("subscribers", "add", "ada@example.org", "--topics", topics, "--cadence", "weekly",
                     "--config", str(config))
    assert result.exit_code == 0, result.output
    result = run_cli("digest", "--date", DATE, "--config", str(config))
    assert result.exit_code == 0, result.output
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    _, page = parts(email.message_from_bytes(eml.read_bytes(), policy=default))  # type: ignore[arg-type]
    path = tmp_path / "edition.html"
    path.write_text(page, encoding="utf-8")
    return path


OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > width + 1)
    .map(e => e.tagName + ' ' + Math.round(e.getBoundingClientRect().right));
  return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 5)};
}"""


@pytest.mark.parametrize("width", [375, 800])
def test_nothing_overflows_horizontally(browser: Any, tmp_path: Path, width: int) -> None:
    page = open_page(browser, edition_html(tmp_path), width)
    found = page.evaluate(OVERFLOW)
    assert found["scroll"] <= found["width"], found
    assert found["wide"] == [], found
    images = page.evaluate("[...document.images].map(i => [i.naturalWidth > 0, i.getBoundingClientRect().width])")
    assert images and all(loaded and 0 < shown <= width for loaded, shown in images)
    page.close()


@pytest.mark.parametrize("width", [375, 800])
def test_long_unbroken_text_does_not_overflow(browser: Any, tmp_path: Path, width: int) -> None:
    seeds = tmp_path / "seeds"
    write_record(seeds / "long.md", title="Supercalifragilistic" * 8, excerpt="https://example.com/" + "x" * 300,
                 webUrl="https://example.com/long", publishedDateTime="2020-06-17T12:00:00Z",
                 topics=["AI"], quality=90, provider={"name": "AVeryLongOutletNameWithoutSpaces" * 3})
    page = open_page(browser, edition_html(tmp_path, seeds, topics="ai"), width)
    found = page.evaluate(OVERFLOW)
    assert found["scroll"] <= found["width"], found
    page.close()


def test_stories_stack_on_a_phone_and_sit_side_by_side_on_a_desktop(browser: Any, tmp_path: Path) -> None:
    html_file = edition_html(tmp_path)
    boxes = {}
    for width in (375, 800):
        page = open_page(browser, html_file, width)
        boxes[width] = page.evaluate("""() => {
            const img = document.images[0].getBoundingClientRect();
            const title = document.querySelector('.headline a').getBoundingClientRect();
            return {imgBottom: img.bottom, imgRight: img.right, titleTop: title.top, titleLeft: title.left};
        }""")
        page.close()
    phone, desktop = boxes[375], boxes[800]
    assert phone["titleTop"] >= phone["imgBottom"] - 1  # phone: image above the headline
    assert desktop["titleLeft"] >= desktop["imgRight"] and desktop["titleTop"] < desktop["imgBottom"]


# WCAG 2 contrast of every visible piece of text against the background it is drawn on
# (the nearest ancestor with an opaque one), and every large box that is light.
COLOURS = """() => {
  const rgba = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const opaque = c => c.length === 3 || (c.length === 4 && c[3] > 0.5);
  const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = e => {
    for (; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (opaque(c)) return c;
    }
    return [255, 255, 255];  // the canvas: assume the worst for a dark scheme
  };
  const low = [], light = [];
  for (const e of document.querySelectorAll('body, body *')) {
    const box = e.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;  // hidden, like the preheader
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (own) {
      const [a, b] = [luminance(rgba(getComputedStyle(e).color)), luminance(background(e))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < 4.5) low.push([e.textContent.trim().slice(0, 40), Math.round(ratio * 100) / 100]);
    }
    const fill = rgba(getComputedStyle(e).backgroundColor);
    if (e.tagName !== 'IMG' && opaque(fill) && box.width * box.height > 4000)
      light.push([e.tagName + '.' + e.className, Math.round(luminance(fill) * 100) / 100]);
  }
  return {low, light: light.filter(([, l]) => l > 0.4), boxes: light.length};
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_is_readable_in_both_colour_schemes(browser: Any, tmp_path: Path, scheme: str) -> None:
    html_file = edition_html(tmp_path)
    for width in (375, 800):
        page = open_page(browser, html_file, width, color_scheme=scheme)
        found = page.evaluate(COLOURS)
        page.screenshot(path=str(tmp_path / f"{scheme}-{width}.png"), full_page=True)  # to look at by hand
        page.close()
        assert found["low"] == [], found  # body text at WCAG AA: 4.5:1 or better
        if scheme == "dark":
            assert found["boxes"] >= 3 and found["light"] == [], found  # no white boxes


def test_the_email_declares_both_colour_schemes(tmp_path: Path) -> None:
    from lxml import html as lxml_html
    tree = lxml_html.fromstring(edition_html(tmp_path).read_bytes())
    assert tree.xpath('//meta[@name="color-scheme"]/@content') == ["light dark"]
    assert tree.xpath('//meta[@name="supported-color-schemes"]/@content') == ["light dark"]
    assert any("prefers-color-scheme: dark" in style.text_content() for style in tree.xpath("//style"))
