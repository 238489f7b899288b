"""What comes back to the digest's From address, classified. Pure: a parsed message in, a
:class:`Notice` out; finding the subscriber and changing their status is the caller's
(``feeds.api.inbox``).

Three kinds of message matter: delivery status notifications (RFC 3464: a hard bounce
means the address is gone), abuse complaints (ARF, RFC 5965: the person called a digest
spam) and the unsubscribe requests the ``List-Unsubscribe`` mailto link sends (subject
``unsubscribe <token>``). A notice carries only evidence; which of it is trusted is decided
by the caller: a Message-ID the ledger has, a signed VERP address or a signed token. The
addresses a report names (Final-Recipient, Original-Rcpt-To) are for the report only:
anyone can write a DSN naming anyone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.policy import default

HARD_BOUNCE = "hard bounce"  # Action: failed, Status: 5.x.x: the address is gone for good
SOFT_BOUNCE = "soft bounce"  # delayed, or failed with 4.x.x: reported, nothing changes
COMPLAINT = "complaint"  # an ARF report with Feedback-Type: abuse
UNSUBSCRIBE = "unsubscribe"  # the List-Unsubscribe mailto: Subject "unsubscribe <token>"
IGNORED = "ignored"  # anything else: a reply, a delivered notice, another feedback type

# Headers of the report itself that may carry the envelope recipient, i.e. our VERP sender.
ENVELOPE_HEADERS = ("Return-Path", "Delivered-To", "X-Original-To", "Envelope-To", "To")
# The original message, as a DSN or an ARF report quotes it (RFC 3464 section 2, RFC 5965
# section 2): whole, or headers only.
ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")
# Our unsubscribe token, as the https link (?token=) and the mailto subject carry it.
TOKEN = re.compile(r"(?:token=|unsubscribe(?:%20|\s+))(\d{1,12}\.[0-9a-f]{32})\b", re.IGNORECASE)
UNSUBSCRIBE_SUBJECT = re.compile(r"\s*unsubscribe\s+(\S+)\s*", re.IGNORECASE)
MESSAGE_ID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True, slots=True)
class Notice:
    """One message's kind and the evidence of whom it is about.

    ``detail`` says what happened ("5.1.1: smtp; 550 5.1.1 user unknown", "abuse report") or,
    for IGNORED, why. ``message_ids`` are the original message's (for the delivery
    ledger), ``addresses`` may be a VERP sender, ``tokens`` are unsubscribe tokens; none of
    them is checked here. ``recipients`` are what the report claims, for people to read.
    """

    kind: str
    detail: str
    message_ids: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()


def classify(message: EmailMessage) -> Notice:
    """What ``message`` (parsed with ``email.policy.default``) is, and its evidence."""
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type", "")).lower()
        if report_type == "delivery-status":
            return delivery_status(message)
        if report_type == "feedback-report":
            return feedback_report(message)
        return Notice(IGNORED, f"a report of type {report_type or 'none'!r}, not a bounce or a complaint")
    subject = UNSUBSCRIBE_SUBJECT.fullmatch(str(message.get("Subject", "")))
    if subject:
        return Notice(UNSUBSCRIBE, "mailto", tokens=(subject.group(1),))
    return Notice(IGNORED, f"not a delivery report, complaint or unsubscribe request ({about(message)})")


def delivery_status(report: EmailMessage) -> Notice:
    """A DSN (RFC 3464): hard if any recipient failed with a 5.x.x status, soft if one was
    delayed or failed with 4.x.x, ignored if all were delivered, relayed or expanded."""
    part = first_part(report, ("message/delivery-status",))
    blocks = part.get_payload() if part is not None else None
    if not isinstance(blocks, list) or len(blocks) < 2:
        return Notice(IGNORED, f"a delivery report without per-recipient fields ({about(report)})")
    recipients = [block for block in blocks[1:] if isinstance(block, Message)]
    kind = HARD_BOUNCE if any(severity(r) == HARD_BOUNCE for r in recipients) else SOFT_BOUNCE
    chosen = [r for r in recipients if severity(r) == kind]
    if not chosen:
        actions = ", ".join(sorted({action(r) or "none" for r in recipients}))
        return Notice(IGNORED, f"a delivery report that is not a failure (action: {actions})")
    return Notice(
        kind,
        "; ".join(dict.fromkeys(bounce_detail(r) for r in chosen)),
        message_ids=original_message_ids(report),
        addresses=envelope_addresses(report),
        tokens=original_tokens(report),
        recipients=tuple(dict.fromkeys(filter(None, (
            address_field(r, "Final-Recipient") or address_field(r, "Original-Recipient") for r in chosen)))),
    )


def feedback_report(report: EmailMessage) -> Notice:
    """An ARF report (RFC 5965); only ``Feedback-Type: abuse`` is a complaint: not-spam,
    fraud, virus and other reports say nothing about wanting the digest."""
    part = first_part(report, ("message/feedback-report",))
    fields = header_block(part) if part is not None else None
    if fields is None:
        return Notice(IGNORED, f"a feedback report without its fields ({about(report)})")
    kind = field(fields, "Feedback-Type").lower()
    if kind != "abuse":
        return Notice(IGNORED, f"a feedback report of type {kind or 'none'!r}, not a complaint")
    agent = field(fields, "User-Agent")
    return Notice(
        COMPLAINT, f"abuse report{f' by {agent}' if agent else ''}",
        message_ids=original_message_ids(report),
        addresses=envelope_addresses(report),
        tokens=original_tokens(report),
        recipients=tuple(address_field(fields, "Original-Rcpt-To").split()[:1]),
    )


# ------------------------------------------------------------------------------ parts


def first_part(message: EmailMessage, types: Iterable[str]) -> Message | None:
    wanted = tuple(types)
    return next((p for p in message.walk() if p.get_content_type() in wanted), None)


def header_block(part: Message) -> Message | None:
    """The fields of a message/* part that holds a header block (message/rfc822,
    message/feedback-report, text/rfc822-headers) as a Message, however the parser left it."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    text = part.get_payload(decode=True)
    if not isinstance(text, bytes):
        return None
    return HeaderParser(policy=default).parsestr(text.decode("utf-8", "replace"))


def originals(report: EmailMessage) -> Iterator[Message]:
    """The quoted original message (or its headers) in a report."""
    for part in report.walk():
        if part.get_content_type() in ORIGINAL_TYPES:
            headers = header_block(part)
            if headers is not None:
                yield headers


def original_message_ids(report: EmailMessage) -> tuple[str, ...]:
    """The original's Message-ID, from the quoted copy first, then from the report's
    In-Reply-To and References (some MTAs quote nothing but thread their report)."""
    found: list[str] = []
    for headers in originals(report):
        found += MESSAGE_ID.findall(str(headers.get("Message-ID", "")))
    for name in ("In-Reply-To", "References"):
        found += MESSAGE_ID.findall(str(report.get(name, "")))
    return tuple(dict.fromkeys(found))


def envelope_addresses(report: EmailMessage) -> tuple[str, ...]:
    """Where the report was delivered (our VERP sender, if the message went out with one),
    and the original's Return-Path if the quote kept it."""
    values = [str(v) for name in ENVELOPE_HEADERS for v in report.get_all(name, [])]
    values += [str(v) for headers in originals(report) for v in headers.get_all("Return-Path", [])]
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


def original_tokens(report: EmailMessage) -> tuple[str, ...]:
    """Unsubscribe tokens in the original's List-Unsubscribe: ARF reports often redact the
    recipient but keep this header, and the token is signed."""
    values = [str(v) for headers in originals(report) for v in headers.get_all("List-Unsubscribe", [])]
    return tuple(dict.fromkeys(token for value in values for token in TOKEN.findall(value)))


# ----------------------------------------------------------------------------- fields


def field(block: Message, name: str) -> str:
    """A field's value with its comments' whitespace folded: ``Status: 5.1.1 (no user)``.
    Control characters become spaces: the value is anyone's words, printed to the
    operator's terminal, where an escape sequence would act."""
    return " ".join(_CONTROLS.sub(" ", str(block.get(name, ""))).split())


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0 and C1, as a terminal reads them


def action(recipient: Message) -> str:
    return field(recipient, "Action").split(" ")[0].lower()


def severity(recipient: Message) -> str | None:
    """RFC 3464 section 2.3.3-2.3.4: a failure with a permanent (5.x.x) status is hard;
    one with a transient status (4.x.x: the server gave up retrying) or a delay is soft."""
    match action(recipient):
        case "failed":
            return HARD_BOUNCE if field(recipient, "Status").startswith("5") else SOFT_BOUNCE
        case "delayed":
            return SOFT_BOUNCE
        case _:  # delivered, relayed, expanded
            return None


def address_field(block: Message, name: str) -> str:
    """``rfc822; ada@example.org`` (RFC 3464's address-type; value) -> ``ada@example.org``."""
    value = field(block, name)
    return value.split(";", 1)[1].strip().strip("<>") if ";" in value else value.strip("<>")


def bounce_detail(recipient: Message) -> str:
    status, diagnostic = field(recipient, "Status"), field(recipient, "Diagnostic-Code")
    return f"{status or 'no status'}{f': {diagnostic}' if diagnostic else ''}"


def about(message: Message) -> str:
    """``from x, subject "y"``: enough for the operator to find the message."""
    subject = " ".join(str(message.get("Subject", "")).split())
    return f"from {field(message, 'From') or 'nobody'}, subject {subject[:80]!r}"
