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

    def __init__(self, path: Path | None, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
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


class FeedsWarning(UserWarning):
    """Warnings feeds itself issues; the test suite turns them into errors."""
