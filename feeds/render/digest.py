"""Digest edition -> HTML (Jinja -> MJML -> mjml-python) and plain text -> an email.

Pure: returns strings and an EmailMessage; :mod:`feeds.deliver` writes or sends them.
An edition is rendered once for everyone who shares it; :func:`personalise` then swaps in
each subscriber's unsubscribe and preferences links, the only personal things in it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime
from html import escape

import idna
import jinja2
from mjml import mjml2html

from feeds.digest import Edition
from feeds.errors import AddressError as AddressError  # defined there; exported here too
from feeds.errors import TemplateError as TemplateError
from feeds.render import shorten

# Stands in for a subscriber's unsubscribe URL until personalise(); plain URL characters
# only, so escaping and MJML leave it untouched.
UNSUBSCRIBE_PLACEHOLDER = "https://unsubscribe.invalid/feeds-subscriber-link"
PREFERENCES_PLACEHOLDER = "https://preferences.invalid/feeds-subscriber-link"

# The stdlib's SMTP policy folds long headers at 78 characters, and folds a long
# List-Unsubscribe into an encoded form Gmail and Outlook ignore; RFC 5322 allows 998.
EMAIL_POLICY = SMTP.clone(max_line_length=998)
# For a recipient whose local part is not ASCII (RFC 6531/6532): headers in raw UTF-8,
# which only a server offering SMTPUTF8 may be given.
EMAIL_POLICY_UTF8 = SMTPUTF8.clone(max_line_length=998)

GMAIL_CLIP_BYTES = 102_000  # Gmail clips a message's HTML above about 102 KB


@dataclass(frozen=True, slots=True)
class RenderedEdition:
    subject: str
    preheader: str
    html: str
    text: str

    def personalise(self, unsubscribe_url: str, preferences_url: str) -> RenderedEdition:
        return replace(
            self,
            html=self.html.replace(UNSUBSCRIBE_PLACEHOLDER, escape(unsubscribe_url))
                          .replace(PREFERENCES_PLACEHOLDER, escape(preferences_url)),
            text=self.text.replace(UNSUBSCRIBE_PLACEHOLDER, unsubscribe_url)
                          .replace(PREFERENCES_PLACEHOLDER, preferences_url),
        )


def subject_line(site_title: str, edition: Edition) -> str:
    """"AI Digest · 18 Jun 2020: Facial recognition: should police ...": date and top story."""
    headline = edition.stories[0].lead.title if edition.stories else "No new stories"
    return shorten(f"{site_title} · {edition.day.day} {edition.day:%b %Y}: {headline}", 140)


def preheader_text(edition: Edition) -> str:
    """The line mail clients show after the subject: the next headlines, or the top
    story's excerpt when it is the only one."""
    titles = [s.lead.title for s in edition.stories[1:4]]
    if titles:
        return "Also: " + " · ".join(titles)
    return shorten(edition.stories[0].lead.excerpt, 150) if edition.stories else ""


def topic_names(edition: Edition) -> list[str]:
    """The topics the subscriber chose, news or not; the sections' if none is known."""
    return [t.name for t in edition.chosen] or [s.topic.name for s in edition.sections]


def render_edition(
    env: jinja2.Environment,
    edition: Edition,
    *,
    site_title: str,
    language: str,
    zone: tzinfo,
    web_url: str | None,
    archive_url: str,
    personal: bool,
    left_out: int = 0,
) -> RenderedEdition:
    """HTML and text of an edition. ``personal`` editions carry placeholders for the
    unsubscribe and preferences links; the web copy has neither. ``left_out`` stories were trimmed from this
    email: it says so and links to ``web_url``, whose copy has them all."""
    subject = subject_line(site_title, edition)
    context = {
        "edition": edition,
        "site_title": site_title,
        "language": language,
        "zone": zone,
        "subject": subject,
        "preheader": preheader_text(edition),
        "topic_names": topic_names(edition),
        "left_out": left_out,
        "web_url": web_url,
        "archive_url": archive_url,
        "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER if personal else None,
        "preferences_url": PREFERENCES_PLACEHOLDER if personal else None,
    }
    try:
        markup = env.get_template("digest.mjml").render(context)
        text = env.get_template("digest.txt").render(context)
    except jinja2.TemplateError as e:
        raise TemplateError(f"digest template: {e.__class__.__name__}: {e}", getattr(e, "name", None)) from e
    try:
        html = mjml2html(markup, disable_comments=True, fonts={})
    except ValueError as e:
        raise TemplateError(f"digest.mjml did not render as MJML: {e}", "digest.mjml") from e
    return RenderedEdition(subject, context["preheader"], html, text)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for the wire: its bytes, envelope and Message-ID. Envelope
    addresses have their domains in IDNA (ASCII) form; ``smtputf8`` is set when a local part
    is not ASCII, and the message can then go only to a server that offers SMTPUTF8."""

    sender: str
    recipient: str
    message_id: str
    data: bytes
    smtputf8: bool = False


def ascii_domain(domain: str) -> str:
    """``bücher.example`` -> ``xn--bcher-kva.example`` (IDNA 2008 with UTS 46 mapping):
    what DNS, an SMTP envelope and a header without SMTPUTF8 can carry."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise AddressError(f"domain {domain!r} has no IDNA form: {e}", domain) from e


