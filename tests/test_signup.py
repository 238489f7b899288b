"""Readers sign themselves up: double opt-in through the digests' own delivery (issue 14).

Real files, a real state database, the real CLI and a real SMTP server on loopback; each
confirmation mail is parsed by the stdlib email parser and its link followed by the API."""

from __future__ import annotations

import email
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from feeds import state
from feeds.api import signup
from feeds.api.subscribers import SubscriberError
from feeds.config import load_config
from feeds.errors import ConfigError
from tests.conftest import SEEDS, run_cli
from tests.mail import smtp_server
from tests.test_postgres import database as database  # the fixture: a throwaway PostgreSQL database

SECRET = "a-test-secret-that-is-long-enough"
NOW = datetime(2020, 6, 18, 9, 0, tzinfo=UTC)
DATE = "2020-06-18T00:00:00Z"


def write_config(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text("\n".join([
        "title: AI Digest",
        "base_url: https://news.example.org/",
        f"seeds: {SEEDS}",
        f"out: {tmp_path / 'out'}",
        *([] if any(line.startswith("state_db:") for line in lines) else [f"state_db: {tmp_path / 'state.db'}"]),
        f"secret: {SECRET}",
        "mail_from: AI Digest <digest@news.example.org>",
        *lines,
    ]) + "\n", encoding="utf-8")
    assert run_cli("build", "--config", str(path), "--now", DATE).exit_code == 0
    return path


@pytest.fixture
def site(tmp_path: Path) -> tuple[object, object]:
    config = load_config(write_config(tmp_path))
    return config, state.open_state(config.state_db)


def read_eml(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=default)  # type: ignore[return-value]


def link_token(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    [url] = [word for word in body.get_content().split() if "/confirm?token=" in word]
    assert url.startswith(("https://news.example.org/confirm?token=", "http://127.0.0.1:"))
    return parse_qs(urlsplit(url).query)["token"][0]


def status(engine: object, address: str) -> str | None:
    person = state.find_subscriber(engine, address)  # type: ignore[arg-type]
    return person.status if person else None


def test_the_first_confirmation_written_sweeps_a_killed_writers_leftovers(site: tuple, tmp_path: Path) -> None:
    import subprocess
    import sys
    config, engine = site
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    folder = tmp_path / "out/outbox/confirmations"
    folder.mkdir(parents=True)
    names = [f".bob-at-example.org.eml.{dead}.0.tmp", ".notes.tmp", "cy-at-example.org.eml"]
    for name in names:
        (folder / name).write_bytes(b"half")
    done = signup.sign_up(config, engine, "ada@example.org", ["ai"], "weekly", NOW)
    assert done.written == "outbox/confirmations/ada-at-example.org.eml"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*names[1:], "ada-at-example.org.eml"])


def test_a_sign_up_is_unconfirmed_until_the_link_is_confirmed(site: tuple, tmp_path: Path) -> None:
    config, engine = site
    done = signup.sign_up(config, engine, "Ada@Example.org", ["ai", "computer-vision"], "weekly", NOW)
    assert done.outcome == signup.MAILED and done.written == "outbox/confirmations/ada-at-example.org.eml"
    assert status(engine, "ada@example.org") == state.UNCONFIRMED
    message = read_eml(tmp_path / "out" / done.written)
    assert message["To"] == "ada@example.org" and message["From"].addresses[0].addr_spec == "digest@news.example.org"
    assert message["Subject"] == "Confirm your subscription to AI Digest"
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "weekly" in text and "AI" in text and "Computer Vision" in text and "48 hours" in text

    # Unconfirmed: no digest.
    config_path = str(tmp_path / "feeds.yaml")
    result = run_cli("digest", "--date", DATE, "--config", config_path)
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "out/outbox/2020-06-18").glob("*.eml"))

    token = link_token(message)
    assert signup.pending(config, engine, token, NOW + timedelta(hours=1)) is not None
    assert status(engine, "ada@example.org") == state.UNCONFIRMED  # looking at the link confirms nothing
    confirmed = signup.confirm(config, engine, token, NOW + timedelta(hours=1))
    assert confirmed is not None
    person = state.find_subscriber(engine, "ada@example.org")
    assert person is not None and person.active and person.topics == ("ai", "computer-vision")
    assert person.cadence == "weekly"
    assert [(c.status, c.source) for c in state.status_history(engine, person.id)] == [
        (state.UNCONFIRMED, "sign-up"), (state.ACTIVE, "confirmed")]
    record = state.get_signup(engine, person.id)
    assert record is not None and record.confirmed_at == NOW + timedelta(hours=1)

    result = run_cli("digest", "--date", DATE, "--config", config_path)
    assert result.exit_code == 0, result.output
    [eml] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    assert read_eml(eml)["To"] == "ada@example.org"
    # The same link again changes nothing and is still welcome.
    assert signup.confirm(config, engine, token, NOW + timedelta(hours=2)) is not None


