"""A reader's whole journey in Chromium, as a person would make it, against a real `feeds
serve`: the index page's form, the confirmation mail in the outbox, its link, the Confirm
button, a digest's Preferences link, other topics, a changed next edition. With JavaScript
off (there is none to need). axe-core checks every page at 375 and 1280 px, and the
keyboard reaches every field in order with a visible focus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from feeds import state
from tests.conftest import run_cli
from tests.test_digest import parts
from tests.test_email_in_browser import PLACEHOLDER
from tests.test_email_in_browser import browser as browser  # the fixture: Debian's Chromium
from tests.test_preferences import sections
from tests.test_signup import link_token, read_eml
from tests.test_signup_web import Server, start_server, wait_for_mail

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (375, 1280)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path, "signup:", "  rate_per_ip: 1000/hour", "  rate_per_email: 100/hour")


def heading(page: Any) -> str:
    return str(page.locator("h1").inner_text())


def sign_up_on_the_index_page(page: Any, server: Server, address: str) -> None:
    page.goto(server.base)
    page.get_by_label("Email address").fill(address)
    page.get_by_label("AI", exact=True).check()
    page.get_by_label("Computer Vision", exact=True).check()
    page.get_by_label("Weekly").check()
    page.get_by_role("button", name="Subscribe").click()


def test_a_reader_goes_from_the_index_page_to_a_changed_edition(browser: Any, server: Server,
                                                               tmp_path: Path) -> None:
    """Issue 14's journey, with JavaScript off: the index page's form, the confirmation mail
    in the outbox, its link, Confirm; then a digest, its Preferences link, other topics, and
    the next edition has them."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", server.base))
               else route.fulfill(status=200, content_type="image/svg+xml", body=PLACEHOLDER))
    sign_up_on_the_index_page(page, server, "ada@example.org")
    assert heading(page) == "Check your inbox"
    assert "ada@example.org" in page.locator("main").inner_text()

    url = f"{server.base}confirm?token={link_token(read_eml(wait_for_mail(server, 'ada@example.org')))}"
    page.goto(url)
    assert heading(page) == "Confirm your subscription"
    assert page.locator("li").all_inner_texts() == ["AI", "Computer Vision"]
    assert server.status("ada@example.org") == state.UNCONFIRMED  # opening the link confirmed nothing
    page.get_by_role("button", name="Confirm").click()
    assert heading(page) == "You are subscribed"
    person = state.find_subscriber(server.engine(), "ada@example.org")  # type: ignore[arg-type]
    assert person is not None and person.active and person.topics == ("ai", "computer-vision")
    assert person.cadence == "weekly"

    # The first digest, opened as the mail client would show it, and its Preferences link.
    first = digest(server)
    assert sections(first) == ["AI", "COMPUTER VISION"]
    mail_page = tmp_path / "digest.html"
    mail_page.write_text(parts(first)[1], encoding="utf-8")
    page.goto(mail_page.as_uri())
    page.get_by_role("link", name="Preferences").click()
    page.wait_for_url(f"{server.base}preferences?token=*")
    page.get_by_label("AI", exact=True).uncheck()
    page.get_by_role("button", name="Save").click()
    assert "Saved" in page.get_by_role("status").inner_text()

    # The next edition follows.
    assert sections(digest(server)) == ["COMPUTER VISION"]
    context.close()


def digest(server: Server) -> EmailMessage:
    """Run the weekly digest of 18 June (the seeds' week) and return ada's message."""
    result = run_cli("digest", "--date", "2020-06-18T00:00:00Z", "--config", str(server.config))
    assert result.exit_code == 0, result.output
    return read_eml(server.tmp / "out/outbox/2020-06-18/ada-at-example.org.eml")


def test_errors_come_back_beside_their_fields_without_javascript(browser: Any, server: Server) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server.base + "subscribe/ai")
    page.get_by_label("Email address").fill("ada@example")
    page.get_by_label("AI", exact=True).uncheck()
    page.get_by_role("button", name="Subscribe").click()
    assert page.title().startswith("Error: ")
    email = page.get_by_label("Email address")
    assert email.input_value() == "ada@example" and email.get_attribute("aria-invalid") == "true"
    assert "email address like" in page.locator(f"#{email.get_attribute('aria-describedby')}").inner_text()
    assert "Choose at least one topic" in page.locator("#topics-error").inner_text()
    assert heading(page) == "Subscribe to AI"  # still the topic's page
    context.close()


TAB_ORDER = """() => document.activeElement.id || document.activeElement.tagName"""
FOCUS_RING = """() => { const s = getComputedStyle(document.activeElement);
  return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }"""


def test_the_keyboard_reaches_every_field_in_order_with_a_visible_focus(browser: Any, server: Server) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.base + "subscribe")
    topics = page.locator("input[name=topics]").evaluate_all("boxes => boxes.map(b => b.id)")
    order, rings = [], []
    for _ in range(len(topics) + 4):
        page.keyboard.press("Tab")
        order.append(page.evaluate(TAB_ORDER))
        rings.append(page.evaluate(FOCUS_RING))
    # The honeypot is never reached; the radio group is one stop (its checked radio).
    assert order == ["email", *topics, "cadence-daily", "BUTTON", "A"], order
    assert all(rings), list(zip(order, rings, strict=True))
    page.close()


def bob(server: Server) -> tuple[int, str]:
    person = state.find_subscriber(server.engine(), "bob@example.org")  # type: ignore[arg-type]
    assert person is not None
    return person.id, person.email


def serious(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("width", WIDTHS)
def test_axe_finds_nothing_serious_on_any_page(browser: Any, server: Server, width: int) -> None:
    from feeds.digest import preferences_token
    from tests.test_serve import SECRET, token_for

    state.add_subscriber(server.engine(), "bob@example.org", ["ai"], "daily", datetime.now(UTC))  # type: ignore[arg-type]
    page = browser.new_page(viewport={"width": width, "height": 900})
    found: dict[str, list[str]] = {}

    def check(name: str) -> None:
        found[name] = serious(page)
        overflow = page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        assert overflow, f"{name} scrolls sideways at {width} px"

    page.goto(server.base)
    check("index")
    page.goto(server.base + "subscribe/ai")
    check("topic")
    page.goto(server.base + "subscribe")
    page.get_by_role("button", name="Subscribe").click()
    check("form with errors")
    sign_up_on_the_index_page(page, server, "ada@example.org")
    check("check your inbox")
    page.goto(f"{server.base}confirm?token={link_token(read_eml(wait_for_mail(server, 'ada@example.org')))}")
    check("confirm")
    page.get_by_role("button", name="Confirm").click()
    check("confirmed")
    page.goto(f"{server.base}preferences?token={preferences_token(SECRET, *bob(server))}")
    check("preferences")
    page.get_by_label("AI", exact=True).uncheck()
    page.get_by_role("button", name="Save").click()
    check("preferences with an error")
    page.goto(server.base + "confirm?token=nonsense")
    check("bad link")
    page.goto(f"{server.base}unsubscribe?token={token_for(server, 'bob@example.org')[1]}")  # type: ignore[arg-type]
    check("unsubscribe")
    page.close()
    assert {name: v for name, v in found.items() if v} == {}
