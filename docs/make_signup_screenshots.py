"""Make docs/signup-*.png and docs/preferences.png: the sign-up and preferences pages as headless Chromium shows them, from a real run.

Run from the repository root: .venv/bin/python docs/make_signup_screenshots.py
It builds the seeds into a temporary folder, starts a real `feeds serve` on loopback and
goes through the pages as a reader would: the index page's form, a form sent with
mistakes, the confirmation link's page, what pressing Confirm shows, and the preferences
page it links to (the page every digest links to).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_email_in_browser import CHROMIUM_FLAGS  # noqa: E402
from tests.test_signup import link_token, read_eml  # noqa: E402
from tests.test_signup_web import start_server, wait_for_mail  # noqa: E402

contextmanager_server = contextmanager(start_server)


def main() -> None:
    docs = ROOT / "docs"
    with tempfile.TemporaryDirectory() as tmp, contextmanager_server(Path(tmp)) as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        wide = browser.new_page(viewport={"width": 1280, "height": 640})
        wide.goto(server.base)
        wide.screenshot(path=str(docs / "signup-index.png"))  # the top of the page: the form
        phone = browser.new_page(viewport={"width": 375, "height": 720})
        phone.goto(server.base + "subscribe/ai")
        phone.get_by_label("Email address").fill("ada@example")
        phone.get_by_label("AI", exact=True).uncheck()
        phone.get_by_role("button", name="Subscribe").click()
        phone.screenshot(path=str(docs / "signup-errors.png"), full_page=True)
        phone.get_by_label("Email address").fill("ada@example.org")
        phone.get_by_label("AI", exact=True).check()
        phone.get_by_role("button", name="Subscribe").click()
        phone.screenshot(path=str(docs / "signup-check-inbox.png"), full_page=True)
        token = link_token(read_eml(wait_for_mail(server, "ada@example.org")))
        phone.goto(f"{server.base}confirm?token={token}")
        phone.screenshot(path=str(docs / "signup-confirm.png"), full_page=True)
        phone.get_by_role("button", name="Confirm").click()
        phone.screenshot(path=str(docs / "signup-confirmed.png"), full_page=True)
        phone.get_by_role("link", name="Change your topics").click()
        phone.screenshot(path=str(docs / "preferences.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