def test_a_link_expires(site: tuple, tmp_path: Path) -> None:
    config, engine = site
    done = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
    token = link_token(read_eml(tmp_path / "out" / done.written))
    assert signup.confirm(config, engine, token, NOW + timedelta(hours=48, seconds=1)) is None
    assert status(engine, "ada@example.org") == state.UNCONFIRMED
    assert signup.confirm(config, engine, token, NOW + timedelta(hours=47)) is not None


def test_a_forged_or_tampered_link_confirms_nothing(site: tuple, tmp_path: Path) -> None:
    config, engine = site
    done = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
    token = link_token(read_eml(tmp_path / "out" / done.written))
    ident, issued, cadence, topics, mac = token.split(".")
    for bad in (f"{ident}.{issued}.weekly.{topics}.{mac}", f"{ident}.{issued}.{cadence}.all.{mac}",
                f"{ident}.{int(issued) + 1}.{cadence}.{topics}.{mac}", token[:-1] + "0", "", "1.2.3"):
        if bad != token:
            assert signup.confirm(config, engine, bad, NOW) is None, bad
    assert status(engine, "ada@example.org") == state.UNCONFIRMED


def test_bad_forms_are_refused_and_nothing_is_stored(site: tuple) -> None:
    config, engine = site
    for address, topics, cadence in (("not-an-address", ["ai"], "daily"), ("ada@example.org", ["nope"], "daily"),
                                     ("ada@example.org", [], "daily"), ("ada@example.org", ["ai"], "hourly")):
        with pytest.raises(SubscriberError):
            signup.sign_up(config, engine, address, topics, cadence, NOW)
    assert state.list_subscribers(engine) == []


def test_people_who_left_for_good_get_nothing_and_active_ones_no_new_link(tmp_path: Path) -> None:
    with smtp_server() as (recorder, port):
        config = load_config(write_config(tmp_path, "smtp:", "  host: 127.0.0.1", f"  port: {port}"))
        engine = state.open_state(config.state_db)
        for address in ("bo@example.org", "cy@example.org", "di@example.org"):
            state.add_subscriber(engine, address, ["ai"], "daily", NOW)
        state.set_status(engine, state.find_subscriber(engine, "bo@example.org").id, state.BOUNCED,  # type: ignore[union-attr]
                         source="bounce", now=NOW)
        state.set_status(engine, state.find_subscriber(engine, "cy@example.org").id, state.COMPLAINED,  # type: ignore[union-attr]
                         source="complaint", now=NOW)
        outcomes = {address: signup.sign_up(config, engine, address, ["computer-vision"], "weekly", NOW).outcome
                    for address in ("bo@example.org", "cy@example.org", "di@example.org")}
        assert outcomes == {"bo@example.org": signup.LEFT_FOR_GOOD, "cy@example.org": signup.LEFT_FOR_GOOD,
                            "di@example.org": signup.ALREADY_ACTIVE}
        assert recorder.received() == []
        # Nothing about them changed: not their status, not their topics.
        assert [(p.email, p.status, p.topics) for p in state.list_subscribers(engine)] == [
            ("bo@example.org", state.BOUNCED, ("ai",)), ("cy@example.org", state.COMPLAINED, ("ai",)),
            ("di@example.org", state.ACTIVE, ("ai",))]


def test_an_unsubscribed_address_comes_back_only_by_confirming(site: tuple, tmp_path: Path) -> None:
    config, engine = site
    state.add_subscriber(engine, "ada@example.org", ["ai"], "daily", NOW)
    person = state.find_subscriber(engine, "ada@example.org")
    assert person is not None and state.unsubscribe(engine, person.id, NOW)
    done = signup.sign_up(config, engine, "ada@example.org", ["computer-vision"], "weekly", NOW)
    assert done.outcome == signup.MAILED and status(engine, "ada@example.org") == state.UNSUBSCRIBED
    token = link_token(read_eml(tmp_path / "out" / done.written))
    assert signup.confirm(config, engine, token, NOW + timedelta(minutes=5)) is not None
    person = state.find_subscriber(engine, "ada@example.org")
    assert person is not None and person.active and person.topics == ("computer-vision",)
    # Leaving again sticks: the used link does not bring them back a second time.
    assert state.unsubscribe(engine, person.id, NOW + timedelta(minutes=10))
    assert signup.confirm(config, engine, token, NOW + timedelta(minutes=15)) is None
    assert status(engine, "ada@example.org") == state.UNSUBSCRIBED


