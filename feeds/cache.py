"""The parse cache: re-parse only the record files that changed since the last run.

Parsing YAML is nearly the whole cost of a build. Each file's result is kept in the state
database, keyed by path, size and mtime; when those differ, the content hash decides (a
``touch`` or a checkout that rewrites a file unchanged costs a read, not a parse).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from feeds.errors import RecordError
from feeds.load import Loaded, load_record, read_bytes
from feeds.state import parse_cache, transaction

# Bump when Article or the cleaning rules change: entries of another version are re-parsed.
CACHE_VERSION = 1


def _pack(loaded: Loaded) -> bytes:
    return pickle.dumps((CACHE_VERSION, loaded), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(payload: bytes) -> Loaded | None:
    try:
        version, loaded = pickle.loads(payload)
    except Exception:
        return None
    return loaded if version == CACHE_VERSION and isinstance(loaded, Loaded) else None


def load_cached(
    engine: Engine,
    folder: Path,
    paths: Sequence[Path],
    max_bytes: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Loaded], int]:
    """One Loaded per path, from the cache where the file is unchanged. Returns the
    results and how many files were parsed. Entries for files under ``folder`` that are
    gone are dropped."""
    prefix = str(folder) + "/"
    with engine.connect() as db:
        rows = {row.path: row for row in db.execute(
            sa.select(parse_cache).where(parse_cache.c.path.startswith(prefix, autoescape=True)))}
    results: list[Loaded] = []
    changed: list[dict[str, object]] = []
    parsed = 0
    for done, path in enumerate(paths, start=1):
        key = str(path)
        row = rows.pop(key, None)
        loaded = None
        try:
            stat = path.stat()
        except OSError:
            stat = None
        if row is not None and stat is not None and (row.size, row.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            loaded = _unpack(row.payload)
        if loaded is None and stat is not None:
            try:
                data = read_bytes(path, max_bytes)
            except RecordError as e:
                loaded, data = Loaded(path, error=e), None
            if data is not None:
                digest = hashlib.sha256(data).hexdigest()
                if row is not None and row.sha256 == digest:
                    loaded = _unpack(row.payload)
                if loaded is None:
                    loaded = load_record(path, max_bytes, data)
                    parsed += 1
                changed.append({"path": key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                "sha256": digest, "payload": _pack(loaded)})
        if loaded is None:
            loaded = load_record(path, max_bytes)  # vanished or unreadable: say why
            parsed += 1
        results.append(loaded)
        if progress:
            progress(done, len(paths))
    with transaction(engine) as db:
        gone = list(rows) + [str(c["path"]) for c in changed]
        for start in range(0, len(gone), 500):
            db.execute(parse_cache.delete().where(parse_cache.c.path.in_(gone[start:start + 500])))
        if changed:
            db.execute(parse_cache.insert(), changed)
    return results, parsed
