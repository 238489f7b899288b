"""A fast reader for the plain subset of YAML that record front matter uses, with PyYAML's
safe loader as the judge and the fallback.

PyYAML (even with libyaml) spends most of a build constructing Python objects through
Python code. Record front matter is regular: block mappings and sequences indented by
spaces, double-quoted or plain one-line scalars. :func:`load` reads exactly that subset
line by line and resolves every plain scalar with PyYAML's own resolver and constructor
(so ``yes``, ``1_000``, ``2020-06-17T12:00:00Z`` and ``~`` mean what PyYAML says they
mean). Anything outside the subset (flow collections, anchors and aliases, tags, block
scalars, comments, multi-line scalars, single quotes, tabs, complex keys, a key given twice) raises
:class:`Unsupported`, and the caller uses PyYAML. Tests check that the two agree on every
real record and on generated documents.

PyYAML itself is imported only when a scalar needs its resolver: strings, decimal
integers and fractions, UTC timestamps, booleans and nulls are read here, and importing PyYAML (~17 ms,
most of it compiling one regular expression) is a twentieth of a rebuild's budget.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver


class Unsupported(Exception):
    """The text is outside the subset this reader handles; use PyYAML."""


@functools.cache
def _pyyaml() -> tuple[Resolver, SafeConstructor]:
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    return Resolver(), SafeConstructor()


_STR = "tag:yaml.org,2002:str"
# The first characters of PyYAML's implicit resolvers (yaml.resolver.Resolver's table; a
# test holds the two equal): a plain scalar that starts with any other character is a string.
RESOLVED_FIRST = frozenset("!&*+-.0123456789<=FNOTYfnoty~")
# YAML 1.1's booleans and nulls, as PyYAML reads them (a test asks PyYAML for each).
WORDS: dict[str, bool | None] = {
    **dict.fromkeys("yes Yes YES true True TRUE on On ON".split(), True),
    **dict.fromkeys("no No NO false False FALSE off Off OFF".split(), False),
    **dict.fromkeys("~ null Null NULL".split(), None),
}
# Plain scalars that are certainly strings: letters first, then nothing YAML 1.1 reads
# as a bool or null. Everything else asks PyYAML's resolver.
_SURE_STRING = re.compile(r"[A-Za-z_][\w .,/@()&+'-]*")
_NOT_STRINGS = frozenset(
    "y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF "
    "null Null NULL".split()
)
_KEY_LINE = re.compile(r"([A-Za-z_][\w-]*):(?: (.*))?")
_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
    "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_PLAIN_FORBIDDEN = re.compile(r"^(?:[-?:](?: |$)|[,\[\]{}#&*!|>'\"%@`])|: | #|:$|\t")


_DECIMAL = re.compile(r"-?[0-9]+\.[0-9]+")
_TIMESTAMP_Z = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")
_CACHE: dict[str, Any] = {}  # plain scalars repeat (keys, topics, outlets); results are immutable


def plain(value: str) -> Any:
    """A plain scalar as PyYAML's safe loader reads it."""
    try:
        return _CACHE[value]
    except KeyError:
        pass
    result = _plain(value)
    if len(_CACHE) < 50_000:
        _CACHE[value] = result
    return result


_MISSING = object()
_PLAIN_VALUES: dict[str, Any] = {}  # plain scalars known to be simple, and their values