def test_only_the_latest_link_is_good(site: tuple, tmp_path: Path) -> None:
    config, engine = site
    first = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
    old = link_token(read_eml(tmp_path / "out" / first.written))
    later = NOW + timedelta(hours=13)  # past signup.resend_after_hours (12 by default)
    second = signup.sign_up(config, engine, "ada@example.org", ["all"], "weekly", later)
    assert second.outcome == signup.MAILED
    new = link_token(read_eml(tmp_path / "out" / second.written))
    assert signup.confirm(config, engine, old, later) is None
    assert signup.confirm(config, engine, new, later) is not None
    person = state.find_subscriber(engine, "ada@example.org")
    assert person is not None and person.topics == ("all",) and person.cadence == "weekly"


def test_a_flood_of_sign_ups_sends_one_confirmation_per_period(tmp_path: Path) -> None:
    with smtp_server() as (recorder, port):
        config = load_config(write_config(tmp_path, "smtp:", "  host: 127.0.0.1", f"  port: {port}",
                                          "signup:", "  resend_after_hours: 1"))
        engine = state.open_state(config.state_db)
        outcomes: list[str] = []

        def one() -> None:
            result = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
            outcomes.append(result.outcome)

        threads = [threading.Thread(target=one) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for minutes in (1, 30, 59):
            outcomes.append(signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily",
                                           NOW + timedelta(minutes=minutes)).outcome)
        assert sorted(outcomes) == [signup.MAILED] + [signup.RECENTLY_MAILED] * 14
        assert len(recorder.to("ada@example.org")) == 1
        assert len(state.list_subscribers(engine)) == 1
        # The next period may send one more.
        assert signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily",
                              NOW + timedelta(hours=1)).outcome == signup.MAILED
        assert len(recorder.to("ada@example.org")) == 2


def test_a_mail_the_server_refuses_may_be_asked_for_again(tmp_path: Path) -> None:
    with smtp_server() as (recorder, port):
        config = load_config(write_config(tmp_path, "smtp:", "  host: 127.0.0.1", f"  port: {port}",
                                          "  retries: 0"))
        engine = state.open_state(config.state_db)
        recorder.scripted["ada@example.org"] = ["451 4.3.0 try again later"]
        assert signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW).outcome == signup.NOT_SENT
        later = NOW + timedelta(minutes=1)
        assert signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", later).outcome == signup.MAILED
        [message] = recorder.to("ada@example.org")
        assert signup.confirm(config, engine, link_token(message), later) is not None


def test_purge_deletes_unconfirmed_sign_ups_after_their_time(site: tuple, tmp_path: Path) -> None:
    config, engine = site
    signup.sign_up(config, engine, "old@example.org", ["ai"], "daily", NOW)
    signup.sign_up(config, engine, "new@example.org", ["ai"], "daily", NOW + timedelta(days=6))
    state.add_subscriber(engine, "op@example.org", ["ai"], "daily", NOW - timedelta(days=30))
    config_path = str(tmp_path / "feeds.yaml")
    result = run_cli("subscribers", "purge", "--now", "2020-06-25T09:00:01Z", "--config", config_path)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Purged 1 unconfirmed sign-up."
    assert [p.email for p in state.list_subscribers(engine)] == ["new@example.org", "op@example.org"]
    result = run_cli("subscribers", "purge", "--now", "2020-07-25T00:00:00Z", "--config", config_path)
    assert result.output.strip() == "Purged 1 unconfirmed sign-up."
    assert [p.email for p in state.list_subscribers(engine)] == ["op@example.org"]


def test_the_operator_adding_an_unconfirmed_address_makes_it_active(site: tuple, tmp_path: Path) -> None:
    config, engine = site
    signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
    result = run_cli("subscribers", "add", "ada@example.org", "--topics", "computer-vision",
                     "--config", str(tmp_path / "feeds.yaml"))
    assert result.exit_code == 0, result.output
    person = state.find_subscriber(engine, "ada@example.org")
    assert person is not None and person.active and person.topics == ("computer-vision",)


