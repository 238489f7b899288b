"""Make docs/digest.png: the seeds' digest edition as headless Chromium shows it at 800 px.

Run from the repository root: .venv/bin/python docs/make_screenshot.py
Remote images are replaced by a placeholder, as this machine (and CI) has no internet.
"""

from __future__ import annotations

import email
import shutil
import sys
import tempfile
from email.policy import default
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import run_cli  # noqa: E402
from tests.test_email_in_browser import CHROMIUM_FLAGS, PLACEHOLDER  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "feeds.yaml"
        config.write_text(f"title: AI Digest\nseeds: {ROOT / 'seeds'}\nout: {folder / 'out'}\n"
                          f"state_db: {folder / 'state.db'}\nbase_url: https://news.example.org/\n")
        # Weekly: the seeds span 11-15 June, so a daily edition on 18 June would be empty.
        run_cli("subscribers", "add", "ada@example.org", "--topics", "ai", "--cadence", "weekly",
                "--config", str(config))
        run_cli("digest", "--date", "2020-06-18T00:00:00Z", "--config", str(config))
        [eml] = (folder / "out/outbox/2020-06-18").glob("*.eml")
        message = email.message_from_bytes(eml.read_bytes(), policy=default)
        page_file = folder / "edition.html"
        page_file.write_text(message.get_body(("html",)).get_content())  # type: ignore[union-attr]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 800, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                       else r.fulfill(status=200, content_type="image/svg+xml", body=PLACEHOLDER))
            page.goto(page_file.as_uri())
            page.screenshot(path=str(ROOT / "docs" / "digest.png"), full_page=True)
            browser.close()


if __name__ == "__main__":
    main()
