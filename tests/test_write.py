"""Writes are atomic, stay inside out/, and skip unchanged files."""

from __future__ import annotations

import os
import resource
import signal
import threading
from pathlib import Path

import pytest

from feeds.write import OutputError, resolve_inside, write_if_changed


def test_a_concurrent_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    versions = [bytes([65 + i]) * 3_000_000 for i in range(2)]  # large enough to take many writes
    write_if_changed(tmp_path, "topics/ai/rss.xml", versions[0])
    target = tmp_path / "topics/ai/rss.xml"
    seen: set[bytes] = set()
    done = threading.Event()

    def read_constantly() -> None:
        while not done.is_set():
            data = target.read_bytes()
            seen.add(data[:1] + data[-1:] + str(len(data)).encode())
            assert data in versions

    reader = threading.Thread(target=read_constantly)
    reader.start()
    try:
        for n in range(40):
            assert write_if_changed(tmp_path, "topics/ai/rss.xml", versions[(n + 1) % 2])
    finally:
        done.set()
        reader.join()
    assert seen <= {b"AA3000000", b"BB3000000"}
    assert [p.name for p in target.parent.iterdir()] == ["rss.xml"]  # no temporary files left


def test_unchanged_bytes_are_not_written(tmp_path: Path) -> None:
    assert write_if_changed(tmp_path, "a/b.xml", b"<x/>")
    before = (tmp_path / "a/b.xml").stat()
    assert not write_if_changed(tmp_path, "a/b.xml", b"<x/>")
    after = (tmp_path / "a/b.xml").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


@pytest.mark.parametrize("relative", ["../x.xml", "topics/../../x.xml", "/etc/x.xml", ""])
def test_paths_outside_out_are_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(OutputError):
        write_if_changed(tmp_path / "out", relative, b"x")
    assert list(tmp_path.rglob("*.xml")) == []


def test_a_symlink_inside_out_cannot_lead_outside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "topics").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", out / "topics" / "evil")
    with pytest.raises(OutputError, match="outside"):
        resolve_inside(out, "topics/evil/rss.xml")
    assert resolve_inside(out, "topics/ai/rss.xml") == (out / "topics/ai/rss.xml").resolve()


def test_a_write_that_fails_half_way_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """A real short write: the file-size limit stops the data half way, as a full disk would."""
    write_if_changed(tmp_path, "f/a.xml", b"old")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OutputError, match="cannot write"):
            write_if_changed(tmp_path, "f/a.xml", b"n" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert (tmp_path / "f/a.xml").read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["a.xml"]


def test_a_failed_rename_leaves_the_old_file_whole_and_no_temp_file(tmp_path: Path) -> None:
    write_if_changed(tmp_path, "f/a.xml", b"old")
    (tmp_path / "f/b.xml").mkdir()  # a folder where the file should go: rename must fail
    with pytest.raises(OutputError, match="cannot write"):
        write_if_changed(tmp_path, "f/b.xml", b"new")
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["a.xml", "b.xml"]
    assert (tmp_path / "f/a.xml").read_bytes() == b"old"


def test_a_crashed_runs_leftover_temp_file_neither_blocks_nor_is_taken(tmp_path: Path) -> None:
    # Temporary names are the process id and a counter: a leftover under this very name
    # (a crashed run that had our pid) must not stop the write, nor be renamed into place.
    (tmp_path / "f").mkdir()
    leftover = tmp_path / f"f/.a.xml.{os.getpid()}.0.tmp"
    leftover.write_bytes(b"half a fe")
    assert write_if_changed(tmp_path, "f/a.xml", b"whole")
    assert (tmp_path / "f/a.xml").read_bytes() == b"whole"
    assert (tmp_path / "f/a.xml").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [leftover.name, "a.xml"]
    assert leftover.read_bytes() == b"half a fe"