def test_the_daemon_has_a_purge_job(tmp_path: Path) -> None:
    from feeds.scheduler import job_specs, purge_job

    config_path = write_config(tmp_path)
    assert "purge-signups" in [spec.id for spec in job_specs(load_config(config_path), str(config_path))]
    assert purge_job(str(config_path)) == "0 unconfirmed sign-ups purged"


@pytest.mark.parametrize("lines, key", [
    (["signup:", "  confirm_within_hours: 0"], "confirm_within_hours"),
    (["signup:", "  rate_per_ip: lots"], "rate_per_ip"),
    (["signup:", "  purge_after_hours: 1"], "purge_after_hours"),
    (["signup:", "  rate_limit_storage: redis"], "rate_limit_storage"),
    (["signup:", "  colour: red"], "colour"),
    # Finite and within reason: timedelta and datetime arithmetic overflow past these.
    (["signup:", "  confirm_within_hours: .inf", "  purge_after_hours: .inf"], "confirm_within_hours"),
    (["signup:", "  purge_after_hours: 1000000000.0"], "purge_after_hours"),
    (["signup:", "  resend_after_hours: 100000000000"], "resend_after_hours"),
])
def test_bad_signup_settings_name_their_key(tmp_path: Path, lines: list[str], key: str) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=key):
        load_config(path)


def test_a_paused_subscriber_is_subscribed_already(site: tuple) -> None:
    config, engine = site
    state.add_subscriber(engine, "ada@example.org", ["ai"], "daily", NOW)
    person = state.find_subscriber(engine, "ada@example.org")
    assert person is not None and state.pause(engine, person.id, NOW.date() + timedelta(days=9), now=NOW)
    done = signup.sign_up(config, engine, "ada@example.org", ["computer-vision"], "weekly", NOW)
    assert done.outcome == signup.ALREADY_ACTIVE and done.written is None
    after = state.find_subscriber(engine, "ada@example.org")
    assert after is not None and (after.status, after.topics) == (state.PAUSED, ("ai",))


def test_what_sign_up_stores_is_exported_and_erased(site: tuple, tmp_path: Path) -> None:
    from feeds.api.subscribers import erase_subscriber, export_subscriber

    config, engine = site
    done = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
    signup.confirm(config, engine, link_token(read_eml(tmp_path / "out" / done.written)), NOW + timedelta(hours=1))
    exported = export_subscriber(config, "ada@example.org")
    [row] = exported["other"]["signups"]
    assert set(row) == {"subscriber_id", "requested_at", "mailed_at", "confirmed_at"}  # no IP, no browser
    assert row["confirmed_at"].startswith("2020-06-18T10:00")
    erase_subscriber(config, "ada@example.org", now=NOW + timedelta(days=1))
    person = state.get_subscriber(engine, row["subscriber_id"])
    assert person is not None and person.email.startswith("erased:")
    assert state.get_signup(engine, person.id) is None


def test_an_erased_address_signing_up_again_is_recognised(site: tuple, tmp_path: Path) -> None:
    from feeds.api.subscribers import erase_subscriber

    config, engine = site
    for address in ("ada@example.org", "bo@example.org"):
        state.add_subscriber(engine, address, ["ai"], "daily", NOW)
    ada = state.find_subscriber(engine, "ada@example.org")
    bo = state.find_subscriber(engine, "bo@example.org")
    assert ada is not None and bo is not None
    state.record_delivery(engine, subscriber_id=ada.id, edition="daily-2020-06-18", message_id="<m@x>",
                          status=state.SENT, period_end=NOW, now=NOW)
    state.set_status(engine, bo.id, state.BOUNCED, source="bounce", now=NOW)
    for address in ("ada@example.org", "bo@example.org"):
        erase_subscriber(config, address, now=NOW)
    later = NOW + timedelta(days=2)

    # Erased after a bounce: nothing, and still erased.
    assert signup.sign_up(config, engine, "bo@example.org", ["ai"], "daily", later).outcome == signup.LEFT_FOR_GOOD
    assert state.find_subscriber(engine, "bo@example.org") is None
    # Erased while subscribed: a new sign-up, on the same row (its ledger kept), confirmed by the link.
    done = signup.sign_up(config, engine, "ada@example.org", ["computer-vision"], "weekly", later)
    assert done.outcome == signup.MAILED
    again = state.find_subscriber(engine, "ada@example.org")
    assert again is not None and again.id == ada.id and again.status == state.UNCONFIRMED
    # Never confirmed: purged by erasing again, since the ledger must keep what was sent.
    assert signup.purge_unconfirmed(config, later + timedelta(days=8), engine) == ["ada@example.org"]
    erased = state.get_subscriber(engine, ada.id)
    assert erased is not None and erased.email.startswith("erased:")
    assert state.delivered_editions(engine, "daily-2020-06-18") == {ada.id: state.SENT}
    # Signing up again and confirming this time: active, same row.
    done = signup.sign_up(config, engine, "ada@example.org", ["computer-vision"], "weekly", later + timedelta(days=9))
    assert signup.confirm(config, engine, link_token(read_eml(tmp_path / "out" / done.written)),
                          later + timedelta(days=9, hours=1)) is not None
    back = state.find_subscriber(engine, "ada@example.org")
    assert back is not None and back.id == ada.id and back.active and back.topics == ("computer-vision",)