def mailbox(value: str) -> Address:
    """``Zoë's News, Inc. <news@bücher.example>``, ``"AI Digest" <d@example.org>`` or a bare
    address -> an Address with the domain in IDNA form. The display name is everything
    before the last ``<`` (unquoted): a config's ``mail_from`` is written by a person, and
    ``email.utils.parseaddr`` would read the comma in "News, Inc." as two addresses."""
    name, bracket, rest = value.strip().rpartition("<")
    if bracket:
        spec = rest.strip().removesuffix(">").strip()
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
    else:
        spec, name = value.strip(), ""
    local, at, domain = spec.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{value!r}: expected an address such as 'AI Digest <digest@example.org>'", value)
    try:
        return Address(name, local, ascii_domain(domain))
    except ValueError as e:
        raise AddressError(f"{value!r}: {e}", value) from e


def envelope_address(address: str) -> tuple[str, bool]:
    """A subscriber's address for RCPT TO and the To header: the domain in IDNA form, and
    whether the local part needs SMTPUTF8 (IDNA cannot help a local part)."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{ascii_domain(domain)}", not local.isascii()


def phrase(text: str) -> str:
    """``text`` as an RFC 5322 phrase (a display name): RFC 2047 encoded-words if it is not
    ASCII, quoted if it has specials (``,`` ``"`` ``'``...), bare otherwise. For headers the
    stdlib has no class for, such as List-Id (RFC 2919). Line breaks and runs of white
    space are one space: a header is one line, and a break would start another header."""
    text = " ".join(text.split())
    if not text.isascii():
        return Header(text, "utf-8").encode(maxlinelen=998)
    if re.fullmatch(r"[A-Za-z0-9!#$%&*+/=?^_`{|}~ -]*", text):  # RFC 5322 atext and spaces
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def list_id(title: str, sender: Address) -> str:
    """``"AI Digest" <digest.news.example.org>``: the list's name and an id under the
    sender's own (IDNA) domain, RFC 2919."""
    return f"{phrase(title)} <digest.{sender.domain or 'localhost'}>"


class MessageTemplate:
    """An edition's email, composed once by the stdlib ``email`` package and filled in per
    subscriber.

    Everyone who shares an edition gets the same headers and body but for To, Date,
    Message-ID, List-Unsubscribe and the unsubscribe and preferences links. Composing a whole message with
    ``email`` for each of thousands of subscribers was most of the cost of a digest run;
    so the shared headers are serialised once, and each message is the per-subscriber
    headers, those bytes and the two parts, base64-encoded (in C) with the subscriber's
    link in them. multipart/alternative, text first, UTF-8, CRLF line ends, headers on
    unfolded lines (List-Unsubscribe must stay one unencoded line for Gmail and Outlook).
    """

    def __init__(self, rendered: RenderedEdition, *, mail_from: Address, reply_to: Address | None,
                 list_id: str) -> None:
        self.rendered = rendered
        self.sender = mail_from.addr_spec
        self.sender_utf8 = not self.sender.isascii()
        # email.headerregistry quotes and encodes display names with commas, quotes or
        # non-ASCII letters, so From parses as the one address it is.
        shared = EmailMessage(policy=EMAIL_POLICY_UTF8 if self.sender_utf8 else EMAIL_POLICY)
        shared["From"] = mail_from
        if reply_to:
            shared["Reply-To"] = reply_to
        shared["Subject"] = rendered.subject
        shared["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        shared["MIME-Version"] = "1.0"
        self.headers = (f"List-Id: {list_id}\r\n".encode()
                        + bytes(shared).rstrip(b"\r\n") + b"\r\n")

    def fill(self, *, to: str, message_id: str, date: datetime, unsubscribe_url: str,
             unsubscribe_mailto: str, preferences_url: str) -> Outgoing:
        """The message to ``to`` (as subscribed; its domain may be Unicode). Raises
        AddressError for an address no header can carry."""
        personal = self.rendered.personalise(unsubscribe_url, preferences_url)
        boundary = f"==feeds-{hashlib.sha256(message_id.encode()).hexdigest()[:24]}=="
        recipient, utf8 = envelope_address(to)
        if recipient.isascii():  # the common case, kept off the slower header machinery
            to_header = f"To: {recipient}\r\n".encode()
        else:  # a non-ASCII local part: raw UTF-8, for a server that offers SMTPUTF8
            one = EmailMessage(policy=EMAIL_POLICY_UTF8)
            local, _, domain = recipient.rpartition("@")
            try:
                one["To"] = Address(username=local, domain=domain)
            except ValueError as e:
                raise AddressError(f"{to!r}: {e}", to) from e
            to_header = bytes(one).rstrip(b"\r\n") + b"\r\n"
        head = (
            to_header
            + f"Date: {format_datetime(date)}\r\nMessage-ID: {message_id}\r\n"
              f"List-Unsubscribe: <{unsubscribe_url}>, <{unsubscribe_mailto}>\r\n".encode()
            + self.headers
            + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode()
        )
        parts = b"".join(
            f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n".encode()
            + base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n")
            for subtype, body in (("plain", personal.text), ("html", personal.html))
        )
        return Outgoing(self.sender, recipient, message_id, head + parts + f"--{boundary}--\r\n".encode(),
                        smtputf8=utf8 or self.sender_utf8)
