"""A real SMTP server on loopback (aiosmtpd) that records what it accepts, and can be told
to refuse some recipients, for now (4xx) or for good (5xx), at RCPT or at DATA, and to
offer SMTPUTF8 (RFC 6531) or not."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Recorder:
    messages: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # what arrived, byte for byte
    envelopes: list[tuple[str, list[str], bool]] = field(default_factory=list)  # MAIL FROM, RCPT TO, SMTPUTF8
    # address -> replies to give to RCPT TO, in order; then 250
    scripted: dict[str, list[str]] = field(default_factory=dict)
    # address -> replies to give to DATA for a message to it, in order; then 250
    scripted_data: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # called with each RCPT TO address before it is answered: lets a test act mid-run
    on_rcpt: Callable[[str], None] | None = None

    # replies to give to MAIL FROM, in order; then 250
    scripted_mail: list[str] = field(default_factory=list)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.lock:
            if self.scripted_mail:
                return self.scripted_mail.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.on_rcpt is not None:
            self.on_rcpt(address)
        with self.lock:
            replies = self.scripted.get(address)
            if replies:
                return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            for address in envelope.rcpt_tos:
                replies = self.scripted_data.get(address)
                if replies:
                    return replies.pop(0)
        data = envelope.original_content
        if envelope.smtp_utf8:  # RFC 6532: headers in raw UTF-8
            parsed = email.message_from_string(data.decode("utf-8"), policy=default)
        else:
            parsed = email.message_from_bytes(data, policy=default)
        with self.lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
            self.raw.append(data)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), bool(envelope.smtp_utf8)))
        return "250 Message accepted for delivery"

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received() if m["To"] == address]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(*, smtputf8: bool = True) -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()
