"""The parse cache: re-parse only the record files that changed since the last run.

Parsing YAML is nearly the whole cost of a build. Each file's result is kept in the state
database, keyed by path, size and mtime; when those differ, the content hash decides (a
``touch`` or a checkout that rewrites a file unchanged costs a read, not a parse).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feeds.errors import RecordError, RecordNotice
from feeds.load import Loaded, load_record, read_bytes
from feeds.state import parse_cache, transaction

# Bump when Article or the cleaning rules change: entries of another version are re-parsed.
CACHE_VERSION = 2


def _pack(loaded: Loaded) -> bytes:
    """What a file gave, without its path: the Article, or the reason it was skipped, and
    the notes."""
    reason = loaded.error.reason if loaded.error else None
    notes = tuple(n.reason for n in loaded.notes)
    return pickle.dumps((CACHE_VERSION, loaded.article, reason, notes), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(payload: bytes, path: Path) -> Loaded | None:
    try:
        version, article, reason, notes = pickle.loads(payload)
    except Exception:
        return None
    if version != CACHE_VERSION:
        return None
    return Loaded(
        path,
        article=article,
        error=RecordError(path, reason) if reason is not None else None,
        notes=tuple(RecordNotice(path, n) for n in notes),
    )


PARALLEL_AFTER = 400  # files to parse; fewer are quicker in-process than with workers
BATCH = 64

Parsed = tuple[str, int, int, str, bytes | None]  # path, size, mtime_ns, sha256, payload


def parse_batch(batch: Sequence[tuple[str, str | None]], max_bytes: int) -> list[Parsed]:
    """Parse record files (a worker's unit of work). ``batch`` pairs each path with the
    content hash the cache has for it: an equal hash means the file did not really change,
    and it is not parsed (payload None)."""
    results: list[Parsed] = []
    for name, expected in batch:
        path = Path(name)
        try:
            stat = path.stat()
            data = read_bytes(path, max_bytes)
        except OSError as e:
            results.append((name, -1, -1, "", _pack(Loaded(path, error=RecordError(path, f"cannot read: {e.strerror or e}")))))
            continue
        except RecordError as e:
            results.append((name, stat.st_size, stat.st_mtime_ns, "", _pack(Loaded(path, error=e))))
            continue
        digest = hashlib.sha256(data).hexdigest()
        payload = None if digest == expected else _pack(load_record(path, max_bytes, data))
        results.append((name, stat.st_size, stat.st_mtime_ns, digest, payload))
    return results


def parse_all(todo: Sequence[tuple[str, str | None]], max_bytes: int) -> Iterator[Parsed]:
    """:func:`parse_batch` over everything, in order, on every core when there is enough
    to do. Workers are forked while this process has one thread (fast), started fresh when
    it has more (the daemon), since forking a threaded process can deadlock."""
    if len(todo) < PARALLEL_AFTER or (os.cpu_count() or 1) < 2:
        yield from parse_batch(todo, max_bytes)
        return
    method = "fork" if threading.active_count() == 1 else "spawn"
    batches = [todo[i:i + BATCH] for i in range(0, len(todo), BATCH)]
    with ProcessPoolExecutor(max_workers=min(os.cpu_count() or 2, 8),
                             mp_context=multiprocessing.get_context(method)) as pool:
        for results in pool.map(parse_batch, batches, [max_bytes] * len(batches)):
            yield from results


def load_cached(
    engine: Engine | None,
    folder: Path,
    paths: Sequence[Path],
    max_bytes: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Loaded], int]:
    """One Loaded per path (paths under ``folder``, as the user gave them), from the cache
    where the file is unchanged, parsed (in parallel) where not. Returns the results and
    how many files were parsed. Cache entries, keyed by resolved path, for files under
    ``folder`` that are gone are dropped. With no ``engine``, parses all."""
    resolved = str(folder.resolve())
    given = str(folder)
    keys = [resolved + str(p)[len(given):] for p in paths]  # resolve() per file costs
    rows: dict[str, Any] = {}
    if engine is not None:
        prefix = resolved + "/"
        with engine.connect() as db:
            rows = {row.path: row for row in db.execute(
                sa.select(parse_cache).where(parse_cache.c.path.startswith(prefix, autoescape=True)))}
    results: list[Loaded | None] = []
    stale: dict[str, Any] = {}
    todo: list[tuple[str, str | None]] = []
    where: dict[str, int] = {}
    for path, key in zip(paths, keys, strict=True):
        row = rows.pop(key, None)
        loaded = None
        if row is not None:
            try:
                stat = os.stat(key)
                if (row.size, row.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                    loaded = _unpack(row.payload, path)
            except OSError:
                pass
        if loaded is None:
            where[key] = len(results)
            todo.append((key, row.sha256 if row is not None else None))
            if row is not None:
                stale[key] = row  # its payload serves again if only the stat changed
        results.append(loaded)
    if progress:
        progress(len(paths) - len(todo), len(paths))
    changed: list[dict[str, object]] = []
    parsed = 0
    for done, (key, size, mtime_ns, digest, payload) in enumerate(parse_all(todo, max_bytes), start=1):
        if payload is None:  # same bytes as cached: only the stat changed
            payload = stale[key].payload
        else:
            parsed += 1
        index = where[key]
        results[index] = _unpack(payload, paths[index])
        if digest:
            changed.append({"path": key, "size": size, "mtime_ns": mtime_ns, "sha256": digest, "payload": payload})
        if progress:
            progress(len(paths) - len(todo) + done, len(paths))
    if engine is not None:
        with transaction(engine) as db:
            gone = list(rows) + [str(c["path"]) for c in changed]
            for start in range(0, len(gone), 500):
                db.execute(parse_cache.delete().where(parse_cache.c.path.in_(gone[start:start + 500])))
            if changed:
                db.execute(parse_cache.insert(), changed)
    return [r for r in results if r is not None], parsed
