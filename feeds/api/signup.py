"""Readers sign themselves up (issue 14): double opt-in through the digests' own delivery.

:func:`sign_up` records an ``unconfirmed`` subscriber and mails a confirmation link;
:func:`confirm` makes them active when they press the button on the link's page. Whatever
the address is (new, waiting, active, gone), the caller gets a result that it must show
the same way: only the log and the tests read its ``outcome``, so nobody can learn from
the form who is subscribed. Who left stays gone: a bounced or complained address is
mailed nothing, an unsubscribed one comes back only by confirming.
"""

from __future__ import annotations

import logging
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine

from feeds import state
from feeds.api.digests import digest_secret
from feeds.api.subscribers import SubscriberError, check_subscription, erased_key, find_person, outbox_files
from feeds.config import Config, SmtpConfig
from feeds.deliver import DeliveryError, SmtpSender, write_outbox
from feeds.errors import FeedsError
from feeds.render import jinja_env
from feeds.render.digest import EMAIL_POLICY, EMAIL_POLICY_UTF8, AddressError, Outgoing, envelope_address, mailbox
from feeds.signup import (
    SignUpForm,
    confirmation_token,
    form_errors,
    read_confirmation,
    verify_confirmation,
)
from feeds.write import remove_leftovers_below

log = logging.getLogger(__name__)

# What a sign-up did: for the log and the tests, never for the page (see the module's doc).
MAILED = "mailed"  # a confirmation link went out
RECENTLY_MAILED = "recently mailed"  # one went out less than signup.resend_after_hours ago
ALREADY_ACTIVE = "already active"  # nothing to confirm, nothing sent
LEFT_FOR_GOOD = "left for good"  # bounced or complained: never mailed again from a form
NOT_SENT = "not sent"  # the mail could not be delivered (logged); the next request may try

# Subscribed already: a paused subscriber has not left (the preferences page ends a pause).
RECEIVING = (state.ACTIVE, state.PAUSED)


@dataclass(frozen=True, slots=True)
class SignUpResult:
    email: str
    outcome: str  # one of MAILED ... NOT_SENT
    written: str | None = None  # the outbox file, when there is no SMTP server


@dataclass(frozen=True, slots=True)
class Pending:
    """A confirmation link that is good now: whom it would make active, with what."""

    subscriber: state.Subscriber
    topics: tuple[str, ...]
    cadence: str
    token: str


def published_topics(out: Path) -> dict[str, str]:
    """Slug -> name of every topic the last build published, ``all`` included, from its
    ``feeds.opml`` (one small file; the server must not read the corpus per request).
    Empty before the first build."""
    try:
        root = ET.parse(out / "feeds.opml").getroot()
    except (OSError, ET.ParseError):
        return {}
    topics: dict[str, str] = {}
    for outline in root.iter("outline"):
        parts = urlsplit(outline.get("xmlUrl", "")).path.rstrip("/").split("/")
        if len(parts) >= 3 and parts[-3] == "topics":
            topics[parts[-2]] = outline.get("text") or parts[-2]
    return topics


def check_form(form: SignUpForm, known: Mapping[str, str]) -> tuple[str, tuple[str, ...], dict[str, str]]:
    """The normalised address and topic slugs of a sign-up form, and its errors by field
    (empty when it can be used)."""
    try:
        address = check_subscription(form.email, ["all"], "daily", {"all": "All topics"})[0]
    except SubscriberError:
        address = ""
    errors = form_errors(form, known, email_ok=bool(address))
    if errors:
        return address, (), errors
    address, slugs = check_subscription(address, form.topics, form.cadence, known)
    return address, slugs, {}


