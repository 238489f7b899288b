"""What comes back to the From address: real digests sent to a real SMTP server on loopback,
then real bounce reports (RFC 3464), abuse reports (ARF, RFC 5965) and mailto unsubscribe
requests built with the stdlib email package, in a real Maildir and a real mbox, read by
the real `feeds inbox process`."""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from feeds import state
from feeds.api.inbox import as_message
from feeds.digest import verify_verp, verp_sender, verp_subscriber
from feeds.inbox import COMPLAINT, HARD_BOUNCE, IGNORED, SOFT_BOUNCE, UNSUBSCRIBE, classify
from tests.conftest import write_record
from tests.mail import smtp_server
from tests.test_digest import SECRET, cli, subscribe, write_config

FROM = "digest@news.example.org"
PEOPLE = ("ada@example.org", "bob@example.org", "cy@example.org", "dee@example.org")


@dataclass
class Sent:
    """Four subscribers who each got the 18 June edition, and what they got."""

    tmp: Path
    config: Path
    port: int
    received: dict[str, EmailMessage]
    return_paths: dict[str, str]  # recipient -> the envelope sender (MAIL FROM) it was sent with

    @property
    def engine(self) -> Engine:
        return state.open_state(f"sqlite:///{self.tmp / 'state.db'}")

    def person(self, address: str) -> state.Subscriber:
        found = state.find_subscriber(self.engine, address)
        assert found is not None
        return found

    def token(self, address: str) -> str:
        https = re.findall(r"<([^>]+)>", self.received[address]["List-Unsubscribe"])[0]
        return parse_qs(urlsplit(https).query)["token"][0]


@pytest.fixture
def sent(tmp_path: Path) -> Iterator[Sent]:
    records = tmp_path / "records"
    write_record(records / "a.md", title="Robots learn to fold laundry", webUrl="https://example.com/a",
                 publishedDateTime="2020-06-17T12:00:00Z")
    write_record(records / "b.md", title="A model reads X-rays", webUrl="https://example.com/b",
                 publishedDateTime="2020-06-18T12:00:00Z")
    with smtp_server() as (server, port):
        config = write_config(tmp_path, port, seeds=records)
        for address in PEOPLE:
            subscribe(config, address, "ai", "daily")
        code, out, err = cli(config, "digest", "--date", "2020-06-18T00:00:00Z", "--send")
        assert code == 0 and "Sent 4 messages" in out, out + err
        yield Sent(tmp_path, config, port, {m["To"]: m for m in server.received()},
                   {rcpts[0]: mail_from for mail_from, rcpts, _ in server.envelopes})


# ------------------------------------------------------------------- building the mail


def dsn(original: EmailMessage | None, *, recipient: str, action: str = "failed", status: str = "5.1.1",
        diagnostic: str = "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown",
        to: str = FROM, quote: str = "full", in_reply_to: str | None = None) -> bytes:
    """A delivery status notification as Postfix writes one (RFC 3464)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.net>"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    if in_reply_to:
        report["In-Reply-To"] = in_reply_to
    report.attach(MIMEText("This is the mail system at host mx.example.net.\n\n"
                           "I'm sorry to have to inform you that your message could not\n"
                           "be delivered to one or more recipients.\n"))
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.example.net"
    per_message["Arrival-Date"] = "Thu, 18 Jun 2020 00:00:05 +0000 (UTC)"
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Original-Recipient"] = f"rfc822;{recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Remote-MTA"] = "dns; mail.example.org"
    per_recipient["Diagnostic-Code"] = diagnostic.format(r=recipient)
    status_part = MIMEBase("message", "delivery-status")
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    report.attach(quoted(original, quote))
    return report.as_bytes()


def arf(original: EmailMessage | None, *, feedback_type: str = "abuse", quote: str = "headers",
        rcpt: str = "redacted@example.org") -> bytes:
    """An abuse report as a feedback loop sends one (RFC 5965), the recipient redacted."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "Feedback Loop <fbl@isp.example.net>"
    report["To"] = "abuse@news.example.org"
    report["Subject"] = "Email Feedback Report for IP 192.0.2.1"
    report.attach(MIMEText("This is an email abuse report for an email message received from IP "
                           "192.0.2.1 on Thu, 18 Jun 2020 00:00:06 +0000.\n"))
    fields = MIMEBase("message", "feedback-report")
    fields.set_payload(f"Feedback-Type: {feedback_type}\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
                       f"Original-Mail-From: <{FROM}>\nOriginal-Rcpt-To: <{rcpt}>\n"
                       "Arrival-Date: Thu, 18 Jun 2020 00:00:06 +0000\n")
    report.attach(fields)
    report.attach(quoted(original, quote))
    return report.as_bytes()


