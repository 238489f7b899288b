"""``feeds inbox process``: read what came back to the From address and act on it.

Bounces, complaints and mailto unsubscribe requests (classified by :mod:`feeds.inbox`)
are mapped to a subscriber only through evidence we signed or recorded: the Message-ID in
the delivery ledger, a VERP sender (:func:`feeds.digest.verp_sender`) or an unsubscribe
token. Anything else is reported and changes nothing, so a forged bounce cannot remove
anyone. Every message gets one line in the report.

Processing is idempotent: a status is changed at most once (leaving never overrides
leaving, see :func:`feeds.state.set_status`), so a message read twice reports "unchanged".
In a Maildir, each processed message is moved to ``cur/`` with the Seen flag, as a mail
reader does, and a rerun reads only what is new; an mbox is only read, never rewritten (a
delivery agent may be appending to it).
"""

from __future__ import annotations

import email
import functools
import logging
import mailbox
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from sqlalchemy.engine import Engine

from feeds import state
from feeds.api.digests import digest_secret
from feeds.config import Config
from feeds.digest import token_subscriber, verify_token, verify_verp, verp_subscriber
from feeds.errors import InboxError as InboxError  # defined there; exported here too
from feeds.inbox import COMPLAINT, HARD_BOUNCE, IGNORED, SOFT_BOUNCE, UNSUBSCRIBE, Notice, classify

log = logging.getLogger(__name__)

# The outcome of one message, as the report counts them.
BOUNCED, COMPLAINED, UNSUBSCRIBED, SOFT, UNCHANGED = "bounced", "complained", "unsubscribed", "soft bounce", "unchanged"
# What each kind of notice does to its subscriber: (status, source in the history, outcome).
ACTIONS = {
    HARD_BOUNCE: (state.BOUNCED, "bounce", BOUNCED),
    COMPLAINT: (state.COMPLAINED, "complaint", COMPLAINED),
    UNSUBSCRIBE: (state.UNSUBSCRIBED, "mailto", UNSUBSCRIBED),
}


@dataclass(frozen=True, slots=True)
class InboxLine:
    where: str  # "new/1733.M1.host" in a Maildir, "bounces.mbox#3" in an mbox
    outcome: str  # BOUNCED ... UNCHANGED, or IGNORED
    text: str  # who and why

    def __str__(self) -> str:
        return f"{self.where}: {self.outcome}{':' if self.outcome == IGNORED else ''} {self.text}"


@dataclass
class InboxReport:
    lines: list[InboxLine] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(line.outcome for line in self.lines)


def process_inbox(config: Config, *, now: datetime, maildir: Path | None = None,
                  mbox: Path | None = None) -> InboxReport:
    """Read every new message in ``maildir`` (or every message in ``mbox``) and apply it."""
    messages = iter_maildir(maildir) if maildir is not None else iter_mbox(mbox) if mbox is not None else None
    if messages is None:
        raise InboxError("give a Maildir folder or an mbox file")
    engine = state.open_state(config.state_db)
    secret = digest_secret(config, engine)
    report = InboxReport()
    for where, data, done in messages:
        report.lines.append(process_message(engine, secret, where, data, now=now))
        done()
    return report


def process_message(engine: Engine, secret: str, where: str, data: bytes, *, now: datetime) -> InboxLine:
    try:
        notice = classify(as_message(data))
    except Exception as e:  # a message no parser step could read is one line, not the end of the run
        log.debug("unreadable message", exc_info=True, extra={"mail": where})  # "message" is LogRecord's own
        return InboxLine(where, IGNORED, f"cannot be read: {e.__class__.__name__}: {e}")
    if notice.kind == IGNORED:
        return InboxLine(where, IGNORED, notice.detail)
    person = find_subscriber(engine, secret, notice)
    if notice.kind == SOFT_BOUNCE:
        who = person.email if person else claimed(notice)
        return InboxLine(where, SOFT, f"{who}: {notice.detail}; nothing changed")
    if person is None:
        return InboxLine(where, IGNORED, not_ours(notice))
    status, source, outcome = ACTIONS[notice.kind]
    reason = notice.detail if notice.kind != UNSUBSCRIBE else None
    if state.set_status(engine, person.id, status, source=source, now=now, reason=reason):
        log.info(outcome, extra={"subscriber": person.id, "reason": notice.detail})
        return InboxLine(where, outcome, f"{person.email} ({notice.detail})")
    return InboxLine(where, UNCHANGED,
                     f"{person.email}: already {person.status}; {notice.kind} ({notice.detail}) noted")


