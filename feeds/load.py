"""Record files -> raw dicts -> Articles, one result per file, never stopping on a bad one.

A record is a file whose YAML front matter sits between two ``---`` lines, as in
Smartable's news archive (and Hugo and Jekyll content). Whatever is wrong with a file
becomes a :class:`~feeds.errors.RecordError` naming the file and the reason; the run goes on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any, TypeVar

from feeds import fastyaml
from feeds.errors import InvalidRecord, RecordError, RecordNotice
from feeds.manifest import scan
from feeds.model import Article
from feeds.normalise import to_article

log = logging.getLogger(__name__)
T = TypeVar("T")


# Front matter goes through feeds.fastyaml, which reads the plain subset records use and
# hands everything else to PyYAML (imported then): libyaml's safe loader where PyYAML has
# it (much faster than the pure-Python one, same values).


@dataclass(frozen=True, slots=True)
class Loaded:
    """What became of one record file: an Article (maybe with notes) or an error."""

    path: Path
    article: Article | None = None
    error: RecordError | None = None
    notes: tuple[RecordNotice, ...] = ()


def iter_record_paths(folder: Path) -> list[Path]:
    """Every record file below ``folder``, in path order (see :func:`feeds.manifest.scan`)."""
    return [Path(path) for path, _, _ in scan(folder)]


def read_bytes(path: Path, max_bytes: int) -> tuple[os.stat_result, bytes]:
    """The file's stat and bytes, from one open file (so the stat describes the bytes).
    Raises RecordError if it cannot be read or holds more than ``max_bytes``."""
    try:
        # O_NONBLOCK: opening a FIFO (or a device) named like a record must not wait
        # forever for a writer; it is refused below, before any read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise RecordError(path, f"cannot read: {e.strerror or e}") from e
    try:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            raise RecordError(path, "cannot read: not a regular file")
        # Ask for the size fstat gave (and one byte more, to see growth): asking for
        # max_bytes allocates a megabyte per file, which cost more than the read.
        data = os.read(fd, min(stat.st_size, max_bytes) + 1)
        while len(data) > stat.st_size and len(data) <= max_bytes:  # it grew: read on
            more = os.read(fd, max_bytes + 1 - len(data))
            if not more:
                break
            data += more
    except OSError as e:
        raise RecordError(path, f"cannot read: {e.strerror or e}") from e
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise RecordError(path, f"larger than max_record_bytes ({max_bytes} bytes)")
    return stat, data


def read_front_matter(path: Path, data: bytes) -> tuple[Any, tuple[str, ...]]:
    """The parsed YAML front matter of a record file's bytes and notes on what was
    cleaned. Raises RecordError with the reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(path, f"not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}") from e
    return parse_front_matter(path, text.removeprefix("\ufeff"), usual=usual_bytes(data) or None)


def usual_bytes(data: bytes) -> bool:
    """True if UTF-8 ``data`` certainly holds none of :data:`_UNUSUAL`'s characters (a tenth
    of the cost of the regex over the decoded text); False if it may."""
    return (not data.translate(None, _USUAL_BYTES) and b"\xc2" not in data  # C1 controls are C2 80-9F
            and b"\xe2\x80\xa8" not in data and b"\xe2\x80\xa9" not in data and b"\xef\xbf" not in data)


def parse_front_matter(path: Path, text: str, usual: bool | None = None) -> tuple[Any, tuple[str, ...]]:
    """The YAML between the ``---`` lines, and notes on what had to be cleaned first.
    ``usual``: the caller knows the text holds none of :data:`_UNUSUAL`'s characters."""
    notes: tuple[str, ...] = ()
    if usual is None:
        usual = not _UNUSUAL.search(text)  # one scan instead of two on nearly every record
    if not usual and _YAML_REFUSES.search(text):
        # The YAML reader refuses them outright; they are noise, not reason to lose a record.
        text = without_raw_controls(text)
        notes = ("control characters removed from the file",)
    if not text or text.isspace():
        raise RecordError(path, "empty file")
    text = front_matter_text(path, text, lf_only=usual or None)
    try:
        return fastyaml.load(text), notes  # the plain subset: no anchors, so no alias bombs
    except fastyaml.Unsupported:
        pass
    except (ValueError, OverflowError) as e:  # a scalar no Python value can hold
        raise RecordError(path, f"malformed YAML: {_value_problem(e)}") from e
    import yaml

    try:
        raw, duplicates = _pyyaml_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 2}: " if mark is not None else ""  # YAML starts on line 2
        raise RecordError(path, f"malformed YAML: {where}{e.problem or e}") from e
    except yaml.YAMLError as e:
        raise RecordError(path, f"malformed YAML: {e}") from e
    except RecursionError as e:
        raise RecordError(path, "malformed YAML: nested too deeply") from e
    except (ValueError, OverflowError) as e:  # 2020-02-30, a +25:00 offset, year 0
        raise RecordError(path, f"malformed YAML: {_value_problem(e)}") from e
    problem = alias_problem(raw, max(len(text), MAX_EXPANDED_CHARACTERS))
    if problem:
        raise RecordError(path, problem)
    return raw, notes + fastyaml.duplicate_notes(duplicates)


