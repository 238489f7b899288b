"""The parse cache: parse only the record files that changed since the last run, and
read whole Articles only for the stories a changed feed shows.

Each record file's result is kept in a local SQLite file (``cache_db``), keyed by the
file's resolved path: its size, mtime and content hash with a :class:`~feeds.model.Summary`
(what ranking needs), the file's error and notes in one table, and the pickled Article in
another. A build reads every Summary, which is cheap (the Articles, twenty times their size,
are not on the pages it reads), and only the Articles it renders. When size or mtime
differ, the content hash decides (a ``touch`` or a checkout that rewrites a file unchanged
costs a read, not a parse).

The cache trusts nothing it did not make itself: it keeps the fingerprint of the code and
libraries that filled it (:func:`~feeds.manifest.package_fingerprint`) and starts again
empty under any other. A damaged file (SQLite's "database disk image is malformed", an
entry that does not unpickle) is set aside as ``<name>.corrupt`` for an operator to look
at, with one warning, and the build goes on with a new one. A cache that cannot be used
at all (locked, read-only, a full disk) is an error that names its file.

The cache is the standard library's sqlite3, not the state database: it is local to the
machine that builds, may be deleted at any time, and a rebuild after one changed record
must not pay for importing a database toolkit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from feeds.errors import CacheError as CacheError  # defined there; exported here too
from feeds.errors import RecordError, RecordNotice
from feeds.load import Loaded, load_records, read_bytes
from feeds.manifest import Scanned, package_fingerprint
from feeds.model import Article, Summary

if TYPE_CHECKING:
    import jinja2

log = logging.getLogger(__name__)

T = TypeVar("T")

PARALLEL_AFTER = 400  # files to parse; fewer are quicker in-process than with workers
BATCH = 64

Progress = Callable[[int, int], None]  # (done, total)


class CacheDamaged(Exception):
    """An entry of the cache cannot be read back: the file is damaged."""


def is_damage(error: BaseException) -> bool:
    """Whether ``error`` says the cache's file is damaged ("database disk image is
    malformed", "file is not a database"), rather than that it cannot be used now
    (OperationalError: locked, read-only, full) or that our SQL is wrong."""
    if isinstance(error, CacheDamaged):
        return True
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(
        error, sqlite3.OperationalError | sqlite3.ProgrammingError)


class Entry(NamedTuple):
    """One record file as the last parse of its bytes left it (a named tuple: a build
    makes one per record file)."""

    name: str  # the file's path as found under the folder the caller gave
    key: str  # the resolved path: the cache's key
    sha256: str
    summary: Summary | None  # None: the file was skipped, for ``error``
    error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return Path(self.name)

    @property
    def loaded_error(self) -> RecordError | None:
        return RecordError(self.path, self.error) if self.error is not None else None

    @property
    def record_notes(self) -> tuple[RecordNotice, ...]:
        return tuple(RecordNotice(self.path, n) for n in self.notes)


@dataclass
class Index:
    """Every record file under a folder, in path order, and how many were parsed now."""

    entries: list[Entry]
    parsed: int = 0
    fresh: dict[str, bytes] = field(default_factory=dict)  # key -> payload parsed in this run
    max_bytes: int = 0  # larger record files were skipped: a file parsed again is read as the index read it


# A parsed file: key, size, mtime_ns, sha256, payload (pickled Article, or None when the
# bytes are the cached ones), summary (pickled Summary, error and notes).
Parsed = tuple[str, int, int, str, bytes | None, bytes | None]


def _summarise(loaded: Loaded, key: str) -> tuple[bytes, bytes]:
    """The payload and the summary blob of one file's result (the Summary as a plain
    tuple, which unpickles faster than any class)."""
    article = loaded.article
    summary = tuple(article.summary(key)) if article is not None else None
    reason = loaded.error.reason if loaded.error else None
    notes = tuple(n.reason for n in loaded.notes)
    return (pickle.dumps(article, protocol=pickle.HIGHEST_PROTOCOL),
            pickle.dumps((summary, reason, notes), protocol=pickle.HIGHEST_PROTOCOL))


def parse_batch(batch: Sequence[tuple[str, str | None]], max_bytes: int) -> list[Parsed]:
    """Parse record files (a worker's unit of work). ``batch`` pairs each key with the
    content hash the cache has for it: an equal hash means the file did not really change,
    and it is not parsed (payload None). Stage by stage over the batch, like load_records."""
    results: list[Parsed | None] = []
    todo: list[tuple[Path, bytes]] = []
    where: list[tuple[int, str, os.stat_result, str]] = []
    for key, expected in batch:
        path = Path(key)
        try:
            stat, data = read_bytes(path, max_bytes)
        except RecordError as e:  # not cached (no hash): tried again next time
            results.append((key, -1, -1, "", *_summarise(Loaded(path, error=e), key)))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest == expected:
            results.append((key, stat.st_size, max(stat.st_mtime_ns, stat.st_ctime_ns), digest, None, None))
            continue
        where.append((len(results), key, stat, digest))
        todo.append((path, data))
        results.append(None)
    for (index, key, stat, digest), loaded in zip(where, load_records(todo), strict=True):
        results[index] = (key, stat.st_size, max(stat.st_mtime_ns, stat.st_ctime_ns), digest,  # as scan()
                          *_summarise(loaded, key))
    return [r for r in results if r is not None]


def parse_all(todo: Sequence[tuple[str, str | None]], max_bytes: int) -> Iterator[Parsed]:
    """:func:`parse_batch` over everything, in order, on every core when there is enough
    to do. Workers are forked while this process has one thread (fast), started fresh when
    it has more (the daemon), since forking a threaded process can deadlock."""
    if len(todo) < PARALLEL_AFTER or (os.cpu_count() or 1) < 2:
        yield from parse_batch(todo, max_bytes)
        return
    # Only here: ~10 ms of imports a small rebuild need not pay.
    from feeds.workers import worker_pool

    method = "fork" if threading.active_count() == 1 else "spawn"
    batches = [todo[i:i + BATCH] for i in range(0, len(todo), BATCH)]
    with worker_pool(min(os.cpu_count() or 2, 8), method) as pool:
        for results in pool.map(parse_batch, batches, [max_bytes] * len(batches)):
            yield from results


@dataclass(frozen=True)
class _Remembered:
    """A folder's last index, as :meth:`RecordCache.index` left it: only references to what
    it made anyway (a command that builds once pays nothing per record for it); the rows
    are made from them if the process indexes the folder again."""

    generation: str  # the cache's, when this index was taken
    scanned: Scanned
    keys: list[str]
    slots: list[Entry | None]  # in scanned's order (None only while an index is being made)
    moved: dict[str, tuple[int, int]]  # key -> size, mtime_ns where the file was read since the scan

    def rows(self) -> dict[str, tuple[int, int, str, bytes | Entry]]:
        moved = self.moved
        return {key: (*moved.get(key, (size, mtime_ns)), entry.sha256, entry)
                for (_, size, mtime_ns), key, entry in zip(self.scanned, self.keys, self.slots, strict=True)
                if entry is not None and entry.sha256}  # an unreadable file is not cached


# A process that builds again and again (the daemon) keeps each folder's last index here,
# by cache file and folder: while no one has written the cache since (its generation, a
# token every write sets, is the one remembered), its rows are the remembered ones, and
# reading and unpickling them again (~50 ms at 10,000 records) is skipped.
_MEMORY: dict[tuple[str, str], _Remembered] = {}


class RecordCache:
    """The parse cache in ``path``; with None, one that keeps nothing (``--no-cache``)."""

    def __init__(self, path: Path | None) -> None:
        self.file = path
        self.db = _connect(path)
        self.path = str(path.resolve()) if path is not None else None
        self.opened = _identity(path)

    def __enter__(self) -> RecordCache:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.db.close()

    def _guarded(self, step: Callable[[], T]) -> T:
        """``step()`` on this cache; if the file proves damaged, it is set aside and
        ``step()`` runs again on a new, empty one. A file that cannot be used is a
        :class:`CacheError` naming it."""
        try:
            try:
                return step()
            except (sqlite3.DatabaseError, CacheDamaged) as e:
                if self.file is None or not is_damage(e):
                    raise
                self.db.close()
                self.db = _start_again(self.file, e, self.opened)
                self.opened = _identity(self.file)
                return step()
        except sqlite3.OperationalError as e:
            raise CacheError(self.file or Path(":memory:"), e) from e

    def index(self, folder: Path, scanned: Scanned, max_bytes: int,
              progress: Progress | None = None) -> Index:
        """An Entry for every scanned file (paths under ``folder``, as the caller gave
        them): from the cache where size and mtime match, parsed (in parallel) where
        not. Entries of files under ``folder`` that are gone are dropped. A process that
        indexes the folder again reuses its last index while no one has written the cache
        since (see ``_MEMORY``)."""
        return self._guarded(lambda: self._index(folder, scanned, max_bytes, progress))

    def _index(self, folder: Path, scanned: Scanned, max_bytes: int, progress: Progress | None) -> Index:
        resolved = str(folder.resolve())
        given = len(str(folder))
        keys = [resolved + name[given:] for name, _, _ in scanned]  # resolve() per file costs
        prefix = resolved + os.sep
        generation = self._generation()
        cached = self._cached_rows(prefix, generation)
        slots, todo, where = _match(scanned, keys, cached)  # takes the matched rows out of cached
        if progress:
            progress(len(scanned) - len(todo), len(scanned))
        index = Index([], max_bytes=max_bytes)
        # One transaction: the cache never holds half a build's changes.
        with self.db:
            moved = self._parse_changed(scanned, todo, where, slots, index, progress)
            gone = [(k,) for k in cached]  # the rows no scanned file matched: files gone
            self.db.executemany("DELETE FROM files WHERE path = ?", gone)
            self.db.executemany("DELETE FROM articles WHERE path = ?", gone)
            if todo or gone or generation is None:  # the cache is not what other processes remember
                generation = os.urandom(8).hex()
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (generation,))
        index.entries = [e for e in slots if e is not None]
        if self.path is not None:
            _MEMORY[(self.path, prefix)] = _Remembered(generation, scanned, keys, slots, moved)
        return index

    # The steps of _index(), in the order it takes them.

    def _generation(self) -> str | None:
        """The token the last write to this cache set (None: none yet)."""
        row = self.db.execute("SELECT value FROM meta WHERE name = 'generation'").fetchone()
        return str(row[0]) if row is not None else None

    def _cached_rows(self, prefix: str, generation: str | None) -> dict[str, tuple[int, int, str, bytes | Entry]]:
        """Key -> size, mtime_ns, sha256 and the summary blob (or the Entry made of it) of
        every file the cache has under ``prefix``: as this process remembers them while no
        one has written the cache since it did, else read from the cache."""
        memory = _MEMORY.get((self.path, prefix)) if self.path is not None else None
        if memory is not None and generation is not None and memory.generation == generation:
            return memory.rows()
        return {row[0]: row[1:] for row in self.db.execute(
            "SELECT path, size, mtime_ns, sha256, summary FROM files WHERE path >= ? AND path < ?",
            (prefix, prefix[:-1] + chr(ord(os.sep) + 1)))}

    def _parse_changed(self, scanned: Scanned, todo: list[tuple[str, str | None]], where: dict[str, int],
                       slots: list[Entry | None], index: Index,
                       progress: Progress | None) -> dict[str, tuple[int, int]]:
        """Read the files :func:`_match` could not (in parallel when many), fill their
        ``slots``, keep what was parsed in ``index`` and the cache, and return each one's
        size and mtime as read. Rows go in as results come, while the workers parse on,
        rather than all at the end; a file whose bytes the cache has (only its size or
        mtime moved) is not parsed, and only its size and mtime are updated."""
        moved: dict[str, tuple[int, int]] = {}
        changed: list[tuple[str, int, int, str, bytes, bytes]] = []
        restat: list[tuple[int, int, str]] = []
        for done, parsed in enumerate(parse_all(todo, index.max_bytes), 1):
            key, size, mtime_ns, digest, payload, summary = parsed
            name = scanned[where[key]][0]
            if summary is None:  # the bytes the cache has: only size or mtime moved
                old = self.db.execute("SELECT summary FROM files WHERE path = ?", (key,)).fetchone()
                if old is None:
                    # Another build sharing this cache dropped the row after we read it
                    # (its file looked gone to that build): parse the file after all.
                    key, size, mtime_ns, digest, payload, summary = parse_batch([(key, None)], index.max_bytes)[0]
            if summary is None:
                restat.append((size, mtime_ns, key))
                slots[where[key]] = _entry(name, key, digest, old[0])
                moved[key] = (size, mtime_ns)
            else:
                index.parsed += 1
                assert payload is not None
                index.fresh[key] = payload
                slots[where[key]] = _entry(name, key, digest, summary)
                moved[key] = (size, mtime_ns)
                if digest:  # an unreadable file is not cached: it is tried again next time
                    changed.append((key, size, mtime_ns, digest, summary, payload))
            if len(changed) >= BATCH:
                self._insert(changed)
            if progress:
                progress(len(scanned) - len(todo) + done, len(scanned))
        self._insert(changed)
        self.db.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", restat)
        return moved

    def _insert(self, rows: list[tuple[str, int, int, str, bytes, bytes]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", [row[:5] for row in rows])
        self.db.executemany("INSERT OR REPLACE INTO articles VALUES (?, ?)", [(row[0], row[5]) for row in rows])
        rows.clear()

    def articles(self, index: Index, keys: Iterable[str]) -> dict[str, Article]:
        """The Articles of these record files (keys of entries that have a summary): from
        this run's parse or the cache, and parsed again if the cache no longer has them
        (it was found damaged, and set aside, since the index was made)."""
        wanted = set(keys)
        found = {k: pickle.loads(index.fresh[k]) for k in wanted if k in index.fresh}
        found.update(self._guarded(lambda: self._stored(sorted(wanted - found.keys()))))
        lost = sorted(wanted - found.keys())
        for key, *_, payload, _ in parse_all([(key, None) for key in lost], index.max_bytes):
            article = pickle.loads(payload) if payload is not None else None
            if article is not None:
                found[key] = article
        return found

    def _stored(self, keys: list[str]) -> dict[str, Article]:
        found: dict[str, Article] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self.db.execute(
                f"SELECT path, payload FROM articles WHERE path IN ({','.join('?' * len(chunk))})", chunk)
            found.update((key, _unpickle(payload)) for key, payload in rows)
        return found


def _match(scanned: Scanned, keys: list[str], cached: dict[str, tuple[int, int, str, bytes | Entry]],
           ) -> tuple[list[Entry | None], list[tuple[str, str | None]], dict[str, int]]:
    """Each scanned file's Entry where the cache has its size and mtime, in scanned's order,
    and None in its slot where not; those files to read (each key with the content hash the
    cache has, if any) and their slots. The rows matched are taken out of ``cached``, which
    is left with those of files gone. One loop per record, so no call per record in it."""
    slots: list[Entry | None] = []
    todo: list[tuple[str, str | None]] = []
    where: dict[str, int] = {}
    pop, append = cached.pop, slots.append
    for (given_name, size, mtime_ns), key in zip(scanned, keys, strict=True):
        row = pop(key, None)
        if row is not None and row[0] == size and row[1] == mtime_ns:
            known = row[3]
            if isinstance(known, bytes):
                entry = _entry(given_name, key, row[2], known)
            else:
                entry = known if known.name == given_name else known._replace(name=given_name)
            append(entry)
            continue
        where[key] = len(slots)
        todo.append((key, row[2] if row is not None else None))
        append(None)
    return slots, todo, where


def _entry(name: str, key: str, sha256: str, blob: bytes) -> Entry:
    try:
        packed, error, notes = pickle.loads(blob)
        summary = packed and _make_summary(packed)
    except Exception as e:  # bytes SQLite did not see damaged (a blob's own pages)
        raise CacheDamaged(f"{key}: entry unreadable: {e!r}") from e
    return _make_entry((name, key, sha256, summary, error, notes))


def _unpickle(payload: bytes) -> Article:
    try:
        article: Article = pickle.loads(payload)
    except Exception as e:  # as in _entry
        raise CacheDamaged(f"article unreadable: {e!r}") from e
    return article


_make_entry = Entry._make  # tuple.__new__ underneath: no Python-level __new__ per record
_make_summary = Summary._make


def _connect(path: Path | None) -> sqlite3.Connection:
    """The cache's database. A damaged one (a crash's debris, another file by that name)
    is set aside and started again, since a cache may always be thrown away; one that
    cannot be opened at all is a :class:`CacheError`."""
    try:
        try:
            return _open(path)
        except sqlite3.DatabaseError as e:
            if path is None or not is_damage(e):
                raise
            return _start_again(path, e, _identity(path))
    except (sqlite3.OperationalError, OSError) as e:  # locked, read-only, no space: not ours to delete
        raise CacheError(path or Path(":memory:"), e) from e


def _identity(path: Path | None) -> tuple[int, int] | None:
    """Which file ``path`` is now (device, inode): None if none is."""
    try:
        stat = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if stat is not None else None


def _start_again(path: Path, error: BaseException, opened: tuple[int, int] | None) -> sqlite3.Connection:
    """Set the damaged cache at ``path`` aside as ``<name>.corrupt`` (replacing an older
    one), say so once, and open a new, empty cache there. If ``path`` is no longer the
    file found damaged (``opened``), another process set that one aside already and the
    new one at ``path`` is used."""
    aside = path.with_name(path.name + ".corrupt")
    if _identity(path) == opened:
        log.warning("parse cache %s is damaged (%s): set aside as %s; starting a new one", path, error, aside.name,
                    extra={"path": str(path), "aside": str(aside)})
        # Its journals go first and with it (as SQLite names them beside the new name): a
        # hot journal left at the old name would be played into the new cache.
        for end in ("-journal", "-wal", "-shm", ""):
            try:
                os.replace(f"{path}{end}", f"{aside}{end}")
            except FileNotFoundError:
                Path(f"{aside}{end}").unlink(missing_ok=True)  # an older copy's, not this one's
            except OSError as e:
                raise CacheError(path, f"damaged ({error}), and cannot be set aside: {e.strerror or e}") from e
    for key in [k for k in _MEMORY if k[0] == str(path.resolve())]:
        del _MEMORY[key]
    return _open(path)


def _open(path: Path | None) -> sqlite3.Connection:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path) if path is not None else ":memory:", timeout=30)
    try:
        _prepare(db)
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection) -> None:
    # A rollback journal, not WAL: a cold build writes every record's row once, where WAL
    # writes it twice (log, then checkpoint); 0.1 s of a 10k-record build. Readers are
    # other builds, which wait at most for a commit.
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last write costs a parse
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        # Made by other code or other libraries (an edited cleaning rule, an upgraded
        # PyYAML): nothing in it can be trusted, so it starts again.
        fingerprint = package_fingerprint()
        row = db.execute("SELECT value FROM meta WHERE name = 'fingerprint'").fetchone()
        if row is None or row[0] != fingerprint:
            for table in ("records", "files", "articles", "templates"):  # records: the first caches'
                db.execute(f"DROP TABLE IF EXISTS {table}")
            # The generation too: a process's remembered index of the old rows is not these.
            db.execute("DELETE FROM meta")  # and 'version', what the fingerprint replaced
            db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
        db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                   "mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, summary BLOB NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS articles (path TEXT PRIMARY KEY, payload BLOB NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS templates (key TEXT PRIMARY KEY, code BLOB NOT NULL)")


def template_cache(path: Path | None) -> jinja2.BytecodeCache | None:
    """Compiled templates, kept in the parse cache's database (None without one): a
    rebuild that renders the index page loads its code (0.4 ms) rather than compiling it
    (8 ms). Jinja checks each entry against the template's source and its own version."""
    if path is None:
        return None
    file = path  # for the methods below: a name mypy knows is not None
    import jinja2  # only here: the cache is for builds that render, which import Jinja anyway

    class TemplateCache(jinja2.BytecodeCache):
        def get_bucket(self, environment: jinja2.Environment, name: str, filename: str | None,
                       source: str) -> jinja2.bccache.Bucket:
            # Jinja's key names the template only; its code also depends on how the
            # environment reads templates, so those settings are part of the key.
            env = environment
            settings = (env.trim_blocks, env.lstrip_blocks, env.keep_trailing_newline, env.newline_sequence,
                        env.block_start_string, env.variable_start_string, env.comment_start_string,
                        env.line_statement_prefix, env.optimized, sorted(env.extensions),
                        env.autoescape(name) if callable(env.autoescape) else env.autoescape)
            key = self.get_cache_key(f"{name}|{settings!r}", filename)
            bucket = jinja2.bccache.Bucket(environment, key, self.get_source_checksum(source))
            self.load_bytecode(bucket)
            return bucket

        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            row = _with_cache(file, lambda db: db.execute(
                "SELECT code FROM templates WHERE key = ?", (bucket.key,)).fetchone())
            if row is not None:
                try:
                    bucket.bytecode_from_string(row[0])  # left empty if stale: then compiled
                except (pickle.UnpicklingError, ValueError, EOFError, TypeError):  # damaged: compiled again
                    bucket.reset()

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            code = bucket.bytecode_to_string()
            _with_cache(file, lambda db: db.execute("INSERT OR REPLACE INTO templates VALUES (?, ?)",
                                                    (bucket.key, code)))

    return TemplateCache()


def _with_cache(path: Path, step: Callable[[sqlite3.Connection], T]) -> T:
    """``step`` in one transaction on the cache at ``path``, as :meth:`RecordCache._guarded`
    runs a step: on a damaged file, set aside, again on a new one."""
    opened = _identity(path)
    try:
        with closing(_connect(path)) as db:
            try:
                with db:
                    return step(db)
            except sqlite3.DatabaseError as e:
                if not is_damage(e):
                    raise
                db.close()
                with closing(_start_again(path, e, opened)) as again, again:
                    return step(again)
    except sqlite3.OperationalError as e:
        raise CacheError(path, e) from e