def test_sign_up_on_postgres(database: str, tmp_path: Path) -> None:
    """The same rules on PostgreSQL: one row however many race, one mail per period, and
    confirm and purge."""
    with smtp_server() as (recorder, port):
        config = load_config(write_config(tmp_path, f"state_db: {database}", "smtp:", "  host: 127.0.0.1",
                                          f"  port: {port}"))
        engine = state.open_state(config.state_db)
        outcomes: list[str] = []
        threads = [threading.Thread(target=lambda: outcomes.append(
            signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW).outcome)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == [signup.MAILED] + [signup.RECENTLY_MAILED] * 7
        [message] = recorder.to("ada@example.org")
        assert signup.confirm(config, engine, link_token(message), NOW + timedelta(hours=1)) is not None
        assert status(engine, "ada@example.org") == state.ACTIVE
        signup.sign_up(config, engine, "old@example.org", ["ai"], "daily", NOW)
        assert signup.purge_unconfirmed(config, NOW + timedelta(days=8), engine) == ["old@example.org"]
        assert [p.email for p in state.list_subscribers(engine)] == ["ada@example.org"]


def test_a_stranger_typing_an_erased_leavers_address_does_not_undo_the_erasure(site: tuple, tmp_path: Path) -> None:
    """Someone who unsubscribed and was erased stays erased when anyone (not they) types
    their address into the form and nobody confirms: the row got the address back to carry
    the sign-up, and the purge must erase it again, confirmation mail included."""
    check_an_erased_leaver_stays_erased(*site, tmp_path)


def test_an_erased_leaver_stays_erased_on_postgres(database: str, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, f"state_db: {database}"))
    check_an_erased_leaver_stays_erased(config, state.open_state(config.state_db), tmp_path)


def check_an_erased_leaver_stays_erased(config: Any, engine: Any, tmp_path: Path) -> None:
    from feeds.api.subscribers import erase_subscriber

    state.add_subscriber(engine, "ada@example.org", ["ai"], "daily", NOW)
    ada = state.find_subscriber(engine, "ada@example.org")
    assert ada is not None
    state.unsubscribe(engine, ada.id, NOW, source="one-click", reason="one-click")
    erase_subscriber(config, "ada@example.org", now=NOW)
    later = NOW + timedelta(days=2)
    done = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", later)
    assert done.outcome == signup.MAILED and done.written is not None

    signup.purge_unconfirmed(config, later + timedelta(days=8), engine)
    person = state.get_subscriber(engine, ada.id)
    assert person is not None and person.email.startswith("erased:") and person.status == state.UNSUBSCRIBED
    assert not (tmp_path / "out" / done.written).exists()
    # Still recognised, still gone: only a confirmed link brings them back.
    assert signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", later + timedelta(days=9)).outcome \
        == signup.MAILED
    assert state.find_subscriber(engine, "ada@example.org").status == state.UNSUBSCRIBED  # type: ignore[union-attr]


def test_purge_leaves_no_purged_address_in_the_outbox(site: tuple, tmp_path: Path) -> None:
    config, engine = site
    done = signup.sign_up(config, engine, "old@example.org", ["ai"], "daily", NOW)
    kept = signup.sign_up(config, engine, "new@example.org", ["ai"], "daily", NOW + timedelta(days=6))
    assert done.written is not None and kept.written is not None
    assert signup.purge_unconfirmed(config, NOW + timedelta(days=7, seconds=1), engine) == ["old@example.org"]
    assert not (tmp_path / "out" / done.written).exists()
    assert (tmp_path / "out" / kept.written).exists()  # still waiting: its link must keep working