def _value_problem(e: Exception) -> str:
    """Why a scalar (a date such as 2020-02-30 or year 0, a 5,000-digit number) cannot be
    read: the record's fault, not ours, so it is not an internal error."""
    if "integer string conversion" in str(e):
        return "a number has too many digits"
    return f"a value cannot be read: {e}"


# Line breaks of str.splitlines besides LF; without them a line ends at "\n" only.
_OTHER_BREAKS = re.compile("[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_CLOSING_LINE = re.compile(r"\n(?:---|\.\.\.)[^\S\n]*(?=\n|\Z)")
# Control characters and those other breaks: text without any needs neither looked at.
# Bytes that are never (part of) one of those characters in UTF-8: printable ASCII, tab,
# line feed, and the bytes of multi-byte sequences (checked apart in usual_bytes).
_USUAL_BYTES = bytes(range(0x20, 0x7F)) + b"\t\n" + bytes(range(0x80, 0x100))
_UNUSUAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\r\u2028\u2029\ufffe\uffff]")


def front_matter_text(path: Path, text: str, lf_only: bool | None = None) -> str:
    """The lines between the opening ``---`` and the closing ``---`` (or ``...``).
    ``lf_only``: the caller knows the text has no line breaks but LF."""
    if not lf_only and _OTHER_BREAKS.search(text):
        return _front_matter_by_lines(path, text)
    first = text.find("\n")
    first = len(text) if first < 0 else first
    if text[:first].rstrip() != "---":
        raise RecordError(path, "no front matter: the first line must be '---'")
    end = _CLOSING_LINE.search(text, first)
    if end is None:
        raise RecordError(path, "no front matter: no closing '---' line")
    return text[first + 1:end.start() + 1]


def _front_matter_by_lines(path: Path, text: str) -> str:
    """:func:`front_matter_text` for any text, line by line (a sixth of a parse on
    records, so only where lines may break at other characters than LF)."""
    lines = text.splitlines(keepends=True)
    if lines[0].rstrip() != "---":
        raise RecordError(path, "no front matter: the first line must be '---'")
    end = next((i for i, line in enumerate(lines) if i and line.rstrip() in ("---", "...")), None)
    if end is None:
        raise RecordError(path, "no front matter: no closing '---' line")
    return "".join(lines[1:end])


# What YAML aliases may make of a record. Real records use no aliases at all; a record that
# does is refused once it would be larger than a record written out in full could be.
MAX_EXPANDED_CHARACTERS = 1_048_576  # the default max_record_bytes, in characters


def alias_problem(value: Any, limit: int) -> str | None:
    """Why YAML aliases make a parsed record unusable, or None if they do not.

    An alias shares one object among every place that names it, so a parsed record may be
    small while what it stands for is huge: a list or mapping reachable twice ("billion
    laughs", which explodes when walked or serialised), or one string named many times (a
    100 KB string as a thousand topics is 100 MB to clean). The record's expanded size
    counts one for each value plus each string's length, every time it occurs; the walk
    stops at ``limit``, so it stays cheap even on a bomb.
    """
    seen: set[int] = set()
    size = 0
    stack = [value]
    while stack:
        node = stack.pop()
        size += len(node) + 1 if isinstance(node, str) else 1
        if size > limit:
            return f"alias expansion: YAML aliases make the record larger than {limit} characters"
        if isinstance(node, dict | list):
            if id(node) in seen:
                return "YAML aliases to lists or mappings are not allowed (alias bomb)"
            seen.add(id(node))
            if isinstance(node, dict):
                stack.extend(node.keys())
                stack.extend(node.values())
            else:
                stack.extend(node)
    return None


