"""Digest delivery (issue 12): every address, every edition, exactly once, isolation of one
subscriber's fault, bounces, and headers that parse; with a real aiosmtpd server on loopback
(with and without SMTPUTF8), real `feeds digest --send` runs and the stdlib email parser."""

from __future__ import annotations

import email
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import strict
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from feeds import api, state
from feeds.api.sending import pid_space
from feeds.config import load_config
from feeds.digest import verify_token
from tests.conftest import write_record
from tests.mail import Recorder, smtp_server
from tests.test_digest import SECRET, cli, parts, story_titles, subscribe

DATE = "2020-06-18T00:00:00Z"


def write_site(tmp_path: Path, port: int = 25, *, title: str = "AI Digest",
               mail_from: str = "AI Digest <digest@news.example.org>", **smtp: object) -> Path:
    """A config and two days of records of our own: one story on the 17th, one on the 18th."""
    seeds = tmp_path / "seeds"
    write_record(seeds / "a.md", title="Robots learn to fold laundry", webUrl="https://example.com/a",
                 publishedDateTime="2020-06-17T12:00:00Z", topics=["AI"])
    write_record(seeds / "b.md", title="Chips get cooler", webUrl="https://example.com/b",
                 publishedDateTime="2020-06-18T12:00:00Z", topics=["AI"])
    settings = {"rate_per_second": 1000, "retries": 1, "backoff_seconds": 0.01, **smtp}
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "\n".join([
            f"title: {quoted(title)}",
            "base_url: https://news.example.org/",
            f"seeds: {seeds}",
            f"out: {tmp_path / 'out'}",
            f"state_db: {tmp_path / 'state.db'}",
            f"secret: {SECRET}",
            f"mail_from: {quoted(mail_from)}",
            "smtp:",
            "  host: 127.0.0.1",
            f"  port: {port}",
            *(f"  {k}: {v}" for k, v in settings.items()),
        ]) + "\n", encoding="utf-8")
    return path


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"  # YAML single-quoted


def engine_of(tmp_path: Path) -> sa.Engine:
    return state.open_state(f"sqlite:///{tmp_path / 'state.db'}")


def subscriber(tmp_path: Path, address: str) -> state.Subscriber:
    return next(s for s in state.list_subscribers(engine_of(tmp_path)) if s.email == address)


def recipients(server: Recorder) -> list[str]:
    return [to for _, tos, _ in server.envelopes for to in tos]


# ------------------------------------------------------------------------ every address


MIXED = [  # subscribed in this order: before the fix, josé's defect stopped everyone after him
    "josé@example.org",  # non-ASCII local part: needs SMTPUTF8
    "x@bücher.example",  # IDN: IDNA in the envelope and headers
    "ada@example.org",
    "once@example.org",  # 451 once, then accepted within the run
    "always@example.org",  # 451 every time: deferred, sent by the next run
    "gone@example.org",  # 550 at RCPT: failed, bounced, suppressed
    "spam@example.org",  # 554 at DATA: the same
]


def script_refusals(server: Recorder) -> None:
    server.scripted["once@example.org"] = ["451 4.3.0 Try again later"]
    server.scripted["always@example.org"] = ["451 4.3.0 Greylisted"] * 10
    server.scripted["gone@example.org"] = ["550 5.1.1 No such user"]
    server.scripted_data["spam@example.org"] = ["554 5.7.1 Rejected as spam"]