@pytest.mark.parametrize("added_by", ["subscribers add", "subscribers import"])
def test_a_link_mailed_before_someone_left_does_not_bring_them_back(site: tuple, tmp_path: Path,
                                                                    added_by: str) -> None:
    """Signed up, made active by the operator before confirming, then unsubscribed: the old
    confirmation link, still within its hours and never used, confirms nothing. Leaving
    is newer than the request it stood for."""
    config, engine = site
    done = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
    token = link_token(read_eml(tmp_path / "out" / done.written))
    if added_by == "subscribers add":
        result = run_cli("subscribers", "add", "ada@example.org", "--topics", "ai",
                         "--config", str(tmp_path / "feeds.yaml"))
    else:
        people = tmp_path / "people.csv"
        people.write_text("email,topics\nada@example.org,ai\n", encoding="utf-8")
        result = run_cli("subscribers", "import", str(people), "--config", str(tmp_path / "feeds.yaml"))
    assert result.exit_code == 0, result.output
    person = state.find_subscriber(engine, "ada@example.org")
    assert person is not None and person.active
    assert state.unsubscribe(engine, person.id, NOW + timedelta(hours=1), source="one-click")

    assert signup.pending(config, engine, token, NOW + timedelta(hours=2)) is None
    assert signup.confirm(config, engine, token, NOW + timedelta(hours=2)) is None
    assert status(engine, "ada@example.org") == state.UNSUBSCRIBED


def test_asking_again_does_not_keep_an_unconfirmed_address(site: tuple, tmp_path: Path) -> None:
    """The purge counts from the first unconfirmed request: a stranger who sends the form
    for someone's address every few days cannot keep it stored. A link mailed shortly
    before the purge works only until then, and a request after the purge starts afresh."""
    config, engine = site
    config_path = str(tmp_path / "feeds.yaml")
    signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
    for days in (2, 4, 6):
        assert signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily",
                              NOW + timedelta(days=days)).outcome == signup.MAILED
    late = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW + timedelta(days=7, hours=-1))
    assert late.outcome == signup.MAILED and late.written is not None
    message = read_eml(tmp_path / "out" / late.written)
    assert "works for 1 hour." in " ".join(message.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    token = link_token(message)
    # Within the 48 hours of confirm_within_hours, but past the wait: not good, even before the purge runs.
    assert signup.pending(config, engine, token, NOW + timedelta(days=7, seconds=1)) is None
    assert signup.pending(config, engine, token, NOW + timedelta(days=7, seconds=-1)) is not None
    result = run_cli("subscribers", "purge", "--now", "2020-06-25T09:00:01Z", "--config", config_path)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Purged 1 unconfirmed sign-up."
    assert state.find_subscriber(engine, "ada@example.org") is None
    # Afresh after the purge: a new wait of its own.
    again = NOW + timedelta(days=7, hours=2)
    assert signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", again).outcome == signup.MAILED
    assert run_cli("subscribers", "purge", "--now", "2020-07-02T09:00:00Z", "--config", config_path).output.strip() \
        == "Purged 0 unconfirmed sign-ups."
    assert status(engine, "ada@example.org") == state.UNCONFIRMED


def test_a_wait_the_purge_missed_starts_afresh_but_keeps_the_resend_period(site: tuple) -> None:
    """Without a purge run, a request after the wait is over starts a new wait (as it would
    after the purge), the resend period still holds across it, and the old wait's link
    stays dead."""
    check_a_missed_wait(*site)


def test_a_missed_wait_on_postgres(database: str, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, f"state_db: {database}"))
    check_a_missed_wait(config, state.open_state(config.state_db))


def check_a_missed_wait(config: Any, engine: Any) -> None:
    signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW)
    old = signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", NOW + timedelta(days=6, hours=23))
    token = link_token(read_eml(config.out / old.written))
    after = NOW + timedelta(days=7, hours=1)
    assert signup.sign_up(config, engine, "ada@example.org", ["ai"], "daily", after).outcome \
        == signup.RECENTLY_MAILED
    assert signup.pending(config, engine, token, after) is None
    assert signup.purge_unconfirmed(config, NOW + timedelta(days=7, hours=2), engine) == []
    assert signup.purge_unconfirmed(config, after + timedelta(days=7, seconds=1), engine) == ["ada@example.org"]
