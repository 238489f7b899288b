"""The only module that writes into ``out/``: atomically, only inside it, only on change."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Any

from feeds.errors import OutputError as OutputError  # defined there; exported here too


def resolve_inside(root: Path, relative: str) -> Path:
    """``root/relative``, refusing anything that would land outside ``root``: absolute
    paths, ``..`` and symlinks that point elsewhere."""
    rel = PurePosixPath(relative)
    if rel.is_absolute() or not rel.parts or any(p in ("..", "") for p in rel.parts):
        raise OutputError(f"{relative!r}: not a path inside the output folder", relative)
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise OutputError(f"{relative!r}: resolves to {target}, outside {base}", relative)
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
        raise OutputError(f"{target}: cannot read: {e.strerror or e}", target) from e
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_beside(target)
    except OSError as e:
        raise OutputError(f"{target}: cannot write: {e.strerror or e}", target) from e
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
            raise OutputError(f"{target}: cannot write: {e.strerror or e}", target) from e
        raise
    return True


# Served as they are by nginx's gzip_static/brotli_static and by `feeds serve`, so no
# request pays for compression. Text only: these are the types a build writes.
COMPRESSIBLE = (".xml", ".json", ".html", ".opml", ".txt")
# gzip by zlib-ng: for a 60 KB feed at level 6, ~0.5 ms of CPU where CPython's zlib takes
# ~0.8 ms, for 2% fewer bytes; level 9 takes 1.4x that for 2% fewer again.
GZIP_LEVEL = 6
GZIP_WBITS = 31  # zlib's window with a gzip header: no time, no file name, so the same file gives the same copy
BROTLI_QUALITY = 5  # ~0.9 ms, 6% under gzip; 4 is no smaller than gzip, 9 takes 12x the time


def compressed_copies(relative: str, data: bytes) -> dict[str, bytes]:
    """The compressed copies to keep beside ``relative``, by name suffix: gzip always,
    brotli when the ``brotli`` package is installed. Deterministic bytes: the gzip header
    carries no time and no file name, so an unchanged file gives an unchanged copy."""
    return {suffix: compress(suffix, data) for suffix in _suffixes(relative)}


def compress(suffix: str, data: bytes) -> bytes:
    """``data`` as its copy named by ``suffix`` (``.gz`` or ``.br``) holds it."""
    if suffix == ".br":
        return bytes(_brotli().compress(data, quality=BROTLI_QUALITY))
    from zlib_ng import zlib_ng  # imported here: a rebuild that writes nothing never needs it

    return zlib_ng.compress(data, GZIP_LEVEL, wbits=GZIP_WBITS)


def _brotli() -> Any:
    try:
        import brotli  # type: ignore[import-untyped]  # no stubs in the package
    except ImportError:
        return None
    return brotli


def write_output(root: Path, relative: str, data: bytes) -> bool:
    """:func:`write_if_changed`, keeping its compressed copies (:func:`compressed_copies`)
    current; True if the file itself changed.

    The file goes first and its copies after, so a copy is never older than the version
    it holds: a run killed in between leaves copies older than the file, which the next
    build writes again, and which a server must not trust (``feeds serve`` does not).
    Nothing is compressed for a file that stands unchanged with its copies."""
    changed = write_if_changed(root, relative, data)
    suffixes = _suffixes(relative)
    if suffixes and (changed or not _copies_current(root / relative, suffixes)):
        for suffix in suffixes:
            write_if_changed(root, relative + suffix, compress(suffix, data))
    return changed


WRITERS_PER_CORE = 2  # threads: each mostly waits on the disk or compresses without the GIL


def write_all(root: Path, files: Mapping[str, bytes], writers: int | None = None) -> set[str]:
    """:func:`write_output` for each file, on ``writers`` threads (default: two per core,
    this one among them); the paths of the files that changed (see :class:`Writes`)."""
    count = _writers(writers)
    if count < 2 or len(files) < 2:
        return {relative for relative, data in files.items() if write_output(root, relative, data)}
    with Writes(root, min(count, len(files))) as writes:
        for relative, data in files.items():
            writes.put(relative, data)
        return writes.finish()


class Writes:
    """:func:`write_output` for files handed over one by one (:meth:`put`), on ``writers``
    threads (default: two per core, the caller's among them at :meth:`finish`), while the
    caller goes on making the next ones: a build renders a feed while the last one is
    written and compressed.

    Each write waits for the disk (fsync) and each file's copies take ~2 ms of
    compressing, more than the write itself; zlib, brotli and the waits all let go of the
    GIL. So a build that writes a feed and its two copies, three fsyncs where one was,
    spreads them over threads: the disk takes concurrent syncs in one commit, and the
    files compress on every core. Each file is still written before its copies.

    The helper threads start at the first :meth:`put`, not before: a build decides
    whether to fork its renderers by whether it has threads. No thread outlives the
    ``with`` block; the first error stops the writes not yet begun and is raised by
    :meth:`finish`. Leaving the block by an exception drops the writes not yet begun."""

    def __init__(self, root: Path, writers: int | None = None) -> None:
        self.root = root
        self.count = _writers(writers)
        self.changed: list[str] = []  # list.append holds the GIL: safe across threads
        self.errors: list[BaseException] = []
        self.helpers: list[Any] = []
        self.jobs: Any = None  # a SimpleQueue of (relative, data), None to stop a helper

    def __enter__(self) -> Writes:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.errors.append(RuntimeError("not written: the caller failed"))  # the rest is dropped
        self._stop()

    def put(self, relative: str, data: bytes) -> None:
        """Write ``data`` to ``root/relative`` (and its copies), now or soon."""
        if self.count < 2:
            self._write(relative, data)
            return
        if self.jobs is None:
            import threading
            from _queue import SimpleQueue  # the C queue: queue.py's imports are not needed

            self.jobs = SimpleQueue()
            self.helpers = [threading.Thread(target=self._help, name="feeds-writer", daemon=True)
                            for _ in range(self.count - 1)]
            for thread in self.helpers:
                thread.start()
        self.jobs.put((relative, data))

    def finish(self) -> set[str]:
        """Write what no helper has taken yet (in this thread too), wait for the helpers;
        the paths of the files that changed."""
        from _queue import Empty

        try:
            while self.jobs is not None and not self.errors:
                try:
                    relative, data = self.jobs.get_nowait()
                except Empty:  # all taken
                    break
                self._write(relative, data)
        finally:
            self._stop()
        if self.errors:
            raise self.errors[0]
        return set(self.changed)

    def _help(self) -> None:
        while (job := self.jobs.get()) is not None:
            self._write(*job)

    def _write(self, relative: str, data: bytes) -> None:
        if self.errors:
            return
        try:
            if write_output(self.root, relative, data):
                self.changed.append(relative)
        except BaseException as e:  # raised in the calling thread, by finish()
            self.errors.append(e)

    def _stop(self) -> None:
        for _ in self.helpers:
            self.jobs.put(None)  # after every job already queued: those are written (or dropped) first
        for thread in self.helpers:
            thread.join()
        self.helpers = []


def _writers(writers: int | None) -> int:
    return (os.cpu_count() or 1) * WRITERS_PER_CORE if writers is None else writers


def _copies_current(target: Path, suffixes: tuple[str, ...]) -> bool:
    try:
        mtime = target.stat().st_mtime_ns
        return all(target.with_name(target.name + suffix).stat().st_mtime_ns >= mtime for suffix in suffixes)
    except OSError:
        return False


def copies_of(relative: str) -> list[str]:
    """The compressed copies written beside ``relative`` (``x.xml.gz``, ``x.xml.br``)."""
    return [relative + suffix for suffix in _suffixes(relative)]


def _suffixes(relative: str) -> tuple[str, ...]:
    if not relative.endswith(COMPRESSIBLE):
        return ()
    return (".gz", ".br") if _brotli() is not None else (".gz",)


def remove_output(root: Path, relative: str) -> bool:
    """Delete ``root/relative`` (a file this tool wrote), its compressed copies, and its
    folder if that is left empty. False, and nothing touched, if the path would lead outside ``root`` by the
    check every write makes (:func:`resolve_inside`): a folder under ``root`` that is a
    symlink to somewhere else is never followed."""
    folder_name, _, name = relative.rpartition("/")
    try:
        resolve_inside(root, relative)
        folder = resolve_inside(root, folder_name) if folder_name else root.resolve()
    except OutputError:
        return False
    for victim in (name, f"{name}.gz", f"{name}.br"):
        try:
            os.unlink(folder / victim)  # a symlink that is the file itself goes, not what it names
        except FileNotFoundError:
            pass
        except IsADirectoryError:  # no file of ours (a hand-edited manifest): left alone, not the end
            return False           # of every build to come
        except OSError as e:
            raise OutputError(f"{folder / victim}: cannot remove: {e.strerror or e}", folder / victim) from e
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


def remove_leftovers_below(root: Path, folder: str, depth: int, before: float) -> list[str]:
    """Delete the temporary files a killed run left in ``root/folder`` and in the folders
    up to ``depth`` levels below it (the digest's ``outbox/<date>/``, ``newsletter/<date>/
    <topics>/``); the paths removed, relative to ``root``. As :func:`remove_leftovers`:
    only names of the temporary pattern, of a process that is gone, never through a
    symlink; and only files last changed before ``before`` (the run's start, in
    ``time.time()`` seconds), so nothing this run or a newer one writes is touched."""
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        start = _open_below(top, folder)
    finally:
        os.close(top)
    return [] if start is None else _sweep_tree(start, folder, depth, before)


def _sweep_tree(fd: int, relative: str, depth: int, before: float) -> list[str]:
    """:func:`_sweep` the open folder ``fd`` and its folders ``depth`` levels down; closes ``fd``."""
    try:
        removed = _sweep(fd, relative, before)
        if depth > 0:
            with os.scandir(fd) as entries:
                names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
            for name in names:
                inner = _open_below(fd, name)
                if inner is not None:
                    removed += _sweep_tree(inner, f"{relative}/{name}", depth - 1, before)
    finally:
        os.close(fd)
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


def _sweep(fd: int, relative: str, before: float | None = None) -> list[str]:
    """Remove the leftovers of dead processes in the open folder ``fd`` (last changed
    before ``before``, if given)."""
    removed = []
    for name in os.listdir(fd):
        pid = _writer(name)
        if pid is None or _is_running(pid):
            continue
        try:
            found = os.lstat(name, dir_fd=fd)
            if not S_ISREG(found.st_mode) or (before is not None and found.st_mtime >= before):
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
