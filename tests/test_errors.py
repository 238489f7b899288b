"""The errors feeds raises on purpose: one family in feeds.errors, each naming its culprit in
an attribute (a caller need not parse the message), and still importable where it was raised."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from feeds import errors, state
from feeds.api.inbox import iter_maildir
from feeds.api.subscribers import check_subscription
from feeds.cache import RecordCache
from feeds.render.digest import mailbox
from feeds.write import resolve_inside, write_if_changed


def test_every_error_of_the_modules_is_one_of_the_family_and_importable_where_it_was() -> None:
    from feeds.api.inbox import InboxError
    from feeds.api.subscribers import SubscriberError
    from feeds.cache import CacheError
    from feeds.deliver import DeliveryError
    from feeds.render.digest import AddressError, TemplateError
    from feeds.scheduler import LeaseHeld
    from feeds.write import OutputError

    assert state.StateError is errors.StateError
    for old in (InboxError, SubscriberError, CacheError, DeliveryError, AddressError, TemplateError, LeaseHeld,
                OutputError):
        assert getattr(errors, old.__name__) is old
        assert issubclass(old, errors.FeedsError)


def test_a_path_outside_out_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(errors.OutputError) as caught:
        resolve_inside(tmp_path, "../elsewhere.xml")
    assert caught.value.path == "../elsewhere.xml"


def test_an_unwritable_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "rss.xml").mkdir()
    (tmp_path / "rss.xml" / "blocker").write_text("a folder in the way")
    with pytest.raises(errors.OutputError, match="cannot write") as caught:
        write_if_changed(tmp_path, "rss.xml", b"<rss/>")
    assert caught.value.path == tmp_path.resolve() / "rss.xml"


def test_an_address_that_cannot_be_used_names_the_address() -> None:
    with pytest.raises(errors.AddressError) as caught:
        mailbox("no at sign")
    assert caught.value.address == "no at sign"


def test_a_bad_subscription_names_what_is_wrong_in_it() -> None:
    known = {"all": "All topics", "ai": "AI"}
    with pytest.raises(errors.SubscriberError) as caught:
        check_subscription("not an address", ["ai"], "daily", known)
    assert caught.value.value == "not an address"
    with pytest.raises(errors.SubscriberError) as caught:
        check_subscription("ada@example.org", ["knitting"], "daily", known)
    assert caught.value.value == "knitting"
    with pytest.raises(errors.SubscriberError) as caught:
        check_subscription("ada@example.org", ["ai"], "hourly", known)
    assert caught.value.value == "hourly"


def test_a_state_database_that_cannot_be_opened_names_it_without_its_password(tmp_path: Path) -> None:
    (tmp_path / "not-a-database.db").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(errors.StateError) as caught:
        state.open_state(f"sqlite:///{tmp_path / 'not-a-database.db'}")
    assert caught.value.url == f"sqlite:///{tmp_path / 'not-a-database.db'}"
    with pytest.raises(errors.StateError) as caught:
        state.open_state("postgresql+psycopg://ada:hunter2@127.0.0.1:1/feeds?connect_timeout=2")
    assert caught.value.url is not None and "hunter2" not in caught.value.url and "127.0.0.1:1" in caught.value.url


def test_a_folder_that_is_no_maildir_is_named(tmp_path: Path) -> None:
    with pytest.raises(errors.InboxError) as caught:
        list(iter_maildir(tmp_path))
    assert caught.value.path == tmp_path


def test_a_cache_that_cannot_be_opened_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "cache.db").mkdir()  # a folder where the file should be
    with pytest.raises(errors.CacheError) as caught:
        RecordCache(tmp_path / "cache.db")
    assert caught.value.path == tmp_path / "cache.db"


def test_the_culprit_survives_pickling_as_a_worker_process_sends_it_back() -> None:
    error = pickle.loads(pickle.dumps(errors.OutputError("out/x: cannot write", Path("out/x"))))
    assert (str(error), error.path) == ("out/x: cannot write", Path("out/x"))
