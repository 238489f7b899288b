"""Subscribers manage themselves: the preferences token and link, the preferences page,
pausing, and the next edition following their changes."""

from __future__ import annotations

from pathlib import Path

from feeds.api.digests import preferences_url
from feeds.config import load_config
from feeds.digest import preferences_token, unsubscribe_token, verify_preferences_token

SECRET = "a-test-secret-that-is-long-enough"


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
