"""The few errors and warnings feeds raises on purpose. Each carries its culprit."""

from __future__ import annotations

from pathlib import Path


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
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:  # picklable, for the parse cache
        return (RecordError, (self.path, self.reason))


class RecordNotice:
    """A record was kept, but a field of it was cleaned or dropped."""

    __slots__ = ("path", "reason")

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __repr__(self) -> str:
        return f"RecordNotice({str(self)!r})"


class FeedsWarning(UserWarning):
    """Warnings feeds itself issues; the test suite turns them into errors."""