def _plain(value: str) -> Any:
    if _SURE_STRING.fullmatch(value) and value not in _NOT_STRINGS:
        return value
    digits = value[1:] if value[:1] == "-" else value
    if digits.isdigit() and digits.isascii() and (digits == "0" or digits[0] != "0"):
        return int(value)  # decimal; a leading 0 is octal in YAML 1.1, so PyYAML decides
    if _DECIMAL.fullmatch(value):
        return float(value)  # what PyYAML's float constructor makes of these digits
    stamp = _TIMESTAMP_Z.fullmatch(value)
    if stamp:
        year, month, day, hour, minute, second = map(int, stamp.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    if value in WORDS:
        return WORDS[value]
    if value and value[0] not in RESOLVED_FIRST:
        return value
    from yaml.nodes import ScalarNode

    resolver, constructor = _pyyaml()
    tag = resolver.resolve(ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    if tag == _STR:
        return value
    if tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
        raise Unsupported(value)
    return constructor.construct_object(ScalarNode(tag, value))


def double_quoted(body: str) -> str:
    """The content of a one-line double-quoted scalar (without its quotes)."""
    if "\\" not in body:
        if '"' in body:
            raise Unsupported("quote inside")
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == '"':
            raise Unsupported("quote inside")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise Unsupported("escaped line break")
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in _HEX_ESCAPES:
            width = _HEX_ESCAPES[e]
            digits = body[i + 2:i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise Unsupported("bad escape")
            code = int(digits, 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise Unsupported("surrogate or out-of-range escape")  # libyaml refuses them: the loader decides
            out.append(chr(code))
            i += 2 + width
        else:
            raise Unsupported("unknown escape")
    return "".join(out)


def scalar(text: str) -> Any:
    if not text:
        return None
    if text[0] == '"':
        if len(text) < 2 or text[-1] != '"' or (text[-2] == "\\" and not text.endswith('\\\\"')):
            raise Unsupported("multi-line or unterminated quoted scalar")
        body = text[1:-1]
        if "\\" not in body and '"' not in body:
            return body  # most quoted values: nothing to unescape
        return double_quoted(body)
    value = _PLAIN_VALUES.get(text, _MISSING)
    if value is not _MISSING:
        return value
    if _PLAIN_FORBIDDEN.search(text) or text != text.rstrip():
        raise Unsupported("not a simple plain scalar")
    value = plain(text)
    if len(_PLAIN_VALUES) < 50_000:
        _PLAIN_VALUES[text] = value
    return value


# Line breaks besides LF and CRLF (lone CR, NEL, LS, PS): YAML 1.1 breaks lines on them.
_ODD_BREAKS = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
_COMMENT = re.compile(r"(?m)^ *#| #")
_END = (-1, "")  # after the last line: shallower than any block, so every loop stops there
_LINE = re.compile(r"^( *)([^ \n][^\n]*)$", re.MULTILINE)


def _lines(text: str) -> list[tuple[int, str]]:
    """(indent, content) for every non-blank line, then the end marker."""
    # `in` first: a substring test is far quicker than these regexes on text without them.
    if ("\t" in text or ("#" in text and _COMMENT.search(text))
            or (("\r" in text or "\x85" in text or "\u2028" in text or "\u2029" in text)
                and _ODD_BREAKS.search(text))):
        raise Unsupported("tabs, comments or unusual line breaks")
    if "\r" in text:
        text = text.replace("\r\n", "\n")  # every CR is before an LF now
    # Each line's indentation and content; blank lines go.
    items = [(len(spaces), content) for spaces, content in _LINE.findall(text)]
    items.append(_END)
    return items


def _mapping(items: list[tuple[int, str]], pos: int, indent: int,
             first: str | None = None) -> tuple[dict[Any, Any], int]:
    """Block mapping at ``indent`` from ``items[pos]``; ``first`` is its first line when it
    began after '- '. Returns the mapping and the position after it."""
    result: dict[Any, Any] = {}
    while True:
        if first is not None:
            line, first = first, None
        else:
            depth, line = items[pos]
            if depth < indent:
                return result, pos
            if depth > indent:
                raise Unsupported("unexpected indentation")
            pos += 1
        head, colon, rest = line.partition(": ")
        if not colon:
            if line[-1] != ":":
                raise Unsupported("not a simple key")
            head = line[:-1]
        key = _KEYS.get(head, _MISSING)
        if key is _MISSING:
            key = _key(head)
        if key in result:  # YAML forbids it; PyYAML keeps the last: it decides, and notes it
            raise Unsupported("duplicate key")
        rest = rest.lstrip(" ")  # YAML allows more than one space after the colon
        if rest:
            # scalar()'s two commonest cases inline: a quoted value with nothing to unescape,
            # and a plain one read before (a call per value cost a tenth of a parse).
            if rest[0] == '"' and rest[-1] == '"' and len(rest) > 1:
                body = rest[1:-1]
                if "\\" not in body and '"' not in body:
                    result[key] = body
                    continue
            else:
                value = _PLAIN_VALUES.get(rest, _MISSING)
                if value is not _MISSING:
                    result[key] = value
                    continue
            result[key] = scalar(rest)
            continue
        depth, following = items[pos]
        if depth < indent or (depth == indent and not following.startswith("- ")):
            result[key] = None
        elif following.startswith("- ") or following == "-":
            result[key], pos = _sequence(items, pos, depth)
        else:
            result[key], pos = _mapping(items, pos, depth)


_KEYS: dict[str, Any] = {}
_KEY = re.compile(r"[A-Za-z_][\w-]*")


def _key(text: str) -> Any:
    if not _KEY.fullmatch(text):
        raise Unsupported("not a simple key")
    key = plain(text)
    if len(_KEYS) < 10_000:
        _KEYS[text] = key
    return key


def _sequence(items: list[tuple[int, str]], pos: int, indent: int) -> tuple[list[Any], int]:
    result: list[Any] = []
    while True:
        depth, line = items[pos]
        if depth != indent or not line.startswith("- "):
            if depth > indent:
                raise Unsupported("unexpected indentation")
            return result, pos
        pos += 1
        item = line[2:]
        stripped = item.lstrip(" ")
        if stripped.startswith("- "):
            raise Unsupported("nested sequence on one line")
        if _KEY_LINE.fullmatch(stripped):
            value, pos = _mapping(items, pos, indent + 2 + len(item) - len(stripped), first=stripped)
            result.append(value)
        else:
            result.append(scalar(stripped))


class _Noting:
    """Mixed into a PyYAML safe loader: ``duplicates`` holds each key a mapping gives more
    than once (YAML forbids it; PyYAML keeps the last value, silently). Only plain keys
    count, and a merge (``<<``) may override keys: that is what it is for."""

    duplicates: list[str]

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            tag, value = key_node.tag, key_node.value
            if isinstance(value, str) and tag != "tag:yaml.org,2002:merge":
                if (tag, value) in seen and value not in self.duplicates:
                    self.duplicates.append(value)
                seen.add((tag, value))
        return super().construct_mapping(node, deep)  # type: ignore[misc]


@functools.cache
def noting_loader(libyaml: bool = True) -> Any:
    """PyYAML's safe loader, noting duplicate keys: libyaml's (when there is one), or
    PyYAML's own, which reads what libyaml refuses (a "\\uD800" escape)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader) if libyaml else yaml.SafeLoader
    return type("NotingSafeLoader", (_Noting, base), {})


def duplicate_notes(keys: list[str]) -> tuple[str, ...]:
    """One note per key given twice (a record's or a topic file's): the last value is used."""
    return tuple(f"{key}: given more than once; the last one is used" for key in keys)


def load_noting(text: str) -> tuple[Any, list[str]]:
    """The first YAML document in ``text`` as PyYAML's safe loader reads it (errors and
    all), and the keys some mapping in it gives twice."""
    loader = noting_loader()(text)
    loader.duplicates = []
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def load_all_noting(text: str) -> tuple[list[Any], list[str]]:
    """Every YAML document in ``text`` as ``yaml.safe_load_all`` reads them (PyYAML's own
    reader), and the keys some mapping in them gives twice."""
    loader = noting_loader(libyaml=False)(text)
    loader.duplicates = []
    try:
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents, loader.duplicates
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """The YAML document in ``text``, as ``yaml.safe_load`` would give it; raises
    Unsupported for anything outside the plain subset."""
    items = _lines(text)
    if len(items) == 1:
        return None
    indent, first = items[0]
    if indent != 0:
        raise Unsupported("indented document")
    if first.startswith("- "):
        raise Unsupported("top-level sequence")
    result, pos = _mapping(items, 0, 0)
    if pos != len(items) - 1:
        raise Unsupported("trailing content")
    return result
