"""Subscribing: who may be added again, what an import counts, and the topic names a
subscriber may use, through the real CLI on a real state database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from feeds import state
from tests.conftest import write_record
from tests.test_digest import cli, subscribe, write_config


def engine_of(tmp_path: Path) -> Engine:
    return state.open_state(f"sqlite:///{tmp_path / 'state.db'}")


def person(tmp_path: Path, address: str) -> state.Subscriber:
    found = state.find_subscriber(engine_of(tmp_path), address)
    assert found is not None
    return found


def leave(tmp_path: Path, address: str, status: str, source: str, reason: str | None = None) -> None:
    assert state.set_status(engine_of(tmp_path), person(tmp_path, address).id, status, source=source,
                            now=datetime.now(UTC), reason=reason)


@pytest.mark.parametrize("status, source, said", [
    (state.UNSUBSCRIBED, "one-click", "unsubscribed (one-click)"),
    (state.UNSUBSCRIBED, "mailto", "unsubscribed (mailto)"),
    (state.COMPLAINED, "complaint", "complained (complaint)"),
    (state.BOUNCED, "bounce", "bounced (bounce)"),
])
def test_add_never_brings_back_someone_who_left(tmp_path: Path, status: str, source: str, said: str) -> None:
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai", "daily")
    leave(tmp_path, "ada@example.org", status, source)
    code, _, err = cli(config, "subscribers", "add", "ada@example.org", "--topics", "ai,computer-vision")
    assert code == 1
    assert f"left ada@example.org: {said}; not reactivated (use --reactivate)" in err
    ada = person(tmp_path, "ada@example.org")
    assert (ada.status, ada.topics) == (status, ("ai",))  # left alone, topics too


def test_reactivate_is_explicit_and_kept_in_the_history(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    subscribe(config, "ada@example.org", "ai", "daily")
    leave(tmp_path, "ada@example.org", state.BOUNCED, "bounce", "550 5.1.1 no such user")
    code, out, err = cli(config, "subscribers", "add", "ada@example.org", "--topics", "ai", "--reactivate")
    assert code == 0, out + err
    assert out.strip() == "Reactivated ada@example.org: daily, ai"
    ada = person(tmp_path, "ada@example.org")
    assert ada.active
    history = [(c.status, c.source, c.reason) for c in state.status_history(engine_of(tmp_path), ada.id)]
    assert history == [
        (state.ACTIVE, "operator", "subscribed"),
        (state.BOUNCED, "bounce", "550 5.1.1 no such user"),
        (state.ACTIVE, "operator", "reactivated by the operator"),
    ]
    code, out, _ = cli(config, "subscribers", "add", "ada@example.org", "--topics", "ai")
    assert (code, out.strip()) == (0, "Unchanged ada@example.org: daily, ai")


def test_import_counts_added_updated_unchanged_not_reactivated_and_skipped(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for address in ("same@example.org", "moved@example.org", "gone@example.org", "spam@example.org"):
        subscribe(config, address, "ai", "daily")
    leave(tmp_path, "gone@example.org", state.UNSUBSCRIBED, "one-click")
    leave(tmp_path, "spam@example.org", state.COMPLAINED, "complaint")
    people = tmp_path / "people.csv"
    people.write_text("email,topics,cadence\n"
                      "new@example.org,ai,daily\n"
                      "same@example.org,ai,daily\n"
                      "moved@example.org,ai,weekly\n"
                      "gone@example.org,ai,daily\n"
                      "spam@example.org,ai,daily\n"
                      "broken@,ai,daily\n")
    code, out, err = cli(config, "subscribers", "import", str(people))
    assert code == 0, out + err
    assert out.strip() == "Imported 1 new, 1 updated, 1 unchanged, 2 not reactivated, 1 skipped."
    assert err.count("not reactivated (use --reactivate)") == 2
    assert "left spam@example.org: complained (complaint)" in err
    statuses = {p.email: (p.status, p.cadence) for p in state.list_subscribers(engine_of(tmp_path))}
    assert statuses == {
        "new@example.org": (state.ACTIVE, "daily"), "same@example.org": (state.ACTIVE, "daily"),
        "moved@example.org": (state.ACTIVE, "weekly"), "gone@example.org": (state.UNSUBSCRIBED, "daily"),
        "spam@example.org": (state.COMPLAINED, "daily"),
    }
    new = person(tmp_path, "new@example.org")
    history = state.status_history(engine_of(tmp_path), new.id)
    assert [(c.status, c.source) for c in history] == [(state.ACTIVE, "import")]

    code, out, err = cli(config, "subscribers", "import", str(people), "--reactivate")
    assert code == 0, out + err
    assert out.strip() == "Imported 0 new, 0 updated, 3 unchanged, 2 reactivated, 0 not reactivated, 1 skipped."
    spam = person(tmp_path, "spam@example.org")
    assert spam.active
    assert state.status_history(engine_of(tmp_path), spam.id)[-1].source == "operator"


def test_a_local_part_over_64_octets_is_refused_by_add_and_import(tmp_path: Path) -> None:
    """RFC 5321 allows 64 octets before the @ (UTF-8 ones, with SMTPUTF8): longer, every
    digest would be refused at RCPT."""
    config = write_config(tmp_path)
    longest, too_long, too_long_utf8 = "a" * 64 + "@example.org", "a" * 65 + "@example.org", "é" * 33 + "@example.org"
    code, out, err = cli(config, "subscribers", "add", too_long, "--topics", "ai")
    assert code != 0 and "the part before the @-sign is 65 octets long, over the 64 SMTP allows" in out + err
    people = tmp_path / "people.csv"
    people.write_text(f"email,topics\n{longest},ai\n{too_long},ai\n{too_long_utf8},ai\n", encoding="utf-8")
    code, out, err = cli(config, "subscribers", "import", str(people))
    assert code == 0, out + err
    assert "Imported 1 new" in out and "2 skipped" in out, out + err
    assert f"skipped {people}:3: '{too_long}' is not a valid e-mail address" in err, err
    assert "66 octets long" in err, err
    assert [s.email for s in state.list_subscribers(engine_of(tmp_path))] == [longest]


def test_topics_split_on_commas_and_semicolons_and_answer_to_shortnames(tmp_path: Path) -> None:
    seeds = tmp_path / "records"
    write_record(seeds / "a.md", title="Fairness", topics=["AI Ethics"], webUrl="https://example.com/a")
    write_record(seeds / "b.md", title="Chips", topics=["ML hardware"], webUrl="https://example.com/b")
    write_record(seeds / "c.md", title="Robots", topics=["AI"], webUrl="https://example.com/c")
    config = write_config(tmp_path, seeds=seeds,
                          topics="[{_id: ai-hardware, name: AI Hardware, shortname: ML hardware}]")
    people = tmp_path / "people.csv"
    people.write_text('email,topics\nada@example.org,"AI Ethics, ML hardware"\n'
                      "bob@example.org;,AI;ai-hardware\n"
                      'cy@example.org,"AI Ethics;AI"\n')
    code, out, err = cli(config, "subscribers", "import", str(people))
    assert code == 0, out + err
    assert "Imported 2 new" in out and "1 skipped" in out  # bob's address is not one
    topics = {p.email: p.topics for p in state.list_subscribers(engine_of(tmp_path))}
    assert topics == {"ada@example.org": ("ai-ethics", "ai-hardware"), "cy@example.org": ("ai-ethics", "ai")}
    code, out, err = cli(config, "subscribers", "add", "dee@example.org", "--topics", "ML hardware,AI Ethics")
    assert code == 0, out + err
    assert person(tmp_path, "dee@example.org").topics == ("ai-hardware", "ai-ethics")