def sign_up(config: Config, engine: Engine, email: str, topics: Sequence[str], cadence: str, now: datetime,
            *, known: Mapping[str, str] | None = None,
            sender: Callable[[SmtpConfig], SmtpSender] = SmtpSender) -> SignUpResult:
    """Record a reader's request and mail them a confirmation link, at most once per
    ``signup.resend_after_hours`` per address. ``known``: the topics one may choose
    (default: those the last build published). Raises SubscriberError for a form that
    cannot be used (a bad address, an unknown topic)."""
    known = published_topics(config.out) if known is None else known
    address, slugs = check_subscription(email, topics, cadence, known)
    erased = find_person(config, engine, address)
    if erased is not None and erased.email != address:  # erased before, recognised by the keyed hash
        if erased.status in (state.BOUNCED, state.COMPLAINED):
            return SignUpResult(address, LEFT_FOR_GOOD)
        state.reclaim_erased(engine, erased.id, address, now)
    wait = timedelta(hours=config.signup.purge_after_hours)
    person = state.request_signup(engine, address, slugs, cadence, now, wait)
    if person.status in (state.BOUNCED, state.COMPLAINED):
        return SignUpResult(address, LEFT_FOR_GOOD)
    if person.status in RECEIVING:
        return SignUpResult(address, ALREADY_ACTIVE)
    every = timedelta(hours=config.signup.resend_after_hours)
    before = state.get_signup(engine, person.id)
    if not state.claim_confirmation_mail(engine, person.id, now, every):
        return SignUpResult(address, RECENTLY_MAILED)
    token = confirmation_token(digest_secret(config, engine), person.id, address, slugs, cadence, now)
    hours = link_hours(config, before.requested_at if before else now, now)
    try:
        message = confirmation_message(config, address, slugs, cadence, token, now, known, hours)
        written = deliver(config, message, now, sender)
    except (FeedsError, AddressError, OSError) as e:
        # Given back, so that the reader's next try may send it; they are shown the same page.
        state.release_confirmation_mail(engine, person.id, now, before.mailed_at if before else None)
        log.warning("confirmation not sent", extra={"subscriber": person.id, "reason": str(e)})
        return SignUpResult(address, NOT_SENT)
    return SignUpResult(address, MAILED, written)


def wait_ends(config: Config, began: datetime) -> datetime:
    """When a wait for confirmation that began at ``began`` is over: the purge deletes the
    row then, and no link of it works after (see :func:`pending`)."""
    return began + timedelta(hours=config.signup.purge_after_hours)


def link_hours(config: Config, began: datetime, now: datetime) -> float:
    """How long a link mailed ``now`` works: ``signup.confirm_within_hours``, but never past
    the end of its wait (a resend shortly before the purge must not outlive the row).
    Whole hours, rounded down, unless less than one is left."""
    left = (wait_ends(config, began) - now) / timedelta(hours=1)
    if left >= config.signup.confirm_within_hours:
        return config.signup.confirm_within_hours
    return float(int(left)) if left >= 1 else round(left, 2)


def confirm_url(config: Config, token: str) -> str:
    return f"{config.base_url}confirm?token={token}"


def confirmation_message(config: Config, address: str, topics: Sequence[str], cadence: str, token: str,
                         now: datetime, known: Mapping[str, str], hours: float | None = None) -> Outgoing:
    """The confirmation mail: plain text, one link, no tracking; From is the digests'.
    ``hours``: how long its link works (default ``signup.confirm_within_hours``)."""
    sender = mailbox(config.mail_from)
    recipient, utf8 = envelope_address(address)
    utf8 = utf8 or not sender.addr_spec.isascii()
    hours = config.signup.confirm_within_hours if hours is None else hours
    text = jinja_env().get_template("confirm.txt").render(
        site_title=config.title, url=confirm_url(config, token), cadence=cadence,
        topics=[known.get(t, t) for t in topics], hours=f"{hours:g}")
    message = EmailMessage(policy=EMAIL_POLICY_UTF8 if utf8 else EMAIL_POLICY)
    message["From"] = sender
    if config.reply_to:
        message["Reply-To"] = mailbox(config.reply_to)
    local, _, domain = recipient.rpartition("@")
    message["To"] = Address(username=local, domain=domain)
    message["Subject"] = f"Confirm your subscription to {config.title}"
    message["Date"] = format_datetime(now)
    message_id = f"<confirm.{secrets.token_hex(12)}@{sender.domain or 'localhost'}>"
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
    message.set_content(text, charset="utf-8")
    return Outgoing(sender.addr_spec, recipient, message_id, bytes(message), smtputf8=utf8)


def smtp_configured(config: Config) -> bool:
    """Whether the config names an SMTP server (any ``smtp`` setting besides the defaults)."""
    return config.smtp != SmtpConfig()


_SWEPT: set[Path] = set()  # the out/ folders whose confirmations this process swept


def _sweep_confirmations(out: Path) -> None:
    """Delete the temporary files a killed process (a server stopped mid-write) left in
    ``out/outbox/confirmations/``: once a process, since the folder grows by a file a
    sign-up (each digest run sweeps it too)."""
    if out in _SWEPT:
        return
    _SWEPT.add(out)
    for leftover in remove_leftovers_below(out, "outbox/confirmations", 0, before=time.time()):
        log.info("removed a killed run's temporary file", extra={"path": str(out / leftover)})