def quoted(original: EmailMessage | None, quote: str) -> MIMEBase:
    if original is None or quote == "none":
        return MIMEText("(nothing of the message was kept)\n")
    if quote == "full":
        return MIMEMessage(original)
    headers = "".join(f"{name}: {value}\n" for name, value in original.items() if name.lower() != "to")
    return MIMEText(headers, "rfc822-headers")


def mailto_request(subject: str, sender: str = "someone@forwarder.example.net") -> bytes:
    """What a mail client sends for the List-Unsubscribe mailto link."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = FROM
    message["Subject"] = subject
    message.set_content("This message was automatically generated to unsubscribe.\n")
    return message.as_bytes()


def human_reply(sent: Sent) -> bytes:
    message = EmailMessage()
    message["From"] = "Ada <ada@example.org>"
    message["To"] = FROM
    message["Subject"] = f"Re: {sent.received['ada@example.org']['Subject']}"
    message["In-Reply-To"] = sent.received["ada@example.org"]["Message-ID"]
    message.set_content("Loved the laundry robots.\n")
    return message.as_bytes()


def process(sent: Sent, *where: str) -> tuple[int, dict[str, str], str]:
    """Run the command; return its exit code, each message's line by where, the summary."""
    code, out, err = cli(sent.config, "inbox", "process", *where)
    lines = out.splitlines()
    by_where = dict(line.split(": ", 1) for line in lines[:-1])
    return code, by_where, lines[-1] if lines else err


def statuses(sent: Sent) -> dict[str, str]:
    return {p.email: p.status for p in state.list_subscribers(sent.engine)}


def history(sent: Sent, address: str) -> list[tuple[str, str]]:
    return [(c.status, c.source) for c in state.status_history(sent.engine, sent.person(address).id)]


# ----------------------------------------------------------------------------- tests


