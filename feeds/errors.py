"""The few errors and warnings feeds raises on purpose. Each carries its culprit."""

from __future__ import annotations

import re
from pathlib import Path

# A file name may hold a line break or other control character: shown raw, it would split
# the one line that names the file, or forge a second one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def shown(path: Path) -> str:
    """``path`` as a message names it: control characters as ``\\xNN`` escapes."""
    text = str(path)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if _CONTROL.search(text) else text


class FeedsError(Exception):
    """Base for every error feeds raises on purpose."""


class ConfigError(FeedsError):
    """The configuration file cannot be used."""

    def __init__(self, path: Path | None, reason: str, *, key: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path, self.reason, self.key = path, reason, key


class ConfigExists(FeedsError):
    """``feeds init`` found a config already there: it never overwrites one."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: already exists; not overwritten")
        self.path = path


class AddressInUse(FeedsError):
    """The HTTP server cannot listen where the config (or --host/--port) says."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.host, self.port, self.reason = host, port, reason


class ServerStopped(FeedsError):
    """The daemon's HTTP server stopped while the daemon was running."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"the HTTP server on {host}:{port} stopped; stopping the daemon")
        self.host, self.port = host, port


class OutputFolderError(FeedsError):
    """The output folder cannot be used (it is a file, or cannot be made)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class InvalidRecord(FeedsError):
    """A record cannot become an Article. Raised by pure code that knows no file name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecordError(FeedsError):
    """A record file was skipped: ``seeds/x.md: missing title``."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{shown(path)}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:  # picklable, for the parse cache
        return (RecordError, (self.path, self.reason))


class RecordNotice:
    """A record was kept, but a field of it was cleaned or dropped."""

    __slots__ = ("path", "reason")

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"{shown(self.path)}: {self.reason}"

    def __repr__(self) -> str:
        return f"RecordNotice({str(self)!r})"


# ---------------------------------------------------------------- errors of the modules
# Each once lived in the module that raises it, which still exports its name
# (``from feeds.write import OutputError`` works). Together here, a caller sees the whole
# family in one place. Each takes its message first, as before, and names its culprit in
# an attribute, None where a raise site has none to give (pickled with the message:
# BaseException keeps an instance's attributes).


class CacheError(FeedsError):
    """The parse cache's file cannot be used (locked, read-only, a full disk): not its
    fault, so not thrown away; the build stops and says which file (``path``)."""

    def __init__(self, path: Path, reason: object) -> None:
        super().__init__(f"{path}: parse cache: {reason}")
        self.path = path


class OutputError(FeedsError):
    """A file could not be written, or its path would leave the output folder. ``path``:
    the file, or the relative path refused."""

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StateError(FeedsError):
    """The state database cannot be opened or used. ``url``: the database, password hidden."""

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class DeliveryError(FeedsError):
    """The SMTP server cannot be reached or refuses us altogether. ``server``: ``host:port``."""

    def __init__(self, message: str, server: str | None = None) -> None:
        super().__init__(message)
        self.server = server


class SendingHalted(FeedsError):
    """A fault of a whole sending run, not of the message in hand: the rate limit every
    worker shares cannot be read (its Redis is gone), or a worker cannot read the records
    to make an edition itself. That message stays owed, as do the rest of the run's, and
    the run stops."""


class SubscriberError(FeedsError):
    """An address or a topic choice that cannot be used. ``value``: what was at fault (the
    address, cadence or topic as given, or the CSV file's path)."""

    def __init__(self, message: str, value: str | Path | None = None) -> None:
        super().__init__(message)
        self.value = value


class TemplateError(FeedsError):
    """A digest template failed to render. ``template``: its file name."""

    def __init__(self, message: str, template: str | None = None) -> None:
        super().__init__(message)
        self.template = template


class AddressError(FeedsError, ValueError):
    """An address that cannot be put in a header or an envelope. ``address``: as given."""

    def __init__(self, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class InboxError(FeedsError):
    """The mailbox cannot be read. ``path``: the Maildir folder or mbox file, if one was given."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class LeaseHeld(FeedsError):
    """Another daemon holds the state database. ``holder``: its host and pid, as it described itself."""

    def __init__(self, message: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class FeedsWarning(UserWarning):
    """Warnings feeds itself issues; the test suite turns them into errors."""

