"""Knowing, in a few milliseconds, that a build would change nothing.

After each build, ``out/.feeds-build.json`` records a fingerprint of everything the output
depends on (each record file's size and mtime, the config, the templates, this code and
the versions of the libraries that shape the output: see :func:`package_fingerprint`) and
the span of clock time in which the same inputs give the same output: from the build's
``now`` until the next record published in the future becomes visible (or an article ages
past ``max_age_days``). A rebuild that finds the same fingerprint, a clock inside that span
and every output file in place has nothing to do, and stops before parsing anything.

Only the standard library is used, so the check runs before the heavy imports.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from stat import S_ISDIR, S_ISLNK
from typing import Any, NamedTuple

from feeds.config import Config
from feeds.errors import RecordError, RecordNotice
from feeds.report import BuildReport

NAME = ".feeds-build.json"  # a dotfile: `feeds serve` never serves it
VERSION = 1
_PACKAGE = Path(__file__).resolve().parent


RECORD_SUFFIXES = (".md", ".markdown")
class Scanned(list[tuple[str, int, int]]):
    """Record files as :func:`scan` found them: (path under the folder as given, size,
    mtime_ns), and in ``misnamed`` the paths of record files and folders whose names are
    not UTF-8. Those cannot be named in a feed, a message or the parse cache, so they are
    left out, and the build reports each (see :func:`printable`); so are the symbolic
    links by a record file's name that lead nowhere, in ``dangling``."""

    misnamed: list[str]
    dangling: list[str]

    def __init__(self, *args: Iterable[tuple[str, int, int]]) -> None:
        super().__init__(*args)
        self.misnamed = []
        self.dangling = []


def printable(path: str) -> str:
    """A path whose name is not UTF-8 (Python holds such bytes as lone surrogates), with
    those bytes written as ``\\xe9``: what a message or a JSON file can carry."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan(folder: Path) -> Scanned:
    """Every record file below ``folder`` with its size and mtime, in path order (by path
    components, as :class:`~pathlib.Path` sorts), so every run reads them in one order.

    Hidden files and folders (``.git``, editor swap files) are not records; symbolic links
    to folders are not followed. One walk serves the fingerprint and the parse cache.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = Scanned()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _scan_into(str(folder), fd, found)
    finally:
        os.close(fd)
    return found


def _scan_into(folder: str, fd: int, found: Scanned) -> None:
    # Names sorted, each sub-folder in its turn: Path's order (component by component)
    # without a sort key per file. Each name is looked up relative to its open folder
    # (no walk down the whole path per file) and plain names sort quicker than DirEntry
    # objects: 10,000 files take some 35 ms here, against 50 through os.scandir.
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    append = found.append
    for name in sorted(os.listdir(fd)):
        if name.startswith("."):
            continue
        try:
            stat = os.lstat(name, dir_fd=fd)
        except OSError:  # gone since listed
            continue
        if S_ISDIR(stat.st_mode):
            if not _is_utf8(name):
                found.misnamed.append(prefix + name + os.sep)
                continue
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            except FileNotFoundError:  # gone since listed
                continue
            except OSError as e:  # not ours to read: say which folder, by its whole path
                raise OSError(e.errno, e.strerror, prefix + name) from e
            try:
                _scan_into(prefix + name, inner, found)
            finally:
                os.close(inner)
        elif name.endswith(RECORD_SUFFIXES):
            if S_ISLNK(stat.st_mode):  # a link to a record file is a record
                try:
                    stat = os.stat(name, dir_fd=fd)
                except OSError:  # dangling: an unreadable record file, to report as one
                    found.dangling.append(prefix + name)
                    continue
            if not name.isascii() and not _is_utf8(name):  # most names are ASCII: no call for them
                found.misnamed.append(prefix + name)
                continue
            # The later of mtime and ctime: touch -r, cp -p or an unpacked backup can give new
            # bytes the old size and mtime, never the old ctime (which no one can set). Not
            # max(): a call per record file costs a no-change rebuild more than this.
            mtime_ns, ctime_ns = stat.st_mtime_ns, stat.st_ctime_ns
            append((prefix + name, stat.st_size, ctime_ns if ctime_ns > mtime_ns else mtime_ns))


