"""The digest reads well on a phone and on a desktop: headless Chromium renders the real
email HTML at 375 and 800 px, and nothing may overflow sideways."""

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


def open_page(browser: Any, html_file: Path, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})

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