def test_every_address_with_smtputf8_is_sent_deferred_failed_or_suppressed(tmp_path: Path) -> None:
    with smtp_server(smtputf8=True) as (server, port):
        config = write_site(tmp_path, port)
        for address in MIXED:
            subscribe(config, address, "ai", "daily")
        script_refusals(server)
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 1, out + err  # two new failures
        assert "Sent 4 messages, 1 deferred, 2 failed, 0 suppressed;" in out, out + err
        assert sorted(recipients(server)) == [
            "ada@example.org", "josé@example.org", "once@example.org", "x@xn--bcher-kva.example"]
        by_rcpt = {tos[0]: (utf8, message)
                   for (_, tos, utf8), message in zip(server.envelopes, server.received(), strict=True)}
        assert by_rcpt["josé@example.org"][0] is True  # sent with SMTPUTF8
        assert by_rcpt["josé@example.org"][1]["To"].addresses[0].addr_spec == "josé@example.org"
        assert by_rcpt["x@xn--bcher-kva.example"][0] is False  # IDNA needs no SMTPUTF8
        assert str(by_rcpt["x@xn--bcher-kva.example"][1]["To"]) == "x@xn--bcher-kva.example"
        assert "failed  gone@example.org: 550 5.1.1 No such user" in err
        assert "failed  spam@example.org: 554 5.7.1 Rejected as spam" in err
        assert "deferred always@example.org: 451 4.3.0 Greylisted" in err

        statuses = {s.email: (s.status, s.status_reason) for s in state.list_subscribers(engine_of(tmp_path))}
        assert statuses["gone@example.org"] == ("bounced", "550 5.1.1 No such user")
        assert statuses["spam@example.org"] == ("bounced", "554 5.7.1 Rejected as spam")
        assert {s for s, _ in statuses.values()} == {"active", "bounced"}
        always = subscriber(tmp_path, "always@example.org")
        [row] = [r for r in state.open_deliveries(engine_of(tmp_path)) if r.subscriber_id == always.id]
        assert (row.status, row.detail, row.attempts) == ("deferred", "451 4.3.0 Greylisted", 1)

        # The second run sends exactly what was owed: the deferred message, same Message-ID.
        server.scripted.clear()
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0, out + err
        assert ("Sent 1 message, 0 deferred, 0 failed, 2 suppressed; 4 already had this edition, "
                "0 had no new stories, 0 not due yet, 0 sent by another run.") in out
        assert recipients(server)[4:] == ["always@example.org"]
        assert server.received()[-1]["Message-ID"] == row.message_id
        assert state.get_delivery(engine_of(tmp_path), always.id, row.edition).status == "sent"  # type: ignore[union-attr]

        # A third run has nothing to do and fails nothing.
        code, out, _ = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0 and "Sent 0 messages" in out and len(server.received()) == 5


def test_without_smtputf8_only_the_non_ascii_local_part_fails(tmp_path: Path) -> None:
    with smtp_server(smtputf8=False) as (server, port):
        config = write_site(tmp_path, port)
        for address in ("josé@example.org", "x@bücher.example", "ada@example.org"):
            subscribe(config, address, "ai", "daily")
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 1
        assert sorted(recipients(server)) == ["ada@example.org", "x@xn--bcher-kva.example"]
        assert re.search(r"failed  josé@example.org: .*needs SMTPUTF8.*does not offer", err), err
        josé = subscriber(tmp_path, "josé@example.org")
        assert josé.status == "active"  # the server's limit, not the address's fault
        row = state.get_delivery(engine_of(tmp_path), josé.id, "daily-2020-06-18")
        assert row is not None and row.status == "failed" and "SMTPUTF8" in (row.detail or "")
        # An old failure fails no later run.
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0, out + err
        assert "failed before josé@example.org" in err and len(server.received()) == 2