def fingerprint(config: Config, seeds: Path, templates: Path, scanned: Scanned | None = None) -> str:
    """A hash of every input of a build: the config, each record file's path, size and
    mtime (``scanned``, or a fresh :func:`scan`), the templates and this code."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in asdict(config).items() if k not in ("secret", "smtp", "source")}
    digest.update(json.dumps(settings, default=str, sort_keys=True).encode())
    digest.update(str(seeds.resolve()).encode("utf-8", "surrogateescape"))
    if scanned is None:
        scanned = scan(seeds)
    digest.update("".join(f"{path}\0{size}\0{mtime_ns}\n" for path, size, mtime_ns in scanned).encode())
    digest.update("".join(f"{path}\n" for path in (*scanned.misnamed, *scanned.dangling))
                  .encode("utf-8", "surrogateescape"))
    digest.update(code_fingerprint(templates).encode())
    return digest.hexdigest()


def code_fingerprint(templates: Path) -> str:
    """A hash of what turns records into files: the templates by content, and
    :func:`package_fingerprint`."""
    digest = hashlib.sha256(package_fingerprint().encode())
    _hash_tree(digest, str(templates), (".html", ".mjml", ".txt"))
    return digest.hexdigest()


# Besides our own code, what shapes a parse or an output file: these distributions'
# versions (feeds' own too: a release may change nothing but its data files). rapidfuzz
# decides which near-identical titles are one story (feeds.select.similar_groups).
LIBRARIES = ("feeds", "feedgen", "lxml", "jinja2", "mjml-python", "pyyaml", "nh3", "rapidfuzz")


@functools.cache  # once per process: the code it describes is the code this process runs
def package_fingerprint() -> str:
    """A hash of this package's code by content (not mtime: a checkout or a reinstall of
    the same code changes nothing, an edit changes it), Python's version and the installed
    versions of :data:`LIBRARIES`. Parse-cache entries and outputs made under another
    fingerprint are not trusted.

    Reading and hashing the code (~430 KB) costs each build ~2 ms, a no-change rebuild's
    fiftieth, so the last build's manifest remembers it by :func:`package_stamp` (see
    :func:`remember_package`): with the same stamp, no file of the package can have
    changed, and the content is not read again."""
    stamp = package_stamp()
    _STAMP[:] = [stamp.digest] if stamp is not None else []
    if stamp is not None and _REMEMBERED.get(stamp.digest) is not None:
        return _REMEMBERED[stamp.digest]
    started = time.time_ns()
    digest = hashlib.sha256(f"{sys.version}\n{library_versions()!r}\n".encode())
    for relative, path in _package_files():
        _hash_file(digest, relative, path)
    fingerprint = digest.hexdigest()
    # Remembered only if no file changed while it was read, and the newest is older than
    # the read by more than a clock tick of the filesystem ("racy git"): an edit after the
    # read then always gives a newer ctime, and another stamp, even on a coarse clock.
    if stamp is not None and package_stamp() == stamp and stamp.newest_ns < started - RACY_NS:
        _TRUSTED[stamp.digest] = fingerprint
    return fingerprint


RACY_NS = 2_000_000_000  # FAT's 2 s; ext4, XFS and APFS tick in nanoseconds or jiffies
_REMEMBERED: dict[str, str] = {}  # stamp digest -> fingerprint, as the last build's manifest has them
_TRUSTED: dict[str, str] = {}  # stamp digest -> fingerprint, hashed by this process: for the next manifest
_STAMP: list[str] = []  # the stamp package_fingerprint() last found, if any


class Stamp(NamedTuple):
    digest: str  # a hash of every package file's name, size, inode, mtime and ctime, and the versions
    newest_ns: int  # the latest mtime or ctime among them


def package_stamp() -> Stamp | None:
    """What identifies this package's files without reading them: each one's name, size,
    device, inode, mtime and ctime (no one can set a ctime: any write or replacement moves
    it), with Python's version and :data:`LIBRARIES`' versions. None if a file cannot be
    looked at (then the content is hashed every time)."""
    digest = hashlib.sha256(f"{sys.version}\n{library_versions()!r}\n".encode())
    newest = 0
    try:
        for relative, path in _package_files():
            st = os.stat(path)
            digest.update(f"{relative}\0{st.st_size}\0{st.st_dev}\0{st.st_ino}\0"
                          f"{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode())
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        return None
    return Stamp(digest.hexdigest(), newest)


def remember_package(remembered: object) -> None:
    """Take the stamp and fingerprint a manifest keeps (see :func:`package_fingerprint`)."""
    if isinstance(remembered, dict) and isinstance(remembered.get("stamp"), str) \
            and isinstance(remembered.get("fingerprint"), str):
        _REMEMBERED[remembered["stamp"]] = remembered["fingerprint"]


def remembered_package() -> dict[str, str] | None:
    """The stamp and fingerprint for the next build's manifest to keep, if trustworthy."""
    package_fingerprint()  # once per process: what it found
    if not _STAMP:
        return None
    fingerprint = _TRUSTED.get(_STAMP[0]) or _REMEMBERED.get(_STAMP[0])
    return {"stamp": _STAMP[0], "fingerprint": fingerprint} if fingerprint else None


