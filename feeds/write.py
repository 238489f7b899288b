"""The only module that writes into ``out/``: atomically, only inside it, only on change."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from stat import S_ISREG

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


def remove_output(root: Path, relative: str) -> bool:
    """Delete ``root/relative`` (a file this tool wrote) and its folder if that is left
    empty. False, and nothing touched, if the path would lead outside ``root`` by the
    check every write makes (:func:`resolve_inside`): a folder under ``root`` that is a
    symlink to somewhere else is never followed."""
    folder_name, _, name = relative.rpartition("/")
    try:
        resolve_inside(root, relative)
        folder = resolve_inside(root, folder_name) if folder_name else root.resolve()
    except OutputError:
        return False
    try:
        os.unlink(folder / name)  # a symlink that is the file itself goes, not what it names
    except FileNotFoundError:
        pass
    except IsADirectoryError:  # no file of ours (a hand-edited manifest): left alone, not the end
        return False           # of every build to come
    except OSError as e:
        raise OutputError(f"{folder / name}: cannot remove: {e.strerror or e}") from e
    if folder != root.resolve():
        with contextlib.suppress(OSError):  # not empty, or gone
            folder.rmdir()
    return True


def remove_leftovers(root: Path, parents: Iterable[str] = ()) -> list[str]:
    """Delete the temporary files (see :func:`_create_beside`) that a killed run left in
    ``root`` and in each folder directly inside the ``parents`` folders (relative to
    ``root``); the paths removed, relative to ``root``. A file whose process is alive is
    another run's, mid-write, and stays. No symlink below ``root`` is followed, to a
    folder or a file: folders are opened by descriptor with ``O_NOFOLLOW``, which also
    costs a rebuild less than resolving each path (some 35 us a folder)."""
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        removed = _sweep(top, "")
        for parent in parents:
            folder = _open_below(top, parent)
            if folder is None:
                continue
            try:
                with os.scandir(folder) as entries:
                    names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
                for name in names:
                    inner = _open_below(folder, name)
                    if inner is not None:
                        try:
                            removed += _sweep(inner, f"{parent}/{name}")
                        finally:
                            os.close(inner)
            finally:
                os.close(folder)
    finally:
        os.close(top)
    return removed


def _open_below(fd: int, relative: str) -> int | None:
    """A descriptor of the folder ``relative`` below the open folder ``fd``, reached
    without following a symlink; None if there is no such folder."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("..", "/") for p in parts):
        return None
    current = fd
    for part in parts:
        try:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=current)
        except OSError:  # gone, not a folder, or a symlink
            inner = None
        if current != fd:
            os.close(current)
        if inner is None:
            return None
        current = inner
    return current


def _sweep(fd: int, relative: str) -> list[str]:
    """Remove the leftovers of dead processes in the open folder ``fd``."""
    removed = []
    for name in os.listdir(fd):
        pid = _writer(name)
        if pid is None or _is_running(pid):
            continue
        try:
            if not S_ISREG(os.lstat(name, dir_fd=fd).st_mode):
                continue
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:  # another run took it first
            continue
        removed.append(f"{relative}/{name}" if relative else name)
    return removed


def _writer(name: str) -> int | None:
    """The process id in a temporary file's name ``.<name>.<pid>.<n>.tmp``; None if the
    name is not one."""
    parts = name.split(".")
    if len(parts) < 5 or parts[0] or parts[-1] != "tmp" or not (parts[-3].isdigit() and parts[-2].isdigit()):
        return None
    return int(parts[-3])


def _is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own: another thread of it (the daemon's jobs) may be writing
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except (OverflowError, ValueError):
        return False  # no process could have that id
    return True


def _create_beside(target: Path) -> tuple[int, str]:
    """A new, empty hidden file in ``target``'s folder, made by this call alone (O_EXCL):
    named by process id and a counter, where tempfile's random names would cost a rebuild
    the import of tempfile, shutil and random for one file."""
    for n in itertools.count():
        tmp = str(target.with_name(f".{target.name}.{os.getpid()}.{n}.tmp"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
        except FileExistsError:  # a killed run's leftover (see remove_leftovers), or another thread's file now
            continue
    raise AssertionError("unreachable")
