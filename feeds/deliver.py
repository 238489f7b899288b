"""Messages out: ``.eml`` files in the outbox, or SMTP with retries and a rate limit.

Side effects live here; deciding what to send does not. :class:`SmtpSender` keeps one
connection for a whole run, waits between messages to honour the rate limit, retries
temporary (4xx) refusals with backoff and reports permanent (5xx) ones.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from feeds.config import SmtpConfig
from feeds.errors import DeliveryError as DeliveryError  # defined there; exported here too
from feeds.render.digest import Outgoing
from feeds.write import write_if_changed

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: ``sent``, ``failed`` (permanent, 5xx, or unsendable) or
    ``deferred`` (temporary refusals outlasted the retries; a later run tries again).
    ``bounced`` says the server refused the recipient for good (5xx at RCPT or DATA), which
    is about the address, unlike a refused sender or a message it cannot be given.
    ``sender_refused`` says the server refused the run's sender (see :func:`refuses_sender`):
    every other message would be refused alike, so the run should stop."""

    status: str
    detail: str = ""
    bounced: bool = False
    sender_refused: bool = False


def outbox_path(edition_day: str, email: str) -> str:
    """``outbox/2020-06-18/ada-at-example.com.eml``: one file per subscriber and edition."""
    # \w keeps non-ASCII letters, so josé@ and jose@ do not share a file.
    safe = re.sub(r"[^\w.+-]+", "-", email.lower().replace("@", "-at-")).strip("-.")
    return f"outbox/{edition_day}/{safe or 'subscriber'}.eml"


def write_outbox(out: Path, edition_day: str, message: Outgoing) -> str:
    """Write the message where a mail client can open it; nothing leaves the machine."""
    relative = outbox_path(edition_day, message.recipient)
    write_if_changed(out, relative, message.data)
    return relative