def _package_files() -> list[tuple[str, str]]:
    """The package's files that :func:`package_fingerprint` hashes: (name relative to the
    package, path), in the order it hashes them."""
    found: list[tuple[str, str]] = []
    _list_tree(found, str(_PACKAGE), (".py", ".html", ".mjml", ".txt"))
    return found


def _hash_tree(digest: Any, folder: str, suffixes: tuple[str, ...]) -> None:
    found: list[tuple[str, str]] = []
    _list_tree(found, folder, suffixes)
    for relative, path in found:
        _hash_file(digest, relative, path)


def _hash_file(digest: Any, relative: str, path: str) -> None:
    # Each name with its length, relative to the folder (a checkout elsewhere is the same code).
    with open(path, "rb") as f:
        data = f.read()
    digest.update(f"{relative}\0{len(data)}\0".encode())
    digest.update(data)


def _list_tree(found: list[tuple[str, str]], folder: str, suffixes: tuple[str, ...], relative: str = "") -> None:
    # Names in sorted order, sub-folders in their turn.
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith((".", "__pycache__")):
            continue
        if entry.is_dir():
            _list_tree(found, entry.path, suffixes, f"{relative}{entry.name}/")
        elif entry.name.endswith(suffixes):
            found.append((f"{relative}{entry.name}", entry.path))


def library_versions() -> dict[str, str | None]:
    """Each of :data:`LIBRARIES`' installed version (None: not installed), as
    ``importlib.metadata.version`` finds it: the first ``<name>-<version>.dist-info`` (or
    ``.egg-info``) folder along ``sys.path``. Read from the folders' names, since
    importlib.metadata costs some 30 ms of imports and look-ups, a no-change rebuild's
    quarter, and importing the libraries themselves more."""
    wanted = {_normalise(name): name for name in LIBRARIES}
    found: dict[str, str | None] = dict.fromkeys(LIBRARIES)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # not a folder (a zip), or gone
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            project, _, version = name.rpartition(".")[0].partition("-")
            key = wanted.get(_normalise(project))
            if key is None or found[key] is not None:
                continue  # not ours, or an earlier entry of sys.path wins, as for imports
            # An egg-info may say "6.0-py3.11": the version is what comes before its tag.
            found[key] = version.partition("-")[0] or _metadata_version(os.path.join(entry or ".", name))
    return found


def _normalise(project: str) -> str:
    # PEP 503 names: "Jinja2", "jinja2"; "mjml-python", "mjml_python" (PEP 427 escapes "-").
    return project.lower().replace("-", "_").replace(".", "_")


def _metadata_version(folder: str) -> str | None:
    """The Version field of a metadata folder whose name has none (a development egg-info)."""
    for file in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, file), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Version:"):
                        return line.partition(":")[2].strip()
                    if not line.strip():
                        break  # the headers are over
        except OSError:
            continue
    return None