def deliver(config: Config, message: Outgoing, now: datetime,
            sender: Callable[[SmtpConfig], SmtpSender] = SmtpSender) -> str | None:
    """Through the digests' own delivery: SMTP when the config has a server, else a file
    in ``out/outbox/confirmations/`` (never served). Returns the file, or None once sent;
    raises DeliveryError when the server would not take it."""
    if not smtp_configured(config):
        _sweep_confirmations(config.out)
        return write_outbox(config.out, "confirmations", message)
    with sender(config.smtp) as smtp:
        outcome = smtp.send(message)
    if outcome.status != "sent":
        raise DeliveryError(f"SMTP {config.smtp.host}:{config.smtp.port}: {outcome.status}: {outcome.detail}",
                            message.recipient)
    return None


def pending(config: Config, engine: Engine, token: str, now: datetime) -> Pending | None:
    """The sign-up a confirmation link stands for, if it may still be confirmed: signed by
    us for this subscriber's address, not expired, the latest one mailed to them, neither
    used already nor older than their leaving, and within the wait it was mailed in (no
    link outlives its unconfirmed row, purged or not). None otherwise (the page says the
    link is not valid)."""
    claim = read_confirmation(token)
    if claim is None:
        return None
    person = state.get_subscriber(engine, claim.subscriber_id)
    if person is None or person.status not in (state.UNCONFIRMED, state.UNSUBSCRIBED, *RECEIVING):
        return None
    valid_for = timedelta(hours=config.signup.confirm_within_hours)
    if not verify_confirmation(digest_secret(config, engine), token, person.email, now=now, valid_for=valid_for):
        return None
    record = state.get_signup(engine, person.id)
    if record is None or record.mailed_at is None or int(record.mailed_at.timestamp()) != int(claim.issued.timestamp()):
        return None  # an older link than the latest mailed: only one is ever good
    if person.status not in RECEIVING and (
            int(claim.issued.timestamp()) < int(record.requested_at.timestamp())
            or now > wait_ends(config, record.requested_at)):
        return None  # mailed in a wait that is over: the purge deletes (or deleted) what it stood for
    if person.status not in RECEIVING and (
            (record.confirmed_at is not None and record.confirmed_at >= claim.issued)
            or left_since(engine, person.id, record.mailed_at)):
        return None  # used, or mailed before they left (or were erased): leaving sticks
    return Pending(person, claim.topics, claim.cadence, token)


def left_since(engine: Engine, subscriber_id: int, moment: datetime) -> bool:
    """Whether the subscriber left (or was erased) after ``moment``: a link mailed before
    that no longer speaks for them, even unused (made active by the operator, then
    unsubscribed, they must not come back by an old mail's button)."""
    return any(change.status in (*state.LEFT, state.ERASED) and change.at > moment
               for change in state.status_history(engine, subscriber_id))


def confirm(config: Config, engine: Engine, token: str, now: datetime) -> Pending | None:
    """Make the sign-up behind ``token`` active (see :func:`pending` for which links are
    good); the same link again changes nothing. None if the link is not good."""
    found = pending(config, engine, token, now)
    if found is None:
        return None
    if found.subscriber.status not in RECEIVING:
        state.confirm_signup(engine, found.subscriber.id, found.topics, found.cadence, now)
        log.info("sign-up confirmed", extra={"subscriber": found.subscriber.id})
    return found


def purge_unconfirmed(config: Config, now: datetime, engine: Engine | None = None) -> list[str]:
    """Delete the sign-ups nobody confirmed within ``signup.purge_after_hours`` (see
    :func:`feeds.state.stale_unconfirmed` for which), and their confirmation mails in
    ``out/outbox/``; returns their addresses. Someone erased who signed up again and never
    confirmed is erased again rather than deleted: their ledger keeps exactly-once
    delivery, their row "never mail again"."""
    engine = engine or state.open_state(config.state_db)
    stale = state.stale_unconfirmed(engine, now - timedelta(hours=config.signup.purge_after_hours))
    secret = digest_secret(config, engine)
    for subscriber_id, address, erase in stale:
        if erase:
            state.erase_subscriber(engine, subscriber_id, address, erased_key(secret, address), now,
                                   only_from=(state.UNCONFIRMED, *state.LEFT))
    state.delete_unconfirmed(engine, [subscriber_id for subscriber_id, _, erase in stale if not erase])
    if stale:
        state.drop_old_pages(engine)
    for path in outbox_files(config.out, *(address for _, address, _ in stale)):
        path.unlink(missing_ok=True)
    return [address for _, address, _ in stale]