def test_an_unusable_address_fails_alone(tmp_path: Path) -> None:
    """An address no header can carry (its domain has no IDNA form) is failed with the
    reason; the subscribers after it still get their mail."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port)
        now = datetime(2020, 6, 17, tzinfo=UTC)
        state.add_subscriber(engine_of(tmp_path), "bad@a\u200db.example", ("ai",), "daily", now)
        subscribe(config, "ada@example.org", "ai", "daily")
        code, _out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 1
        assert recipients(server) == ["ada@example.org"]
        assert re.search(r"failed  bad@a\u200db.example: .*IDNA", err), err
        bad = subscriber(tmp_path, "bad@a\u200db.example")
        assert state.get_delivery(engine_of(tmp_path), bad.id, "daily-2020-06-18").status == "failed"  # type: ignore[union-attr]


def test_a_multi_line_refusal_is_one_line_in_the_report_and_the_list(tmp_path: Path) -> None:
    """Gmail refuses an unknown address with a three-line 550; smtplib joins the lines with
    newlines. The run's report and `subscribers list` (one tab-separated line each) must
    still give it one line."""
    gmail = ("550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
             "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
             "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser")
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port)
        for address in ("ada@example.org", "gone@example.org"):
            subscribe(config, address, "ai", "daily")
        server.scripted["gone@example.org"] = [gmail]
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
    assert code == 1, out + err
    [line] = [line for line in err.splitlines() if "gone@example.org" in line]
    assert line.startswith("failed  gone@example.org: 550 5.1.1 The email account") and line.endswith("NoSuchUser")
    code, out, err = cli(config, "subscribers", "list")
    rows = [row for row in out.splitlines() if "\t" in row]
    assert len(rows) == 2, out
    [gone] = [row for row in rows if row.startswith("gone@example.org")]
    assert "(bounced: 550 5.1.1 The email account" in gone and "unnecessary spaces" in gone


# ---------------------------------------------------------------------- headers that parse


@pytest.mark.parametrize("title, mail_from", [
    ("AI Digest", "AI Digest <digest@news.example.org>"),
    ("Zoë's News, Inc.", "Zoë's News, Inc. <news@example.org>"),
    ('The "Daily", Edition', '"The \\"Daily\\", Edition" <news@bücher.example>'),
    ("Nachrichten für Bücher", "Bücherwurm <nachrichten@bücher.example>"),
])
def test_every_header_parses_strictly(tmp_path: Path, title: str, mail_from: str) -> None:
    config = write_site(tmp_path, title=title, mail_from=mail_from)
    # (Not josé@: the stdlib flags any non-ASCII local part as a defect, even under
    # RFC 6532; his To is checked where he is sent with SMTPUTF8.)
    for address in ("ada@example.org", "x@bücher.example"):
        subscribe(config, address, "ai", "daily")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    files = sorted((tmp_path / "out/outbox/2020-06-18").glob("*.eml"))
    assert len(files) == 2
    display, _, spec = mail_from.rpartition("<")
    display = display.strip().strip('"').replace('\\"', '"')
    local, _, domain = spec.rstrip(">").rpartition("@")
    idna_domain = domain.encode("idna").decode()
    for path in files:
        message = parse_strictly(path.read_bytes())
        [sender] = message["From"].addresses
        assert (sender.display_name, sender.username, sender.domain) == (display, local, idna_domain)
        assert re.fullmatch(rf"<daily-2020-06-18\.[0-9a-f]{{24}}@{re.escape(idna_domain)}>", message["Message-ID"])
        raw_list_id = dict(message.raw_items())["List-Id"]  # as written: message[...] decodes it
        assert list_id_name(raw_list_id, f"digest.{idna_domain}") == title
        https, mailto = (urlsplit(u.strip().strip("<>")) for u in message["List-Unsubscribe"].split(","))
        assert https.scheme == "https" and (mailto.scheme, mailto.path) == ("mailto", f"{local}@{idna_domain}")


@pytest.mark.parametrize("title", ["AI Digest\\r\\nBcc: evil@example.com", "Zoë\\nX-Injected: yes"])
def test_a_title_with_line_breaks_cannot_add_headers(tmp_path: Path, title: str) -> None:
    """The config's title is List-Id's phrase: a line break in it (a double-quoted YAML
    escape) must not end the header and start another one."""
    config = write_site(tmp_path)
    text = config.read_text(encoding="utf-8").splitlines()
    config.write_text("\n".join([f'title: "{title}"', *text[1:]]) + "\n", encoding="utf-8")
    subscribe(config, "ada@example.org", "ai", "daily")
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 0, out + err
    [path] = (tmp_path / "out/outbox/2020-06-18").glob("*.eml")
    message = parse_strictly(path.read_bytes())
    assert "Bcc" not in message and "X-Injected" not in message
    assert len(message.get_all("List-Id", [])) == 1
    expected = title.replace("\\r\\n", " ").replace("\\n", " ")
    assert list_id_name(dict(message.raw_items())["List-Id"], "digest.news.example.org") == expected


def parse_strictly(data: bytes) -> EmailMessage:
    """Parse with email.policy.strict (raises on any defect) and read every header."""
    assert data.split(b"\r\n\r\n", 1)[0].isascii()  # no SMTPUTF8 needed for these
    message = email.message_from_bytes(data, policy=strict)
    for name, value in message.items():
        assert not value.defects, (name, value, value.defects)
    return message  # type: ignore[return-value]


def list_id_name(value: str, expected_id: str) -> str:
    """The phrase of a List-Id (RFC 2919: phrase <list-id>), read by the stdlib address
    parser in strict mode: List-Id's phrase is a display name's."""
    phrase, _, rest = value.rpartition("<")
    assert rest == f"{expected_id}>", value
    [address] = parse_strictly(f"To: {phrase}<list@{expected_id}>\r\n\r\n".encode())["To"].addresses
    return address.display_name


def test_who_unsubscribes_during_the_run_is_not_mailed_by_it(tmp_path: Path) -> None:
    """The run takes its list of subscribers at its start; someone who unsubscribes while it
    is sending to earlier ones (a 10k run lasts minutes) gets nothing from it."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port)
        for address in ("ada@example.org", "bob@example.org", "cy@example.org"):
            subscribe(config, address, "ai", "daily")
        bob = subscriber(tmp_path, "bob@example.org")

        def bob_leaves(address: str) -> None:
            if address == "ada@example.org":  # the run is under way, bob's turn is next
                state.unsubscribe(engine_of(tmp_path), bob.id, datetime.now(UTC))

        server.on_rcpt = bob_leaves
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
    assert code == 0, out + err
    assert recipients(server) == ["ada@example.org", "cy@example.org"]
    assert "Sent 2 messages, 0 deferred, 0 failed, 1 suppressed;" in out, out + err
    assert state.get_delivery(engine_of(tmp_path), bob.id, "daily-2020-06-18") is None