def find_subscriber(engine: Engine, secret: str, notice: Notice) -> state.Subscriber | None:
    """The subscriber a notice is about, from evidence only we could have made: a
    Message-ID the ledger sent, a signed VERP sender, a signed unsubscribe token. A mailto
    request is trusted on its token alone: its From may be a forwarding address."""
    if notice.kind != UNSUBSCRIBE:
        for message_id in notice.message_ids:
            subscriber_id = state.message_subscriber(engine, message_id)
            if subscriber_id is not None:
                return state.get_subscriber(engine, subscriber_id)
        for address in notice.addresses:
            person = claimed_subscriber(engine, verp_subscriber(address))
            if person is not None and verify_verp(secret, address, person.id, person.email):
                return person
    for token in notice.tokens:
        person = claimed_subscriber(engine, token_subscriber(token))
        if person is not None and verify_token(secret, token, person.id, person.email):
            return person
    return None


def claimed_subscriber(engine: Engine, subscriber_id: int | None) -> state.Subscriber | None:
    return state.get_subscriber(engine, subscriber_id) if subscriber_id is not None else None


def not_ours(notice: Notice) -> str:
    """Why a notice changed nothing: nothing in it was made by us (forged, or for someone
    since removed)."""
    if notice.kind == UNSUBSCRIBE:
        return "an unsubscribe request whose token is not ours (forged, or for someone since removed)"
    return (f"a {notice.kind} ({notice.detail}) about no message, VERP address or token of ours "
            f"(forged, or for someone since removed); it names {claimed(notice)}")


def claimed(notice: Notice) -> str:
    return ", ".join(notice.recipients) or "no recipient"


# ---------------------------------------------------------------------------- mailboxes

Message = tuple[str, bytes, Callable[[], None]]  # where, the raw bytes, mark it processed


def iter_maildir(root: Path) -> Iterator[Message]:
    """Messages in ``new/``, and in ``cur/`` without the Seen flag, oldest name first;
    each is moved to ``cur/`` with the Seen flag once processed (the Maildir convention:
    ``<unique>:2,<flags>``), so a rerun reads only what arrived since."""
    if not all((root / sub).is_dir() for sub in ("cur", "new", "tmp")):
        raise InboxError(f"{root}: not a Maildir (it needs cur/, new/ and tmp/)", root)
    for sub in ("new", "cur"):
        for path in sorted((root / sub).iterdir()):
            if path.name.startswith(".") or not path.is_file() or "S" in flags(path.name):
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # another reader took it meanwhile
                continue
            yield f"{sub}/{path.name}", data, functools.partial(mark_seen, root, path)


def flags(name: str) -> str:
    return name.partition(":2,")[2]


def mark_seen(root: Path, path: Path) -> None:
    unique, _, old = path.name.partition(":2,")
    try:
        os.rename(path, root / "cur" / f"{unique}:2,{''.join(sorted(set(old) | {'S'}))}")
    except FileNotFoundError:  # moved by someone else: nothing left to mark
        pass


def iter_mbox(path: Path) -> Iterator[Message]:
    """Every message of an mbox file; it is read, never rewritten (see the module doc)."""
    try:
        box = mailbox.mbox(path, create=False)
        keys = box.keys()
    except (OSError, mailbox.Error) as e:
        raise InboxError(f"{path}: cannot read as an mbox: {e}", path) from e
    try:
        for number, key in enumerate(keys, start=1):
            yield f"{path.name}#{number}", box.get_bytes(key, from_=False), lambda: None
    finally:
        box.close()


def as_message(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=default)