def test_a_maildir_of_bounces_complaints_and_requests_is_applied_once(sent: Sent) -> None:
    box = mailbox.Maildir(sent.tmp / "Maildir", create=True)
    received = sent.received
    keys = {
        "hard": box.add(dsn(received["ada@example.org"], recipient="ada@example.org")),
        "complaint": box.add(arf(received["bob@example.org"])),
        "mailto": box.add(mailto_request(f"unsubscribe {sent.token('cy@example.org')}")),
        "soft": box.add(dsn(received["dee@example.org"], recipient="dee@example.org", action="delayed",
                            status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")),
        "reply": box.add(human_reply(sent)),
        "forged-bounce": box.add(dsn(None, recipient="dee@example.org",
                                     in_reply_to="<daily-2020-06-18.000000000000000000000000@news.example.org>")),
        "forged-mailto": box.add(mailto_request(f"unsubscribe {sent.person('dee@example.org').id}.{'0' * 32}")),
    }
    code, lines, summary = process(sent, "--maildir", str(sent.tmp / "Maildir"))
    assert code == 0
    line = {name: lines[f"new/{key}"] for name, key in keys.items()}
    assert line["hard"].startswith("bounced ada@example.org (5.1.1: smtp; 550 5.1.1 <ada@example.org>: Recipient")
    assert line["complaint"] == "complained bob@example.org (abuse report by ExampleFBL/1.0)"
    assert line["mailto"] == "unsubscribed cy@example.org (mailto)"
    assert line["soft"] == "soft bounce dee@example.org: 4.2.2: smtp; 452 4.2.2 Mailbox full; nothing changed"
    assert line["reply"].startswith("ignored: not a delivery report, complaint or unsubscribe request (from Ada")
    assert line["forged-bounce"].startswith("ignored: a hard bounce (5.1.1")
    assert line["forged-bounce"].endswith("it names dee@example.org")
    assert line["forged-mailto"] == ("ignored: an unsubscribe request whose token is not ours "
                                     "(forged, or for someone since removed)")
    assert summary == ("Processed 7 messages: 1 bounced, 1 complained, 1 unsubscribed, 1 soft bounce, "
                       "0 unchanged, 3 ignored.")

    assert statuses(sent) == {"ada@example.org": state.BOUNCED, "bob@example.org": state.COMPLAINED,
                              "cy@example.org": state.UNSUBSCRIBED, "dee@example.org": state.ACTIVE}
    assert history(sent, "ada@example.org")[-1] == (state.BOUNCED, "bounce")
    assert "550 5.1.1" in (sent.person("ada@example.org").status_reason or "")
    assert history(sent, "bob@example.org")[-1] == (state.COMPLAINED, "complaint")
    assert history(sent, "cy@example.org")[-1] == (state.UNSUBSCRIBED, "mailto")

    # Processed means moved to cur/ and marked Seen, as a mail reader does: a rerun reads nothing.
    box = mailbox.Maildir(sent.tmp / "Maildir", create=False)
    assert sorted(box.keys()) == sorted(keys.values())
    assert all(box.get_message(k).get_subdir() == "cur" and "S" in box.get_message(k).get_flags() for k in box.keys())
    assert process(sent, "--maildir", str(sent.tmp / "Maildir"))[1:] == (
        {}, "Processed 0 messages: 0 bounced, 0 complained, 0 unsubscribed, 0 soft bounce, 0 unchanged, 0 ignored.")

    # And nobody who left gets the next edition.
    with smtp_server() as (server, port):
        sent.config.write_text(sent.config.read_text().replace(f"port: {sent.port}", f"port: {port}"))
        code, out, err = cli(sent.config, "digest", "--date", "2020-06-19T00:00:00Z", "--send")
        assert code == 0, out + err
        assert [m["To"] for m in server.received()] == ["dee@example.org"]


def test_an_mbox_is_read_not_changed_and_a_second_read_changes_nothing(sent: Sent) -> None:
    path = sent.tmp / "bounces.mbox"
    box = mailbox.mbox(path)
    box.add(dsn(sent.received["ada@example.org"], recipient="ada@example.org", quote="headers"))
    box.add(arf(sent.received["bob@example.org"], quote="full"))
    box.add(mailto_request(f"UNSUBSCRIBE {sent.token('cy@example.org')}", sender="cy@example.org"))
    box.flush()
    box.close()
    before = path.read_bytes()
    code, lines, summary = process(sent, "--mbox", str(path))
    assert code == 0
    assert [line.split(" ")[0] for line in lines.values()] == ["bounced", "complained", "unsubscribed"]
    assert list(lines) == ["bounces.mbox#1", "bounces.mbox#2", "bounces.mbox#3"]
    assert statuses(sent)["ada@example.org"] == state.BOUNCED
    events = {address: len(history(sent, address)) for address in PEOPLE}

    code, lines, summary = process(sent, "--mbox", str(path))
    assert code == 0 and path.read_bytes() == before
    assert lines["bounces.mbox#1"].startswith("unchanged ada@example.org: already bounced; hard bounce (5.1.1: smtp")
    assert lines["bounces.mbox#3"].startswith("unchanged cy@example.org: already unsubscribed")
    assert "0 bounced, 0 complained, 0 unsubscribed, 0 soft bounce, 3 unchanged" in summary
    assert {address: len(history(sent, address)) for address in PEOPLE} == events


def test_a_bounce_after_an_unsubscribe_keeps_the_first_reason(sent: Sent) -> None:
    ada = sent.person("ada@example.org")
    assert state.unsubscribe(sent.engine, ada.id, ada_now(), source="one-click")
    path = sent.tmp / "in.mbox"
    box = mailbox.mbox(path)
    box.add(dsn(sent.received["ada@example.org"], recipient="ada@example.org"))
    box.flush()
    _, lines, _ = process(sent, "--mbox", str(path))
    assert lines["in.mbox#1"].startswith("unchanged ada@example.org: already unsubscribed")
    assert history(sent, "ada@example.org")[-1] == (state.UNSUBSCRIBED, "one-click")


def ada_now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime
    return datetime.now(UTC)


def test_reports_that_quote_little_are_matched_by_verp_in_reply_to_or_token(sent: Sent) -> None:
    ada, bob, cy = (sent.person(a) for a in PEOPLE[:3])
    verp = verp_sender(f"AI Digest <{FROM}>", ada.id, ada.email, SECRET)
    tampered = verp_sender(f"AI Digest <{FROM}>", cy.id, cy.email, "another-secret-entirely")
    borrowed = verp.replace(f"+bounce-{ada.id}-", f"+bounce-{cy.id}-")  # ada's signature on cy's id
    path = sent.tmp / "in.mbox"
    box = mailbox.mbox(path)
    box.add(dsn(None, recipient="ada@example.org", to=verp.upper(), quote="none"))
    box.add(dsn(None, recipient="bob@example.org", quote="none", in_reply_to=sent.received[bob.email]["Message-ID"]))
    box.add(dsn(None, recipient="cy@example.org", to=tampered, quote="none"))
    box.add(dsn(None, recipient="cy@example.org", to=borrowed, quote="none"))
    # An ARF report whose quote lost the Message-ID still has the signed List-Unsubscribe token.
    without_id = sent.received["dee@example.org"]
    del without_id["Message-ID"]
    box.add(arf(without_id, quote="headers"))
    box.flush()
    _, lines, _ = process(sent, "--mbox", str(path))
    assert lines["in.mbox#1"].startswith("bounced ada@example.org")
    assert lines["in.mbox#2"].startswith("bounced bob@example.org")
    assert lines["in.mbox#3"].startswith("ignored: a hard bounce")
    assert lines["in.mbox#4"].startswith("ignored: a hard bounce")
    assert lines["in.mbox#5"] == "complained dee@example.org (abuse report by ExampleFBL/1.0)"
    assert statuses(sent)["cy@example.org"] == state.ACTIVE


def test_a_bounce_to_the_return_path_a_digest_was_sent_with_names_its_subscriber(sent: Sent) -> None:
    """Digests go out with a signed envelope sender per subscriber (VERP), so a bounce that
    quotes nothing of the message, sent to that Return-Path, still names who it is about."""
    ada, bob = sent.person("ada@example.org"), sent.person("bob@example.org")
    assert sent.return_paths["ada@example.org"] == verp_sender(f"AI Digest <{FROM}>", ada.id, ada.email, SECRET)
    assert sent.return_paths["ada@example.org"] != sent.return_paths["bob@example.org"]
    path = sent.tmp / "in.mbox"
    box = mailbox.mbox(path)
    box.add(dsn(None, recipient="someone-else@example.org", to=sent.return_paths["ada@example.org"], quote="none"))
    box.flush()
    _, lines, _ = process(sent, "--mbox", str(path))
    assert lines["in.mbox#1"].startswith("bounced ada@example.org")
    assert statuses(sent)["ada@example.org"] == state.BOUNCED and bob.active


@pytest.mark.parametrize("message, reason", [
    (lambda s: dsn(s.received["ada@example.org"], recipient="ada@example.org", action="delivered", status="2.0.0"),
     "ignored: a delivery report that is not a failure (action: delivered)"),
    (lambda s: arf(s.received["ada@example.org"], feedback_type="not-spam"),
     "ignored: a feedback report of type 'not-spam', not a complaint"),
    (lambda s: dsn(s.received["ada@example.org"], recipient="ada@example.org", status="4.4.7",
                   diagnostic="smtp; 421 4.4.7 gave up after 5 days"),
     "soft bounce ada@example.org: 4.4.7: smtp; 421 4.4.7 gave up after 5 days; nothing changed"),
    (lambda s: b"\xff\xfe not mail at all \x00\r\n\r\n",
     "ignored: not a delivery report, complaint or unsubscribe request (from nobody, subject '')"),
])
def test_reports_that_say_nothing_about_leaving_change_nothing(sent: Sent, message, reason: str) -> None:  # type: ignore[no-untyped-def]
    path = sent.tmp / "in.mbox"
    box = mailbox.mbox(path)
    box.add(message(sent))
    box.flush()
    code, lines, _ = process(sent, "--mbox", str(path))
    assert code == 0 and lines == {"in.mbox#1": reason}
    assert set(statuses(sent).values()) == {state.ACTIVE}


def test_inbox_process_needs_exactly_one_mailbox_and_a_real_maildir(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "a.mbox").write_bytes(b"")
    assert cli(config, "inbox", "process")[0] == 2
    both = ("--maildir", str(tmp_path / "folder"), "--mbox", str(tmp_path / "a.mbox"))
    assert cli(config, "inbox", "process", *both)[0] == 2
    code, out, err = cli(config, "inbox", "process", "--maildir", str(tmp_path / "folder"))
    assert code == 1 and "not a Maildir (it needs cur/, new/ and tmp/)" in err
    code, out, _ = cli(config, "inbox", "process", "--mbox", str(tmp_path / "a.mbox"))
    assert code == 0 and out.startswith("Processed 0 messages")


def test_verp_addresses_round_trip_and_refuse_tampering() -> None:
    address = verp_sender("AI Digest <digest@news.example.org>", 42, "Ada@Example.org", SECRET)
    assert re.fullmatch(r"digest\+bounce-42-[0-9a-f]{16}@news\.example\.org", address)
    assert verp_subscriber(f"<{address}>") == 42 and verp_subscriber(address.upper()) == 42
    assert verify_verp(SECRET, f"<{address.upper()}>", 42, "ada@example.org")
    assert not verify_verp(SECRET, address, 42, "bob@example.org")  # an id reused for someone else
    assert not verify_verp(SECRET, address.replace("-42-", "-43-"), 43, "ada@example.org")
    assert not verify_verp("another-secret", address, 42, "ada@example.org")
    assert verp_subscriber("digest@news.example.org") is None


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**12 - 1), st.emails(), st.text(min_size=1, max_size=40))
def test_every_verp_address_names_its_subscriber_and_no_other(subscriber_id: int, address: str, secret: str) -> None:
    verp = verp_sender(f"AI Digest <{FROM}>", subscriber_id, address, secret)
    assert verp_subscriber(verp) == subscriber_id
    assert verify_verp(secret, verp, subscriber_id, address)
    assert not verify_verp(secret, verp, subscriber_id + 1, address)
    assert not verify_verp(secret + "x", verp, subscriber_id, address)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=600),
    st.builds(lambda head, body: head.encode() + b"\r\n\r\n" + body,
              st.sampled_from(["Content-Type: multipart/report; report-type=delivery-status; boundary=b",
                               "Content-Type: multipart/report; report-type=feedback-report; boundary=b",
                               "Subject: unsubscribe 1.0"]),
              st.binary(max_size=400)),
))
def test_no_message_makes_the_classifier_raise(data: bytes) -> None:
    """Whatever arrives, the parse yields a notice of a known kind; an unsubscribe notice
    always has the token to check."""
    notice = classify(as_message(data))
    assert notice.kind in (HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, UNSUBSCRIBE, IGNORED)
    assert notice.kind != UNSUBSCRIBE or notice.tokens