class SmtpSender:
    """One SMTP connection for a run. Use as a context manager."""

    def __init__(
        self,
        config: SmtpConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        pace: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.sleep, self.clock = sleep, clock
        # Waits before each attempt to send to an address; by default, this sender's own
        # smtp.rate_per_second. Workers sharing one limit across machines pass their own.
        self.pace = pace or (lambda _recipient: self._pace())
        self.connection: smtplib.SMTP | None = None
        self.last_send: float | None = None

    def __enter__(self) -> SmtpSender:
        self.connect()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                self.connection.close()
            self.connection = None

    def connect(self) -> None:
        c = self.config
        try:
            if c.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_seconds,
                                                      context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_seconds)
                if c.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
            if c.user:
                smtp.login(c.user, c.password or "")
        except smtplib.SMTPAuthenticationError as e:
            raise DeliveryError(f"SMTP {c.host}:{c.port}: login refused for {c.user}: {e.smtp_code}",
                                f"{c.host}:{c.port}") from e
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"SMTP {c.host}:{c.port}: cannot connect: {e}", f"{c.host}:{c.port}") from e
        self.connection = smtp

    def _pace(self) -> None:
        """Wait so that messages leave at most ``rate_per_second`` a second."""
        if self.last_send is not None:
            wait = 1.0 / self.config.rate_per_second - (self.clock() - self.last_send)
            if wait > 0:
                self.sleep(wait)
        self.last_send = self.clock()

    @property
    def connected(self) -> bool:
        return self.connection is not None

    def send(self, message: Outgoing) -> Outcome:
        """Hand one message to the server. Returns once the server accepted it (``sent``),
        refused it for good (``failed``) or kept refusing for now (``deferred``)."""
        attempts = self.config.retries + 1
        detail = ""
        for attempt in range(attempts):
            if attempt:
                self.sleep(self.config.backoff_seconds * 2 ** (attempt - 1))
            self.pace(message.recipient)
            try:
                if self.connection is None:
                    self.connect()
                assert self.connection is not None
                refused = self._sendmail(self.connection, message)
            except _Unsendable as e:
                return Outcome("failed", str(e))
            except smtplib.SMTPRecipientsRefused as e:
                code, reason = next(iter(e.recipients.values()))
                detail = f"{code} {_text(reason)}"
                if refuses_sender(code, _text(reason)):
                    return Outcome("deferred", detail, sender_refused=True)
                if code >= 500:
                    return Outcome("failed", detail, bounced=True)
            except smtplib.SMTPResponseException as e:
                detail = f"{e.smtp_code} {_text(e.smtp_error)}"
                if refuses_sender(e.smtp_code, _text(e.smtp_error),
                                  at_mail_from=isinstance(e, smtplib.SMTPSenderRefused)):
                    # Retrying, or trying the next subscriber, meets the same refusal: the
                    # message is deferred at once and the run stops (see feeds.api.sending).
                    self._reset()
                    return Outcome("deferred", detail, sender_refused=True)
                if e.smtp_code >= 500:
                    # DATA refused for good is about the recipient; MAIL FROM refused is not.
                    return Outcome("failed", detail, bounced=isinstance(e, smtplib.SMTPDataError))
                self._reset()
            except (smtplib.SMTPServerDisconnected, DeliveryError, OSError) as e:
                detail = f"connection lost: {e}"
                self.connection = None  # reconnect on the next attempt
            else:
                if refused:  # some recipients refused; we send one recipient per message
                    code, reason = next(iter(refused.values()))
                    if refuses_sender(code, _text(reason)):
                        return Outcome("deferred", f"{code} {_text(reason)}", sender_refused=True)
                    return Outcome("failed", f"{code} {_text(reason)}", bounced=code >= 500)
                return Outcome("sent")
            log.info("temporary failure for %s (attempt %d of %d): %s",
                     message.recipient, attempt + 1, attempts, detail)
        return Outcome("deferred", detail)

    def _sendmail(self, smtp: smtplib.SMTP, message: Outgoing) -> dict[str, tuple[int, bytes]]:
        """One transaction, with SMTPUTF8 (RFC 6531) when the message needs it; raises
        _Unsendable when it needs it and the server does not offer it."""
        options: list[str] = []
        if message.smtputf8:
            smtp.ehlo_or_helo_if_needed()
            if not smtp.has_extn("smtputf8"):
                raise _Unsendable(f"{message.recipient} needs SMTPUTF8 (a non-ASCII address), which "
                                  f"{self.config.host}:{self.config.port} does not offer")
            options.append("SMTPUTF8")
        try:
            return smtp.sendmail(message.sender, [message.recipient], message.data, mail_options=options)
        except (UnicodeError, smtplib.SMTPNotSupportedError) as e:
            self._reset()  # the transaction may be half-way: start the next one clean
            raise _Unsendable(f"cannot be sent to {message.recipient}: {e}") from e

    def _reset(self) -> None:
        try:
            if self.connection is not None:
                self.connection.rset()
        except (smtplib.SMTPException, OSError):
            self.connection = None


# RFC 3463 enhanced status codes about the sender's address: X.1.7 (bad sender's mailbox
# address syntax) and X.1.8 (bad sender's system address, e.g. its domain does not resolve).
_SENDER_CODE = re.compile(r"[45]\.1\.[78]\b")


def refuses_sender(code: int, reply: str, *, at_mail_from: bool = False) -> bool:
    """Whether a refusal is of the run's sender rather than of the recipient or the message:
    any refusal at MAIL FROM but 421 (the server closing the connection), or a reply at any
    stage whose enhanced status code names the sender."""
    return (at_mail_from and code != 421) or _SENDER_CODE.match(reply) is not None


class _Unsendable(Exception):
    """This message cannot be given to this server at all (no retry helps)."""


def _text(reason: bytes | str) -> str:
    """A server's reply as one line: smtplib joins a multi-line reply (Gmail's 550 has
    three) with newlines, and the reply is a line of the run's report and of
    ``subscribers list``."""
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    return " ".join(text.split())