# Raw characters the YAML reader refuses: C0 and C1 controls (not tab, CR, LF or NEL) and
# U+FFFE/U+FFFF. A run of them after a visible character sits inside a value, where a
# space keeps the words apart ("vertical<VT>tab" reads "vertical tab"); at the start of a
# line it may sit in the indentation, which a space would change, so there it just goes.
_REFUSED = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff"
_YAML_REFUSES = re.compile(f"[{_REFUSED}]")
_REFUSED_AFTER_TEXT = re.compile(f"(?<=[^\\s{_REFUSED}])[{_REFUSED}]+")


def without_raw_controls(text: str) -> str:
    """``text`` without :data:`_YAML_REFUSES`'s characters: a space for each run of them
    after a visible character on its line, nothing for the rest."""
    return _YAML_REFUSES.sub("", _REFUSED_AFTER_TEXT.sub(" ", text))


def _pyyaml_load(text: str) -> tuple[Any, list[str]]:
    """The document and the keys given twice in it, by a safe loader."""
    import yaml

    try:
        return fastyaml.load_noting(text)
    except yaml.MarkedYAMLError as e:
        if e.problem != _LIBYAML_SURROGATE:
            raise
    # libyaml refuses "\uD800", a valid YAML escape that PyYAML's own reader takes for a
    # lone surrogate (which cleaning replaces); fastyaml steps aside to let this decide.
    return fastyaml.load_noting(_SURROGATE_ESCAPE.sub(_surrogate_escape, text))


# libyaml's complaint about a surrogate escape, and such escapes. A high-low pair becomes
# the one character it names, as PyYAML's pair of lone surrogates becomes in cleaning; a
# lone one becomes U+FFFE, which libyaml reads and cleaning replaces with a space and a
# note, as it does the lone surrogate.
_LIBYAML_SURROGATE = "found invalid Unicode character escape code"
_SURROGATE_ESCAPE = re.compile(
    r"(?<!\\)((?:\\\\)*)\\(?:u|U0000)([dD][89abAB][0-9a-fA-F]{2})\\(?:u|U0000)([dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\)((?:\\\\)*)\\(?:u|U0000)([dD][89a-fA-F][0-9a-fA-F]{2})"
)


def _surrogate_escape(match: re.Match[str]) -> str:
    if match.group(2):
        high, low = int(match.group(2), 16), int(match.group(3), 16)
        return f"{match.group(1)}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}"
    return f"{match.group(4)}\\uFFFE"


def load_record(path: Path, max_bytes: int, data: bytes | None = None) -> Loaded:
    """Read (unless ``data`` is given) and clean one record file; never raises for
    anything the file contains."""
    if data is None:
        try:
            _, data = read_bytes(path, max_bytes)
        except RecordError as e:
            return Loaded(path, error=e)
    return load_records([(path, data)])[0]


def load_records(files: Sequence[tuple[Path, bytes]]) -> list[Loaded]:
    """:func:`load_record` for many files' bytes, stage by stage: all front matter, then
    all cleaning. The same results, an eighth quicker than file by file (each stage's
    code and caches stay warm)."""
    fronts = [_guarded(path, read_front_matter, path, data) for path, data in files]
    return [front if isinstance(front, Loaded) else _cleaned(path, *front)
            for (path, _), front in zip(files, fronts, strict=True)]


def _cleaned(path: Path, raw: Any, file_notes: tuple[str, ...]) -> Loaded:
    result = _guarded(path, to_article, raw)
    if isinstance(result, Loaded):
        return result
    article, notes = result
    return Loaded(path, article=article, notes=tuple(RecordNotice(path, n) for n in file_notes + notes))


def _guarded(path: Path, stage: Callable[..., T], *args: Any) -> T | Loaded:
    """``stage(*args)``, or the Loaded error it comes to: whatever is wrong with a file
    costs that file, never the run."""
    try:
        return stage(*args)
    except RecordError as e:
        return Loaded(path, error=e)
    except InvalidRecord as e:
        return Loaded(path, error=RecordError(path, e.reason))
    except Exception as e:  # a bug of ours must cost one record, not the run
        log.debug("unexpected error in %s", path, exc_info=True)
        return Loaded(path, error=RecordError(path, f"internal error: {type(e).__name__}: {e}"))


def iter_records(folder: Path, max_bytes: int) -> Iterator[Loaded]:
    """One :class:`Loaded` per record file below ``folder``, in path order."""
    for path in iter_record_paths(folder):
        yield load_record(path, max_bytes)
