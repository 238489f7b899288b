"""Digest edition -> HTML (Jinja -> MJML -> mjml-python) and plain text -> an email.

Pure: returns strings and an EmailMessage; :mod:`feeds.deliver` writes or sends them.
An edition is rendered once for everyone who shares it; :func:`personalise` then swaps in
each subscriber's unsubscribe link, which is the only personal thing in it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from html import escape

import jinja2
from mjml import mjml2html

from feeds.digest import Edition
from feeds.errors import FeedsError
from feeds.render import shorten

# Stands in for a subscriber's unsubscribe URL until personalise(); plain URL characters
# only, so escaping and MJML leave it untouched.
UNSUBSCRIBE_PLACEHOLDER = "https://unsubscribe.invalid/feeds-subscriber-link"

# The stdlib's SMTP policy folds long headers at 78 characters, and folds a long
# List-Unsubscribe into an encoded form Gmail and Outlook ignore; RFC 5322 allows 998.
EMAIL_POLICY = SMTP.clone(max_line_length=998)

GMAIL_CLIP_BYTES = 102_000  # Gmail clips a message's HTML above about 102 KB


class TemplateError(FeedsError):
    """A digest template failed to render."""


@dataclass(frozen=True, slots=True)
class RenderedEdition:
    subject: str
    preheader: str
    html: str
    text: str

    def personalise(self, unsubscribe_url: str) -> RenderedEdition:
        return replace(
            self,
            html=self.html.replace(UNSUBSCRIBE_PLACEHOLDER, escape(unsubscribe_url)),
            text=self.text.replace(UNSUBSCRIBE_PLACEHOLDER, unsubscribe_url),
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
    """HTML and text of an edition. ``personal`` editions carry a placeholder for the
    unsubscribe link; the web copy has none. ``left_out`` stories were trimmed from this
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
    }
    try:
        markup = env.get_template("digest.mjml").render(context)
        text = env.get_template("digest.txt").render(context)
    except jinja2.TemplateError as e:
        raise TemplateError(f"digest template: {e.__class__.__name__}: {e}") from e
    try:
        html = mjml2html(markup, disable_comments=True, fonts={})
    except ValueError as e:
        raise TemplateError(f"digest.mjml did not render as MJML: {e}") from e
    return RenderedEdition(subject, context["preheader"], html, text)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for the wire: its bytes, envelope and Message-ID."""

    sender: str
    recipient: str
    message_id: str
    data: bytes


class MessageTemplate:
    """An edition's email, composed once by the stdlib ``email`` package and filled in per
    subscriber.

    Everyone who shares an edition gets the same headers and body but for To, Date,
    Message-ID, List-Unsubscribe and the unsubscribe link. Composing a whole message with
    ``email`` for each of thousands of subscribers was most of the cost of a digest run;
    so the shared headers are serialised once, and each message is the per-subscriber
    headers, those bytes and the two parts, base64-encoded (in C) with the subscriber's
    link in them. multipart/alternative, text first, UTF-8, CRLF line ends, headers on
    unfolded lines (List-Unsubscribe must stay one unencoded line for Gmail and Outlook).
    """

    def __init__(self, rendered: RenderedEdition, *, mail_from: str, reply_to: str | None, list_id: str) -> None:
        self.rendered = rendered
        self.sender = parseaddr(mail_from)[1]
        shared = EmailMessage(policy=EMAIL_POLICY)
        shared["From"] = mail_from
        if reply_to:
            shared["Reply-To"] = reply_to
        shared["Subject"] = rendered.subject
        shared["List-Id"] = list_id
        shared["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        shared["MIME-Version"] = "1.0"
        self.headers = bytes(shared).rstrip(b"\r\n") + b"\r\n"

    def fill(self, *, to: str, message_id: str, date: datetime, unsubscribe_url: str,
             unsubscribe_mailto: str) -> Outgoing:
        personal = self.rendered.personalise(unsubscribe_url)
        boundary = f"==feeds-{hashlib.sha256(message_id.encode()).hexdigest()[:24]}=="
        if to.isascii():
            to_header = f"To: {to}\r\n".encode()
        else:  # an internationalised address: let the stdlib encode it
            one = EmailMessage(policy=EMAIL_POLICY)
            one["To"] = Address(addr_spec=to)
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
        return Outgoing(self.sender, to, message_id, head + parts + f"--{boundary}--\r\n".encode())


def sender_domain(mail_from: str) -> str:
    return parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