def test_what_a_forged_report_says_cannot_drive_the_operators_terminal(sent: Sent) -> None:
    """A report's fields are anyone's words, and its line is printed to a terminal: an
    escape sequence in them (here one that would set the terminal's title, and one that
    would clear the screen) must arrive as text, not as control characters."""
    path = sent.tmp / "in.mbox"
    box = mailbox.mbox(path)
    box.add(dsn(None, recipient="nobody@example.org\x1b[2J", quote="none", status="4.2.2",
                diagnostic="smtp; 452 \x1b]0;pwned\x07 mailbox full"))
    box.add(dsn(None, recipient="x@example.org", quote="none", diagnostic="smtp; 550 \x1b[2J gone"))
    box.flush()
    code, out, err = cli(sent.config, "inbox", "process", "--mbox", str(path))
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith("in.mbox#1: soft bounce nobody@example.org") and "mailbox full" in lines[0]
    assert lines[1].startswith("in.mbox#2: ignored: a hard bounce") and "gone" in lines[1]
    assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in out.replace("\n", "")), out


def test_a_late_bounce_for_someone_erased_does_not_bring_their_address_back(sent: Sent) -> None:
    """Erased, then the bounce of a digest sent before arrives: it is still theirs (its
    Message-ID is in the ledger) and marks them bounced, so that they stay suppressed, but
    the server's reply, which quotes the address, is not kept: an erased row keeps no reason."""
    code, out, err = cli(sent.config, "subscribers", "erase", "ada@example.org")
    assert code == 0, out + err
    box = mailbox.Maildir(sent.tmp / "Maildir", create=True)
    box.add(dsn(sent.received["ada@example.org"], recipient="ada@example.org"))
    code, _, summary = process(sent, "--maildir", str(sent.tmp / "Maildir"))
    assert code == 0 and "1 bounced" in summary, summary
    with sent.engine.connect() as db:
        stored = "\n".join(repr(tuple(row)) for table in state.metadata.sorted_tables
                           for row in db.execute(sa.select(table)))
    assert "ada@example.org" not in stored
    [erased] = [p for p in state.list_subscribers(sent.engine) if p.email.startswith("erased:")]
    assert erased.status == state.BOUNCED
