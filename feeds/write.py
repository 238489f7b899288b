"""The only module that writes into ``out/``: atomically, only inside it, only on change."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path, PurePosixPath

from feeds.errors import FeedsError


class OutputError(FeedsError):
    """A file could not be written, or its path would leave the output folder."""


def resolve_inside(root: Path, relative: str) -> Path:
    """``root/relative``, refusing anything that would land outside ``root``: absolute
    paths, ``..`` and symlinks that point elsewhere."""
    rel = PurePosixPath(relative)
    if rel.is_absolute() or not rel.parts or any(p in ("..", "") for p in rel.parts):
        raise OutputError(f"{relative!r}: not a path inside the output folder")
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise OutputError(f"{relative!r}: resolves to {target}, outside {base}")
    return target


def write_if_changed(root: Path, relative: str, data: bytes) -> bool:
    """Replace ``root/relative`` with ``data`` atomically; True if the file changed.

    The bytes go to a temporary file in the same folder, are flushed to disk and renamed
    over the target, so a reader sees the old file or the new one, never half of one. An
    unchanged file is left alone: its mtime (and a server's Last-Modified) stays put.
    """
    target = resolve_inside(root, relative)
    try:
        if target.read_bytes() == data:
            return False
    except (FileNotFoundError, IsADirectoryError):
        pass  # nothing to compare with; a folder in the way fails at the rename below
    except OSError as e:
        raise OutputError(f"{target}: cannot read: {e.strerror or e}") from e
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_beside(target)
    except OSError as e:
        raise OutputError(f"{target}: cannot write: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # whatever the umask: feeds are public files
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"{target}: cannot write: {e.strerror or e}") from e
        raise
    return True


def _create_beside(target: Path) -> tuple[int, str]:
    """A new, empty hidden file in ``target``'s folder, made by this call alone (O_EXCL):
    named by process id and a counter, where tempfile's random names would cost a rebuild
    the import of tempfile, shutil and random for one file."""
    for n in itertools.count():
        tmp = str(target.with_name(f".{target.name}.{os.getpid()}.{n}.tmp"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
        except FileExistsError:  # a crashed run's leftover, or another thread's file now
            continue
    raise AssertionError("unreachable")