@pytest.mark.parametrize("stage", ["MAIL", "RCPT"])
def test_a_refused_sender_stops_the_run_at_once(tmp_path: Path, stage: str) -> None:
    """A refusal of the sender is about the run, not the recipient: retrying it, or mailing
    the next subscriber, meets the same refusal. The message is deferred without retries,
    the run stops with one line saying why, and the next run sends to everyone."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port, retries=3)
        addresses = [f"reader{i}@example.org" for i in range(3)]
        for address in addresses:
            subscribe(config, address, "ai", "daily")
        refusal = "451 4.1.8 Sender address rejected: Domain not found"
        if stage == "MAIL":
            server.scripted_mail.extend([refusal] * 10)
        else:
            server.scripted[addresses[0]] = [refusal] * 10
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0, out + err
        # Asked once: not retried (3 retries, with backoff), and no one after was tried.
        assert len(server.scripted_mail if stage == "MAIL" else server.scripted[addresses[0]]) == 9
        assert recipients(server) == []
        assert "Sent 0 messages, 1 deferred, 0 failed, 0 suppressed;" in out, out + err
        assert ("Stopped: the SMTP server refused the sender (451 4.1.8 Sender address rejected: Domain not "
                "found); check mail_from and its domain. The next run goes on from there.") in out, out
        assert subscriber(tmp_path, addresses[0]).active  # not a bounce

        server.scripted_mail.clear()
        server.scripted.clear()
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0 and "Sent 3 messages" in out, out + err
    assert sorted(recipients(server)) == addresses


def test_an_outbox_run_that_writes_nothing_says_wrote_not_sent(tmp_path: Path) -> None:
    """Without --send nothing is sent, even when every message fails to be written."""
    config = write_site(tmp_path)
    subscribe(config, "ada@example.org", "ai", "daily")
    (tmp_path / "out/outbox").mkdir(parents=True)
    (tmp_path / "out/outbox/2020-06-18").write_text("in the way\n")  # the day's folder cannot be made
    code, out, err = cli(config, "digest", "--date", DATE)
    assert code == 1 and "failed  ada@example.org: " in err, out + err
    assert f"wrote 0 messages to {tmp_path / 'out'}/outbox/, 0 deferred, 1 failed, 0 suppressed;" in out, out + err
    assert "Sent" not in out


@pytest.mark.parametrize("here", [True, False])
def test_a_dead_holders_claim_is_taken_over_only_on_its_own_machine(tmp_path: Path, here: bool) -> None:
    """A claim whose holder's process is gone is taken over at once, but only if that
    process ran here: a machine with the same host name (containers are all "localhost")
    cannot tell whether a pid of another is alive, so its claim waits for its expiry."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port)
        subscribe(config, "ada@example.org", "ai", "daily")
        ada = subscriber(tmp_path, "ada@example.org")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        space = pid_space() if here else "0123456789abcdef"
        now = datetime.now(UTC)
        assert state.claim_delivery(
            engine_of(tmp_path), subscriber_id=ada.id, edition="daily-2020-06-18", message_id="<m@example.org>",
            period_start=datetime(2020, 6, 17, tzinfo=UTC), period_end=datetime(2020, 6, 18, tzinfo=UTC),
            holder=f"{socket.gethostname()}/{dead.pid}/cafe0123/{space}", now=now, expires=now + timedelta(hours=1),
        ) is None
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
    assert code == 0, out + err
    if here:
        assert "Sent 1 message" in out and recipients(server) == ["ada@example.org"], out + err
    else:
        assert "1 sent by another run" in out and recipients(server) == [], out + err


