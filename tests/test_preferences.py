"""Subscribers manage themselves: the preferences token and link, the preferences page,
pausing, and the next edition following their changes."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lxml import html as lxml_html

from feeds import state
from feeds.api.digests import preferences_url
from feeds.config import load_config
from feeds.digest import preferences_token, unsubscribe_token, verify_preferences_token
from tests.test_digest import SECRET, cli, parts, subscribe, write_config

DATE = "2020-06-18T00:00:00Z"


def outbox(tmp_path: Path, day: str = "2020-06-18") -> dict[str, EmailMessage]:
    """The digest messages written for ``day``, by recipient."""
    messages = [email.message_from_bytes(eml.read_bytes(), policy=default)
                for eml in sorted((tmp_path / "out/outbox" / day).glob("*.eml"))]
    return {str(m["To"]): m for m in messages}  # type: ignore[misc]


def preferences_link(message: EmailMessage) -> str:
    """The preferences link of a digest, the same in its text and HTML parts."""
    text, page = parts(message)
    [html_link] = [a.get("href") for a in lxml_html.fromstring(page).xpath("//a")
                   if a.text_content().strip() == "Preferences"]
    [text_link] = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Change topics")]
    assert html_link == text_link
    return text_link


# --------------------------------------------------------------------- the token


def test_preferences_token_names_its_subscriber_and_nothing_else() -> None:
    addresses = {7: "ada@example.org", 8: "bob@example.org"}
    token = preferences_token(SECRET, 7, "Ada@Example.org")
    assert verify_preferences_token(SECRET, token, addresses.get) == 7
    # Another secret, another address for the id (erased or recycled), no such id,
    # a changed character or id: refused.
    assert verify_preferences_token("another-secret-that-is-long-enough", token, addresses.get) is None
    assert verify_preferences_token(SECRET, token, {7: "eve@example.org"}.get) is None
    assert verify_preferences_token(SECRET, token, {}.get) is None
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert verify_preferences_token(SECRET, flipped, addresses.get) is None
    assert verify_preferences_token(SECRET, "8" + token[1:], addresses.get) is None
    for junk in ("", "7", "7.", "x.y", token + "0", " " + token):
        assert verify_preferences_token(SECRET, junk, addresses.get) is None


def test_preferences_token_is_not_an_unsubscribe_token() -> None:
    """A distinct HMAC purpose: one link's token never works for the other's page."""
    prefs = preferences_token(SECRET, 7, "ada@example.org")
    unsub = unsubscribe_token(SECRET, 7, "ada@example.org")
    assert prefs != unsub
    assert verify_preferences_token(SECRET, unsub, {7: "ada@example.org"}.get) is None


def test_preferences_url_is_under_base_url(tmp_path: Path) -> None:
    (tmp_path / "feeds.yaml").write_text("base_url: https://news.example.org/feeds/\n", encoding="utf-8")
    config = load_config(tmp_path / "feeds.yaml")
    assert preferences_url(config, "7.abc") == "https://news.example.org/feeds/preferences?token=7.abc"


# --------------------------------------------------------------------- the digest link


def test_every_digest_links_to_its_subscribers_preferences(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai")
    subscribe(config, "bob@example.org", "computer-vision")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    messages = outbox(tmp_path)
    assert set(messages) == {"ada@example.org", "bob@example.org"}
    engine = state.open_state(f"sqlite:///{tmp_path / 'state.db'}")
    emails = {p.id: p.email for p in state.list_subscribers(engine)}
    for address, message in messages.items():
        link = urlsplit(preferences_link(message))
        assert (link.scheme, link.netloc, link.path) == ("https", "news.example.org", "/preferences")
        [token] = parse_qs(link.query)["token"]
        subscriber_id = verify_preferences_token(SECRET, token, emails.get)
        assert subscriber_id is not None and emails[subscriber_id] == address
