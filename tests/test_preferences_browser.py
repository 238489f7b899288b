"""The preferences page as a person uses it: headless Chromium (Debian's, through
Playwright) opens a real digest, follows its Preferences link to a real `feeds serve`,
changes topics and cadence with JavaScript off, and the next edition follows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_digest import cli, parts
from tests.test_email_in_browser import PLACEHOLDER
from tests.test_email_in_browser import browser as browser  # the fixtures these tests use
from tests.test_preferences import outbox, page_link, person, sections
from tests.test_preferences import site as site
from tests.test_serve import Site
from tests.test_serve import site as served_site  # noqa: F401  (the fixture site needs)

pytestmark = pytest.mark.browser

NO_OVERFLOW = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
FOCUS_RING = "() => getComputedStyle(document.activeElement).outlineStyle"


@pytest.fixture
def reader(browser: Any, site: Site) -> Iterator[Any]:
    """A browser tab with JavaScript off that reaches only the site: remote images get a placeholder."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 800})
    page = context.new_page()

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(("file:", site.base)):
            request_route.continue_()
        else:
            request_route.fulfill(status=200, content_type="image/svg+xml", body=PLACEHOLDER)

    page.route("**/*", route)
    yield page
    context.close()


def test_from_a_digest_to_a_changed_next_edition(reader: Any, site: Site, tmp_path: Path) -> None:
    _, html = parts(outbox(site.tmp)["ada@example.org"])
    email_page = tmp_path / "digest.html"
    email_page.write_text(html, encoding="utf-8")
    reader.goto(email_page.as_uri())
    reader.get_by_role("link", name="Preferences").click()
    reader.wait_for_url(f"{site.base}preferences?token=*")
    assert reader.get_by_role("heading", level=1).inner_text() == "Your digest preferences"
    assert reader.evaluate(NO_OVERFLOW)  # nothing sideways at 375 px

    # By keyboard: the first control takes the focus, with a visible ring.
    reader.keyboard.press("Tab")
    assert reader.evaluate("() => document.activeElement.name") == "topics"
    assert reader.evaluate(FOCUS_RING) not in ("", "none")

    reader.get_by_label("AI", exact=True).uncheck()
    reader.get_by_label("Computer Vision", exact=True).check()
    reader.get_by_role("group", name="How often").get_by_label("Daily").check()
    reader.get_by_role("button", name="Save").click()
    reader.wait_for_load_state()
    assert "Saved" in reader.get_by_role("status").inner_text()
    assert reader.get_by_label("Computer Vision", exact=True).is_checked()
    ada = person(site, "ada@example.org")
    assert (ada.topics, ada.cadence) == (("computer-vision",), "daily")

    # The next edition: the seeds' one computer-vision story of a day is on 13 June.
    code, out, err = cli(site.config, "digest", "--date", "2020-06-13T12:00:00Z")
    assert code == 0, out + err
    next_edition = outbox(site.tmp, "2020-06-13")["ada@example.org"]
    assert sections(next_edition) == ["COMPUTER VISION"] and "Daily digest" in parts(next_edition)[0]


def test_an_error_is_announced_beside_its_field(reader: Any, site: Site) -> None:
    reader.set_viewport_size({"width": 1280, "height": 800})
    reader.goto(page_link(site, "ada@example.org"))
    reader.get_by_label("AI", exact=True).uncheck()
    reader.get_by_role("button", name="Save").click()
    reader.wait_for_load_state()
    topics = reader.get_by_role("group", name="Topics")
    assert topics.get_attribute("aria-describedby") == "topics-error"
    assert reader.locator("#topics-error").inner_text() == "Choose at least one topic."
    assert person(site, "ada@example.org").topics == ("ai",)


@pytest.mark.parametrize("width", [375, 1280])
def test_axe_finds_nothing_serious_in_the_pages_other_states(browser: Any, site: Site, width: int) -> None:
    """The states test_signup_browser's axe run does not reach: a refused pause date, just
    unsubscribed (the Resubscribe form), and welcomed back. (JavaScript on: axe runs in the page.)"""
    from tests.test_signup_browser import serious

    reader = browser.new_page(viewport={"width": width, "height": 800})
    reader.set_default_timeout(20_000)
    reader.goto(page_link(site, "ada@example.org"))
    found: dict[str, list[str]] = {}
    reader.get_by_label("Pause until").fill("2000-01-01")
    reader.get_by_role("button", name="Save").click()
    found["a refused pause date"] = serious(reader)
    assert reader.get_by_label("Pause until").get_attribute("aria-invalid") == "true"
    reader.get_by_role("button", name="Unsubscribe").click()
    found["unsubscribed"] = serious(reader)
    reader.get_by_role("button", name="Resubscribe").click()
    found["resubscribed"] = serious(reader)
    assert reader.evaluate(NO_OVERFLOW)
    reader.close()
    assert {name: v for name, v in found.items() if v} == {}