# ---------------------------------------------------------------------------- every edition


def test_a_deferred_edition_is_sent_as_it_was_before_the_next(tmp_path: Path) -> None:
    """Deferred on the 18th: the run of the 19th sends the 18th's edition (same key, period,
    stories and Message-ID), then the 19th's, whose period starts where the 18th's ended."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port)
        subscribe(config, "ada@example.org", "ai", "daily")
        server.scripted["ada@example.org"] = ["451 4.3.0 Try again later"] * 2
        code, out, err = cli(config, "digest", "--date", DATE, "--send")
        assert code == 0 and "deferred ada@example.org" in err, out + err  # deferred is not a failure
        ada = subscriber(tmp_path, "ada@example.org")
        deferred = state.get_delivery(engine_of(tmp_path), ada.id, "daily-2020-06-18")
        assert deferred is not None and deferred.status == "deferred"

        code, out, err = cli(config, "digest", "--date", "2020-06-19T00:00:00Z", "--send")
        assert code == 0, out + err
        first, second = server.received()
    assert first["Message-ID"] == deferred.message_id
    assert "18 Jun 2020: Robots learn to fold laundry" in first["Subject"]
    assert "19 Jun 2020: Chips get cooler" in second["Subject"]
    assert "Robots learn" not in second.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_catch_up_edition_links_a_web_copy_that_holds_its_stories(tmp_path: Path) -> None:
    """A daily edition two hours after the previous one covers those two hours only: its
    "View in browser" link must lead to a web copy that exists and has its stories."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port)
        write_record(tmp_path / "seeds/c.md", title="Night shift robots", webUrl="https://example.com/c",
                     publishedDateTime="2020-06-19T00:30:00Z", topics=["AI"])
        subscribe(config, "ada@example.org", "ai", "daily")
        for date in ("2020-06-18T23:00:00Z", "2020-06-19T01:00:00Z"):
            code, out, err = cli(config, "digest", "--date", date, "--send")
            assert code == 0 and "Sent 1 message" in out, out + err
        messages = server.received()
    assert len(messages) == 2
    for message in messages:
        text, page = parts(message)
        links = set(re.findall(r"https://news\.example\.org/(newsletter/[^\s\"<>]+)", text + page))
        assert links, text
        for link in links:
            web = tmp_path / "out" / link / "index.html"
            assert web.exists(), f"{link} was never written"
            assert set(story_titles(page)) <= set(story_titles(web.read_text(encoding="utf-8"))), link
    assert story_titles(parts(messages[1])[1]) == ["Night shift robots"]


