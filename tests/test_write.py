"""Writes are atomic, stay inside out/, and skip unchanged files."""

from __future__ import annotations

import gzip
import os
import resource
import signal
import threading
from pathlib import Path

import pytest

from feeds.write import (
    OutputError,
    Writes,
    compressed_copies,
    remove_leftovers,
    remove_output,
    resolve_inside,
    write_all,
    write_if_changed,
)


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


def test_files_written_on_threads_are_each_whole_with_current_copies(tmp_path: Path) -> None:
    files = {f"topics/t{n}/{name}": f"<feed n='{n}'>{name * (n + 200)}</feed>".encode()
             for n in range(12) for name in ("rss.xml", "atom.xml")} | {"feeds.opml": b"<opml/>"}
    assert write_all(tmp_path, files) == set(files)
    for relative, data in files.items():
        assert (tmp_path / relative).read_bytes() == data
        for suffix, copy in compressed_copies(relative, data).items():
            assert (tmp_path / f"{relative}{suffix}").read_bytes() == copy
    assert write_all(tmp_path, {**files, "feeds.opml": b"<opml v='2'/>"}) == {"feeds.opml"}  # only what changed
    assert not list(tmp_path.rglob(".*.tmp")) and threading.active_count() == 1


def test_a_write_that_fails_on_a_writer_thread_fails_the_call_and_leaves_no_thread(tmp_path: Path) -> None:
    files = {f"topics/t{n}/rss.xml": f"<rss n='{n}'/>".encode() for n in range(12)}
    (tmp_path / "topics/t7/rss.xml.gz").mkdir(parents=True)  # in the way of one copy
    with pytest.raises(OutputError, match=r"t7/rss\.xml\.gz"):
        write_all(tmp_path, files)
    assert threading.active_count() == 1
    assert (tmp_path / "topics/t7/rss.xml").read_bytes() == b"<rss n='7'/>"  # the file itself went first


def test_files_handed_over_one_by_one_are_written_on_threads_started_only_then(tmp_path: Path) -> None:
    """A build renders the next feed while the last is written: a thread may start only
    at the first file, since a build forks its renderers only while it has none."""
    files = {f"topics/t{n}/rss.xml": f"<rss n='{n}'>{'x' * 5000}</rss>".encode() for n in range(9)}
    with Writes(tmp_path, writers=3) as writes:
        assert threading.active_count() == 1
        for relative, data in files.items():
            writes.put(relative, data)
        assert writes.finish() == set(files)
    assert threading.active_count() == 1
    for relative, data in files.items():
        assert (tmp_path / relative).read_bytes() == data
        assert gzip.decompress((tmp_path / f"{relative}.gz").read_bytes()) == data


def test_writes_left_by_an_exception_stop_and_leave_no_thread(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a renderer failed"), Writes(tmp_path, writers=2) as writes:
        writes.put("topics/a/rss.xml", b"<rss/>")
        raise ValueError("a renderer failed")
    assert threading.active_count() == 1
    assert not list(tmp_path.rglob(".*.tmp"))


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


def test_a_removal_acts_only_inside_out_by_the_check_writes_make(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "topics/old").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "rss.xml").write_bytes(b"theirs")
    (out / "topics/linked").symlink_to(elsewhere)
    (out / "topics/old/rss.xml").write_bytes(b"ours")
    (out / "topics/old/atom.xml").symlink_to(elsewhere / "rss.xml")  # a file that points out
    for relative in ("topics/linked/rss.xml", "../elsewhere/rss.xml", str(elsewhere / "rss.xml"),
                     "topics/old/atom.xml"):
        assert not remove_output(out, relative), relative
    assert (elsewhere / "rss.xml").read_bytes() == b"theirs" and (out / "topics/old/atom.xml").is_symlink()
    (out / "topics/old/atom.xml").unlink()
    assert remove_output(out, "topics/old/rss.xml")
    assert not (out / "topics/old").exists() and (out / "topics").is_dir()  # its emptied folder goes too
    assert remove_output(out, "topics/gone/rss.xml")  # already gone: nothing to do


def test_leftovers_of_dead_processes_go_and_links_are_not_followed(tmp_path: Path) -> None:
    import subprocess
    import sys
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "topics/ai").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "topics/link").symlink_to(elsewhere)
    names = {"leftover": f".rss.xml.{dead}.0.tmp", "mine": f".rss.xml.{os.getpid()}.1.tmp",
             "not ours": ".notes.tmp", "no pid": ".rss.xml.x.0.tmp"}
    for folder in (out, out / "topics/ai", elsewhere):
        for name in names.values():
            (folder / name).write_bytes(b"half")
    (out / f".link.{dead}.0.tmp").symlink_to(elsewhere / names["leftover"])  # not a file we write: stays
    removed = remove_leftovers(out, ["topics", "nowhere", "../elsewhere"])
    assert sorted(removed) == sorted([names["leftover"], f"topics/ai/{names['leftover']}"])
    assert (out / f".link.{dead}.0.tmp").is_symlink()
    assert sorted(p.name for p in elsewhere.iterdir()) == sorted(names.values())
    assert sorted(p.name for p in (out / "topics/ai").iterdir()) == sorted(set(names.values()) - {names["leftover"]})