def content_digest(code: str, value: object) -> str:
    """A hash of what one feed will hold and of the code that renders it: equal digests
    mean equal files, so an unchanged topic need not be rendered again."""
    return hashlib.sha256(code.encode() + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


def previous_contents(out: Path) -> dict[str, str]:
    """Feed slug -> content digest, as the last build left them."""
    data = read(out)
    contents = data.get("contents") if data else None
    return contents if isinstance(contents, dict) else {}


def previous_outputs(out: Path) -> set[str]:
    """The files under out/ the last build wrote or kept."""
    data = read(out)
    outputs = data.get("outputs") if data else None
    return set(outputs) if isinstance(outputs, dict) else set()


def read(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


class Precheck(NamedTuple):
    """What a build looks at first: the record files, the fingerprint of every input,
    and the last build's report if that build stands (nothing to do)."""

    scanned: Scanned
    inputs: str
    report: BuildReport | None


def precheck(config: Config, seeds: Path, out: Path, now: datetime, *, use_cache: bool = True) -> Precheck:
    """The no-change shortcut, in one place for the CLI (which calls it before importing
    the library) and :func:`feeds.api.build`: scan, fingerprint, and check the manifest."""
    from feeds.paths import templates_dir

    scanned = scan(seeds)
    last = read(out) if use_cache else None
    if last is not None:
        remember_package(last.get("package"))  # the code's fingerprint, unread if no file moved
    inputs = fingerprint(config, seeds, templates_dir(), scanned)
    return Precheck(scanned, inputs, check(inputs, out, now, last) if use_cache else None)


def check(inputs: str, out: Path, now: datetime, manifest: dict[str, Any] | None = None) -> BuildReport | None:
    """The report of the last build if a build now, with these inputs, would write
    nothing; otherwise None. ``manifest``: the last build's, if just read."""
    manifest = manifest or read(out)
    if manifest is None or manifest.get("inputs") != inputs:
        return None
    try:
        valid_from = datetime.fromisoformat(manifest["valid_from"])
        valid_until = datetime.fromisoformat(manifest["valid_until"]) if manifest["valid_until"] else None
        outputs: dict[str, int] = manifest["outputs"]
        last: dict[str, Any] = manifest["report"]
        copies: list[str] = manifest.get("copies", [])
    except (KeyError, TypeError, ValueError):
        return None
    if now < valid_from or (valid_until is not None and now >= valid_until):
        return None
    for relative, size in outputs.items():
        try:
            if (out / relative).stat().st_size != size:
                return None  # a file was deleted or edited by hand: build it again
        except OSError:
            return None
    root = str(out)
    for copy in copies:  # a .gz/.br copy deleted by hand: one stat each (~0.3 ms at 10k records)
        try:
            os.stat(f"{root}/{copy}")
        except OSError:
            return None
    return BuildReport(
        records=last["records"],
        parsed=0,
        articles=last["articles"],
        duplicates=last["duplicates"],
        skipped=tuple(RecordError(Path(p), r) for p, r in last["skipped"]),
        topic_errors=tuple(RecordError(Path(p), r) for p, r in last["topic_errors"]),
        notes=tuple(RecordNotice(Path(p), r) for p, r in last["notes"]),
        topics=tuple(last["topics"]),
        written=(),
        unchanged=tuple(outputs),
        assumed=last.get("assumed", 0),
        neutral_quality=last.get("neutral_quality"),
        similar=last.get("similar", 0),
    )


def save(out: Path, *, inputs: str, valid_from: datetime, valid_until: datetime | None,
         report: BuildReport, outputs: dict[str, int], contents: dict[str, str]) -> None:
    """Record what the build that just finished depended on (atomically, like every file)."""
    from feeds.write import copies_of, write_if_changed

    data = {
        "version": VERSION,
        "inputs": inputs,
        "valid_from": valid_from.isoformat(),
        "valid_until": valid_until.isoformat() if valid_until else None,
        "outputs": dict(sorted(outputs.items())),
        "contents": dict(sorted(contents.items())),
        "package": remembered_package(),
        "report": {
            "records": report.records,
            "articles": report.articles,
            "duplicates": report.duplicates,
            "skipped": [[str(e.path), e.reason] for e in report.skipped],
            "topic_errors": [[str(e.path), e.reason] for e in report.topic_errors],
            "notes": [[str(n.path), n.reason] for n in report.notes],
            "topics": list(report.topics),
            "assumed": report.assumed,
            "neutral_quality": report.neutral_quality,
            "similar": report.similar,
        },
    }
    data["copies"] = [copy for relative in sorted(outputs) for copy in copies_of(relative)]
    write_if_changed(out, NAME, (json.dumps(data, indent=1) + "\n").encode())