def test_a_message_deferred_past_retry_for_hours_fails(tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        config = load_config(write_site(tmp_path, port, retry_for_hours=72))
        subscribe(tmp_path / "feeds.yaml", "ada@example.org", "ai", "daily")
        server.scripted["ada@example.org"] = ["451 4.3.0 Try again later"] * 100
        write_record(tmp_path / "seeds/c.md", title="Late story", webUrl="https://example.com/c",
                     publishedDateTime="2020-06-21T01:00:00Z", topics=["AI"])
        at = datetime(2020, 6, 18, 7, tzinfo=UTC)
        report = api.digest(config, now=at, date=at, send=True)
        assert len(report.deferred) == 1 and not report.failed
        later = at + timedelta(hours=48)
        report = api.digest(config, now=later, date=later, send=True)
        assert len(report.deferred) == 1 and not report.failed and not report.sent  # still the 18th's
        server.scripted.clear()
        last = at + timedelta(hours=73)
        report = api.digest(config, now=last, date=last, send=True)
        [failure] = report.failed
        assert "daily-2020-06-18: gave up after 72 h of retries" in failure and "451 4.3.0" in failure
        # The next edition is made in the same run; it starts after the last one *sent* (none).
        assert report.sent == ["ada@example.org"]
        [message] = server.received()
        assert "21 Jun 2020: Late story" in message["Subject"]
    ada = subscriber(tmp_path, "ada@example.org")
    assert state.get_delivery(engine_of(tmp_path), ada.id, "daily-2020-06-18").status == "failed"  # type: ignore[union-attr]


def test_a_deferred_weekly_message_is_retried_by_the_next_daily_run(tmp_path: Path) -> None:
    """The daemon runs `--cadence weekly` once a week and `--cadence daily` every day: a
    weekly message deferred on Monday must be retried by Tuesday's daily run, not wait for
    next Monday's, by then past smtp.retry_for_hours (72) and failed untried."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port)
        subscribe(config, "wes@example.org", "ai", "weekly")
        subscribe(config, "dan@example.org", "ai", "daily")
        server.scripted["wes@example.org"] = ["451 4.3.0 Greylisted"] * 2
        code, out, err = cli(config, "digest", "--date", DATE, "--send", "--cadence", "weekly")
        assert code == 0 and "deferred wes@example.org" in err, out + err
        wes = subscriber(tmp_path, "wes@example.org")
        deferred = state.get_delivery(engine_of(tmp_path), wes.id, "weekly-2020-06-18")
        assert deferred is not None and deferred.status == "deferred"

        code, out, err = cli(config, "digest", "--date", "2020-06-19T00:00:00Z", "--send", "--cadence", "daily")
        assert code == 0, out + err
        assert sorted(recipients(server)) == ["dan@example.org", "wes@example.org"]
        [resent] = server.to("wes@example.org")
        assert resent["Message-ID"] == deferred.message_id  # the same weekly edition, as it was
        assert state.get_delivery(engine_of(tmp_path), wes.id, "weekly-2020-06-18").status == "sent"  # type: ignore[union-attr]
        assert "not due" not in err  # no new weekly edition is made by a daily run


@pytest.mark.slow
@pytest.mark.parametrize("only_weekly", [False, True])
def test_the_cadence_is_a_promise_however_often_digest_runs(tmp_path: Path, only_weekly: bool) -> None:
    """Run daily for 15 days: the weekly subscriber gets 3 editions, 7 days apart; run
    twice a day, the daily one gets one a day."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port)
        subscribe(config, "weekly@example.org", "ai", "weekly")
        subscribe(config, "daily@example.org", "ai", "daily")
        for day in range(15):
            for hour in (7, 19):
                moment = datetime(2020, 6, 18, hour, tzinfo=UTC) + timedelta(days=day)
                write_record(tmp_path / "seeds" / f"{day}-{hour}.md", title=f"Story {day}-{hour}",
                             webUrl=f"https://example.com/{day}/{hour}", topics=["AI"],
                             publishedDateTime=f"{moment - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}")
                args = ["--cadence", "weekly"] if only_weekly else []
                code, out, err = cli(config, "digest", "--date", f"{moment:%Y-%m-%dT%H:%M:%SZ}", "--send", *args)
                assert code == 0, out + err
        weekly = [m["Message-ID"] for m in server.received() if m["To"] == "weekly@example.org"]
        daily = [m["Message-ID"] for m in server.received() if m["To"] == "daily@example.org"]
    assert [re.match(r"<weekly-([\d-]+)\.", m).group(1) for m in weekly] == [  # type: ignore[union-attr]
        "2020-06-18", "2020-06-25", "2020-07-02"]
    assert len(daily) == (0 if only_weekly else 15) and len(set(daily)) == len(daily)


@pytest.mark.slow
def test_two_senders_at_once_split_the_work(tmp_path: Path) -> None:
    check_two_senders_at_once(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")


def check_two_senders_at_once(tmp_path: Path, database: str) -> None:
    """Two real `feeds digest --send` processes against one state database and one server:
    every subscriber gets exactly one message, no traceback, both exit 0."""
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port, rate_per_second=30)  # long enough to overlap
        # No secret in the config: the two runs also race to make the database's one.
        text = config.read_text().replace(f"state_db: {tmp_path / 'state.db'}", f"state_db: {database}")
        config.write_text(text.replace(f"secret: {SECRET}\n", ""))
        people = tmp_path / "people.csv"
        addresses = [f"reader{i:02d}@example.org" for i in range(60)]
        people.write_text("email,topics\n" + "".join(f"{a},ai\n" for a in addresses))
        assert cli(config, "subscribers", "import", str(people))[0] == 0
        command = [sys.executable, "-m", "feeds", "digest", "--date", DATE, "--send", "--config", str(config)]
        runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
        received = server.received()
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, out + err
    assert sorted(m["To"] for m in received) == addresses  # each exactly once
    sent = [int(re.search(r"Sent (\d+) message", out).group(1)) for _, out, _ in results]  # type: ignore[union-attr]
    assert sum(sent) == 60
    engine = state.open_state(database)
    secret, people = state.secret(engine), {s.email: s.id for s in state.list_subscribers(engine)}
    for message in received:  # one secret signed every message, whichever run sent it
        token = parse_qs(urlsplit(message["List-Unsubscribe"].split(",")[0].strip("<> ")).query)["token"][0]
        assert verify_token(secret, token, people[message["To"]], message["To"])


@pytest.mark.slow
def test_sigterm_stops_between_messages_and_the_next_run_finishes(tmp_path: Path) -> None:
    with smtp_server() as (server, port):
        config = write_site(tmp_path, port, rate_per_second=20)
        people = tmp_path / "people.csv"
        addresses = [f"reader{i:02d}@example.org" for i in range(40)]
        people.write_text("email,topics\n" + "".join(f"{a},ai\n" for a in addresses))
        assert cli(config, "subscribers", "import", str(people))[0] == 0
        command = [sys.executable, "-m", "feeds", "digest", "--date", DATE, "--send", "--config", str(config)]
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(server.received()) < 5 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.005)
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0 and "Stopped before everyone was handled" in out, out + err
        assert 5 <= len(server.received()) < 40
        second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 0, second.stderr
        received = server.received()
    assert sorted(m["To"] for m in received) == addresses  # nobody twice, nobody left out


def test_a_ledger_from_before_claims_gains_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sa.create_engine(f"sqlite:///{path}")
    with old.begin() as db:
        db.execute(sa.text("CREATE TABLE deliveries (subscriber_id INTEGER NOT NULL, edition VARCHAR(64) NOT NULL,"
                           " message_id VARCHAR(255) NOT NULL, status VARCHAR(16) NOT NULL, detail TEXT,"
                           " period_end DATETIME NOT NULL, recorded_at DATETIME NOT NULL,"
                           " PRIMARY KEY (subscriber_id, edition))"))
        db.execute(sa.text("INSERT INTO deliveries VALUES (1, 'daily-2020-06-17', '<m@x>', 'sent', NULL,"
                           " '2020-06-17 00:00:00.000000', '2020-06-17 07:00:00.000000')"))
    old.dispose()
    engine = state.open_state(f"sqlite:///{path}")
    june17 = datetime(2020, 6, 17, tzinfo=UTC)
    assert state.ledger_ends(engine) == {1: state.LedgerEnds(june17, june17)}
    assert state.get_delivery(engine, 1, "daily-2020-06-17").attempts == 1  # type: ignore[union-attr]
