"""Raw record dict -> :class:`~feeds.model.Article`. Pure: no files, no clock.

Records come from Smartable's news archive and vary: some carry ``webUrl``, some only
``originalUrl`` or amp variants; dates are YAML timestamps or strings; text may hold HTML,
entities or control characters. Each field is cleaned by one small function from the table
:data:`FIELD_CLEANERS`. A record without a usable title, date or URL raises
:class:`~feeds.errors.InvalidRecord`; a bad optional field is dropped and noted, so no good
record is lost for a bad thumbnail.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from feeds.errors import InvalidRecord
from feeds.model import Article, Coverage, Image, Kind, Provider

# The link a reader follows: the publisher's page first, amp copies only as a fallback.
# (sourceUrl/ampUrl/cdnAmpUrl are the field names of Smartable's older archives.)
URL_FIELDS = ("webUrl", "originalUrl", "sourceUrl", "ampWebUrl", "ampUrl", "cdnAmpWebUrl", "cdnAmpUrl")
MAX_URL_LENGTH = 2048
# A topic is a label ("Power Apps", "AI in Healthcare"): a longer "name" is a sentence or
# junk pasted into topics, and would stand in the OPML list, the index and every item.
MAX_TOPIC_LENGTH = 100
# A headline is a line, an excerpt a paragraph: a 900 KB "title" is junk, and would stand in
# full in every feed, the index page and the digest. Longer ones are cut at a word, with "…".
MAX_TITLE_LENGTH = 300
MAX_EXCERPT_LENGTH = 1000
# Real records name two to five topics; each name is a feed. A record naming thousands
# (a 1 MB file holds 143,000 short names) must not make thousands of feeds.
MAX_TOPICS_PER_RECORD = 50
# Lines of notes one record may print: past this, one more line counts the rest.
MAX_NOTES_PER_RECORD = 20

# Query parameters that only track the click; they never change what a page shows.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "yclid", "igshid", "mc_cid", "mc_eid", "ocid",
     "ncid", "cmpid", "smid", "spm", "ref", "ref_src", "__twitter_impression", "_hsenc", "_hsmi"}
)
AMP_PARAMS = frozenset({"amp", "_amp", "outputtype", "usqp"})

# Characters no text keeps: C0/C1 controls (not tab, CR, LF or NEL), lone surrogates
# (YAML's "\uD800" escape makes one; UTF-8 cannot encode it), and the Unicode noncharacters
# U+FDD0..U+FDEF and U+nFFFE/U+nFFFF of every plane. XML 1.0 cannot carry the controls,
# surrogates and U+FFFE/U+FFFF (its Char production), and the rest are "discouraged" there;
# lxml, feedgen and the MJML renderer abort on them, and none means anything in news text.
CONTROL_CHARACTERS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)
# A quick first look for them: the same class with every code point from U+1FFFE up in
# place of the 32 astral noncharacters (a class that names those is eight times slower
# to search, and plain text is what nearly every field holds).
_MAY_HOLD_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff\U0001fffe-\U0010ffff]"
)
# A high surrogate then a low one: JSON writers escape an emoji so ("\ud83e\udd16"), and
# PyYAML reads the pair as two lone surrogates instead of the one character they name.
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
# An absolute http(s) URL of plain RFC 3986 characters with a lower-case scheme and host
# (DNS labels, as :data:`_HOST_NAME` has them, in the quickest form found) and a path, and
# query parameters that cannot be tracking ones: clean as it stands.
_SIMPLE_URL = re.compile(
    r"https?://(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,}/[A-Za-z0-9\-._~%!$'()*+,;=:@/]*"
    r"(\?[A-Za-z0-9\-._~%!$'()*+,;=:@/?]+(&[A-Za-z0-9\-._~%!$'()*+,;=:@/?]+)*)?"  # no empty pairs
)
_MAY_TRACK = re.compile(r"[?&](utm_|fbclid|gclid|dclid|msclkid|yclid|igshid|mc_|ocid|ncid|cmpid|smid|spm|ref|_hs"
                        r"|__twitter)|&(amp|#)", re.IGNORECASE)
_ESCAPED_AMPERSAND = re.compile(r"&(amp|#0*38|#x0*26);", re.IGNORECASE)
# A topic name that reads as a file path: absolute ("/etc", "~/x", "C:\\x"), with a
# backslash, or with a "." or ".." segment ("../../x", "a/./b"). Its slug would be safe
# (slugs hold only [a-z0-9-]), but such a name is an attack or an accident, never a topic;
# a "/" inside a name is neither ("Robots/Drones", "C++ / C#").
_PATHLIKE = re.compile(r"^~?/|\\|(?:^|/)\s*\.{1,2}\s*(?:/|$)|^[A-Za-z]:/")
# Unicode's bidirectional embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069):
# invisible, they reorder what readers see ("moc.elgoog" shown as "google.com"), a spoofing
# trick that news text never needs. Not ZWJ (U+200D) or variation selectors: emoji use them.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# A DNS host name: dot-separated labels of letters, digits and hyphens (not at a label's
# ends; "_" too, which browsers accept), up to 63 characters each and 253 in all.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
_LOOKS_LIKE_MARKUP = re.compile(r"<[a-zA-Z/!?]|&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


class Notes(list[str]):
    """What cleaning changed or dropped, one reason per entry."""


# ---------------------------------------------------------------------------- text


def clean_text(value: object, field: str, notes: Notes) -> str | None:
    """Plain text from a record field: tags and control characters out, entities decoded,
    white space folded. ``None`` (and a note) when the value is not text at all."""
    if value is None:
        return None
    if not isinstance(value, str):
        notes.append(f"{field}: expected text, got {type(value).__name__}; ignored")
        return None
    text = value
    if _MAY_HOLD_CONTROL.search(text) and CONTROL_CHARACTERS.search(text):
        text = joined_surrogates(text)
        if CONTROL_CHARACTERS.search(text):
            text = CONTROL_CHARACTERS.sub(" ", text)  # a space keeps "vertical\vtab" two words
            notes.append(f"{field}: control characters removed")
    if ("<" in text or "&" in text) and _LOOKS_LIKE_MARKUP.search(text):
        # Ammonia drops every tag and the content of script/style; what is left is
        # escaped HTML text, which we turn back into plain text.
        import nh3  # here: most text has no markup, and start-up time counts

        stripped = html.unescape(nh3.clean(text, tags=set()))
        if "<" in text and stripped != html.unescape(text):
            notes.append(f"{field}: HTML removed")
        text = CONTROL_CHARACTERS.sub(" ", stripped)  # entities can name controls too
    if not text.isascii() and _BIDI_CONTROLS.search(text):  # isascii: nearly all text, and quick
        text = _BIDI_CONTROLS.sub("", text)
        notes.append(f"{field}: bidirectional controls removed")
    return " ".join(text.split())  # str.split's white space is the regex \s, and quicker


def capped(text: str | None, limit: int, field: str, notes: Notes) -> str | None:
    """``text`` cut to ``limit`` characters at a word, ending with "…", and noted."""
    if text is None or len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:  # a word to cut at, not one 300-letter "word"
        cut = cut[:space]
    notes.append(f"{field}: longer than {limit} characters; cut")
    return cut.rstrip() + "…"


def joined_surrogates(text: str) -> str:
    """``text`` with each high-low pair of surrogates joined into the character it names."""
    if "\ud800" <= max(text) and _SURROGATE_PAIR.search(text):
        return _SURROGATE_PAIR.sub(_join_pair, text)
    return text


def _join_pair(pair: re.Match[str]) -> str:
    high, low = map(ord, pair.group())
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


# ----------------------------------------------------------------------------- URLs


def clean_url(value: object) -> str | None:
    """An absolute http(s) URL with tracking parameters removed, or ``None``.

    ``javascript:``, ``data:``, relative and malformed URLs are refused: a feed reader
    would follow them.
    """
    if not isinstance(value, str):
        return None
    if is_already_clean(value):
        return value  # the common case: skip the parsing below, which would change nothing
    return _clean_url(value)


def is_already_clean(url: str) -> bool:
    return bool(_SIMPLE_URL.fullmatch(url)) and not _MAY_TRACK.search(url)


def _clean_url(value: str) -> str | None:
    # WordPress writes image URLs HTML-escaped ("?resize=620%2C497&#038;ssl=1"); "#" would
    # otherwise start a fragment and cut the query.
    candidate = _ESCAPED_AMPERSAND.sub("&", value.strip())
    if not candidate or len(candidate) > MAX_URL_LENGTH or CONTROL_CHARACTERS.search(candidate):
        return None
    if any(c.isspace() for c in candidate):
        return None
    try:
        parts = urlsplit(candidate)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    netloc, host = parts.netloc.lower(), parts.hostname
    if not netloc.isascii():
        try:  # an internationalised domain name goes out in its ASCII (punycode) form
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
        netloc = netloc.replace(parts.hostname, host)
    if not _is_host(host):  # "%00", "a..b": no reader could follow the link
        return None
    # Drop tracking pairs without re-encoding the rest: signed image URLs must stay byte-exact.
    query = "&".join(
        pair for pair in parts.query.split("&") if pair and not _is_tracking(unquote(pair.split("=")[0]))
    )
    return urlunsplit((
        parts.scheme.lower(),
        netloc,
        _encode(parts.path) or "/",
        _encode(query),
        _encode(parts.fragment),
    ))


def _is_host(host: str) -> bool:
    """A DNS name or an IP literal (urlsplit's hostname drops an IPv6 address's brackets)."""
    if _HOST_NAME.fullmatch(host):
        return True
    if ":" not in host:
        return False
    import ipaddress  # here: IPv6 links are rare, and start-up time counts

    try:
        ipaddress.IPv6Address(host.split("%")[0])
    except ValueError:
        return False
    return True


def _encode(component: str) -> str:
    """Percent-encode what RFC 3986 does not allow (non-ASCII, quotes, angle brackets,
    ``|``, ``^``...), leaving existing escapes and reserved characters as they are."""
    return quote(component, safe="/?:@!$&'()*+,;=-._~%")


def _is_tracking(param: str) -> bool:
    name = param.lower()
    return name.startswith("utm_") or name in TRACKING_PARAMS


# A clean URL with no query (:data:`_SIMPLE_URL`'s host and path): its story key needs no
# urlsplit or query sorting, and most records' and related entries' URLs are such.
_QUERYLESS_URL = re.compile(r"https?://([a-z0-9.-]+\.[a-z]{2,})(/[A-Za-z0-9\-._~%!$'()*+,;=:@/]*)")
_AMP_SUFFIX = re.compile(r"/amp/?$|\.amp(?=\.html?$)")


def story_key(url: str) -> str:
    """The identity of the page behind ``url``: amp, tracking, scheme and ``www.`` folded.

    ``https://www-forbes-com.cdn.ampproject.org/c/s/www.forbes.com/x/amp/`` and
    ``http://forbes.com/x?utm_source=t`` both give ``forbes.com/x``.
    """
    plain = _QUERYLESS_URL.fullmatch(url)
    if plain is None or plain.group(1).endswith(".cdn.ampproject.org"):
        return _story_key(url)
    host, path = plain.groups()
    return _fold_host(host) + _AMP_SUFFIX.sub("", path).rstrip("/")


def _fold_host(host: str) -> str:
    for prefix in ("www.", "amp.", "m."):
        if host.startswith(prefix):
            host = host[len(prefix):]
    return host


def _story_key(url: str) -> str:
    """:func:`story_key` for any URL (tests hold the fast path to this)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = parts.path
    if host.endswith(".cdn.ampproject.org"):
        # Google's amp cache: /c/s/<host>/<path> (s = https) or /c/<host>/<path>.
        inner = re.sub(r"^/[cvi]/(s/)?", "", path)
        host, _, rest = inner.partition("/")
        path = "/" + rest
    path = _AMP_SUFFIX.sub("", path).rstrip("/")
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking(k) and k.lower() not in AMP_PARAMS
    )
    return _fold_host(host) + path + ("?" + urlencode(query) if query else "")


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes
_IDS: dict[str, str] = {}  # one story's URL recurs in many records' related lists


def article_id(url: str) -> str:
    """A stable id for the page behind ``url``: the same on every rebuild and machine.

    It is ``str(uuid.uuid5(uuid.NAMESPACE_URL, story_key(url)))``, formatted straight
    from the SHA-1 digest: building UUID objects cost a tenth of a build.
    """
    try:
        return _IDS[url]
    except KeyError:
        pass
    digest = hashlib.sha1(_URL_NAMESPACE + story_key(url).encode()).hexdigest()
    variant = "89ab"[int(digest[16], 16) & 3]  # RFC 4122 variant bits, then version 5
    result = f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"
    if len(_IDS) < 100_000:
        _IDS[url] = result
    return result


def pick_url(raw: Mapping[str, Any], notes: Notes, field_prefix: str = "") -> str | None:
    """The first usable link among :data:`URL_FIELDS`; notes every unusable one given."""
    for field in URL_FIELDS:
        value = raw.get(field)
        if value in (None, ""):
            continue
        url = clean_url(value)
        if url:
            return url
        notes.append(f"{field_prefix}{field}: not an absolute http(s) URL; ignored")
    return None


# ---------------------------------------------------------------------------- dates


def clean_datetime(value: object) -> datetime | None:
    """An aware UTC datetime from a YAML timestamp, a date or an ISO-8601 string.

    A datetime without a zone is taken as UTC, as Smartable writes all its times in UTC.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0), tzinfo=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


# --------------------------------------------------------------------------- numbers


def clean_number(value: object, field: str, notes: Notes) -> float:
    """A finite number, or 0 with a note. Negative quality counts as none at all, which keeps
    the ranking's promise that the newer of two equal records wins."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        notes.append(f"{field}: expected a number, got {type(value).__name__}; using 0")
        return 0.0
    try:
        number = float(value)
    except OverflowError:  # an int of thousands of digits (0xfff...): its repr may not print
        notes.append(f"{field}: too large a number; using 0")
        return 0.0
    if not math.isfinite(number):
        notes.append(f"{field}: {value!r} is not a finite number; using 0")
        return 0.0
    return max(number, 0.0)


def clean_dimension(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) and 0 < value < 100_000 else None


# ------------------------------------------------------------------- nested objects


_PROVIDERS: dict[tuple[object, object], Provider | None] = {}  # outlets recur in every record


def clean_provider(value: object, notes: Notes) -> Provider | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        notes.append(f"provider: expected a mapping, got {type(value).__name__}; ignored")
        return None
    raw = (value.get("name"), value.get("domain"))
    try:
        return _PROVIDERS[raw]
    except (KeyError, TypeError):  # TypeError: a list or mapping where text belongs
        pass
    before = len(notes)
    domain = clean_domain(raw[1])
    name = clean_text(raw[0], "provider.name", notes)
    linked = link_domain(name) if name and ("/" in name or "www." in name.lower()) else None
    if linked is not None:
        # An outlet named by a link ("https://www.example.com/news"): readers are better
        # served by the outlet's domain, the record's own or else the link's.
        domain = domain or linked or None
        notes.append(f"provider.name: {_shorten(name)} is a link, not a name; using the domain")
        name = None
    name = name or domain
    provider = Provider(name=name, domain=domain) if name else None
    if len(notes) == before and len(_PROVIDERS) < 10_000:  # notes must be given every time
        _PROVIDERS[raw] = provider
    return provider


# A provider "name" that is a piece of a link: with a scheme ("https://www.example.com/news"),
# a "www." host, or a host and a path ("example.com/news"). Group 1, 2 or 3 is the host. A
# bare domain ("winbuzzer.com") is not one: it is how some outlets name themselves.
_LINK = re.compile(
    r"(?:[a-z][a-z0-9+.-]*:)?//([^/?#\s]*)\S*|(www\.[^/?#\s]+)\S*|([a-z0-9-]+(?:\.[a-z0-9-]+)+)[/?#]\S*",
    re.IGNORECASE,
)


def link_domain(name: str) -> str | None:
    """The domain of a provider name that is a piece of a link (``www.`` folded), or ""
    when the link names no usable host; None when the name is not a link."""
    match = _LINK.fullmatch(name)
    if match is None:
        return None
    host = next(group for group in match.groups() if group is not None)
    host = host.rpartition("@")[2].partition(":")[0].lower()  # no user, no port
    return clean_domain(_fold_host(host)) or ""


def clean_domain(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    domain = value.strip().lower()
    return domain if re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)+", domain) else None


def clean_images(value: object, notes: Notes) -> Image | None:
    """The first image with a usable URL; width and height only when they are sane."""
    if value is None:
        return None
    if not isinstance(value, list):
        notes.append(f"images: expected a list, got {type(value).__name__}; ignored")
        return None
    for entry in value:
        if not isinstance(entry, Mapping):
            continue
        url = clean_url(entry.get("url"))
        if url is None:
            notes.append("images: an image URL is not an absolute http(s) URL; skipped")
            continue
        return Image(url, clean_dimension(entry.get("width")), clean_dimension(entry.get("height")))
    return None


def clean_kind(value: object, notes: Notes) -> Kind:
    if value is None:
        return Kind.ARTICLE
    if isinstance(value, str) and value.strip().lower() in Kind._value2member_map_:
        return Kind(value.strip().lower())
    notes.append(f"type: unknown type {value!r}; treated as article")
    return Kind.ARTICLE


class _IframeSrc(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe" and self.src is None:
            self.src = dict(attrs).get("src")


def clean_embed(value: object) -> str | None:
    """The https ``src`` of a video's ``featuredContent`` iframe. The iframe itself is never
    output: feed readers and mail clients strip or block it."""
    if not isinstance(value, str) or "<iframe" not in value.lower():
        return None
    parser = _IframeSrc()
    parser.feed(value)
    url = clean_url(parser.src)
    return url if url and url.startswith("https://") else None


def clean_topics(value: object, notes: Notes) -> tuple[str, ...]:
    """Topic names as given (display form), cleaned and without repeats."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        notes.append(f"topics: expected a list, got {type(value).__name__}; ignored")
        return ()
    names: dict[str, bool] = {}  # name -> kept; ordered, and a look-up is not a scan of thousands
    kept = beyond = 0
    for item in value:
        name = clean_text(item, "topics", notes) if item is not None else None
        if not name or name in names:
            continue
        problem = topic_problem(name)
        if problem:
            notes.append(f"topics: {_shorten(name)} {problem}; dropped")
        elif kept == MAX_TOPICS_PER_RECORD:
            beyond += 1
            problem = "beyond the limit"
        names[name] = not problem  # a repeat of a dropped name is not noted again
        kept += not problem
    if beyond:
        notes.append(f"topics: {beyond} more beyond the first {MAX_TOPICS_PER_RECORD} dropped "
                     f"(a record keeps at most {MAX_TOPICS_PER_RECORD} topics)")
    return tuple(name for name, keep in names.items() if keep)


def topic_problem(name: str) -> str | None:
    """Why a cleaned topic name cannot be a topic, or None if it can."""
    if len(name) > MAX_TOPIC_LENGTH:
        return f"is longer than {MAX_TOPIC_LENGTH} characters"
    if _PATHLIKE.search(name) or not re.search(r"\w", name):
        return "is not a usable topic name"
    return None


def clean_related(value: object, own_id: str, notes: Notes) -> tuple[Coverage, ...]:
    """Other coverage of the story. Entries without a title or usable URL are dropped."""
    if value is None:
        return ()
    if not isinstance(value, list):
        notes.append(f"related: expected a list, got {type(value).__name__}; ignored")
        return ()
    found: dict[str, Coverage] = {}
    dropped = 0
    for entry in value:
        scratch = Notes()  # a bad related entry is worth one note in all, not one per field
        if not isinstance(entry, Mapping):
            dropped += 1
            continue
        title = clean_text(entry.get("title"), "related.title", scratch)
        url = pick_url(entry, scratch)
        if not title or not url:
            dropped += 1
            continue
        cid = article_id(url)
        if cid != own_id and cid not in found:
            found[cid] = Coverage(
                id=cid,
                title=title,
                url=url,
                provider=clean_provider(entry.get("provider"), scratch),
                published=clean_datetime(entry.get("publishedDateTime")),
            )
    if dropped:
        notes.append(f"related: {dropped} entr{'y' if dropped == 1 else 'ies'} without a title or usable URL dropped")
    return tuple(found.values())


# -------------------------------------------------------------------------- records

Cleaner = Callable[[Mapping[str, Any], Notes], Any]

# One small function per Article field (after pelican's METADATA_PROCESSORS). Required
# fields (title, url, published) are checked in to_article, where a failure skips the record.
FIELD_CLEANERS: dict[str, Cleaner] = {
    "title": lambda raw, notes: capped(clean_text(raw.get("title"), "title", notes), MAX_TITLE_LENGTH, "title",
                                       notes),
    "url": pick_url,
    "published": lambda raw, notes: clean_datetime(raw.get("publishedDateTime")),
    "excerpt": lambda raw, notes: capped(clean_text(raw.get("excerpt"), "excerpt", notes), MAX_EXCERPT_LENGTH,
                                         "excerpt", notes) or "",
    "kind": lambda raw, notes: clean_kind(raw.get("type"), notes),
    "quality": lambda raw, notes: clean_number(raw.get("quality"), "quality", notes),
    # Absent (Smartable's older layout), not 0: ranking assumes the median for it.
    "rated": lambda raw, notes: raw.get("quality") is not None,
    "heat": lambda raw, notes: clean_number(raw.get("heat"), "heat", notes),
    "provider": lambda raw, notes: clean_provider(raw.get("provider"), notes),
    "image": lambda raw, notes: clean_images(raw.get("images"), notes),
    "embed_url": lambda raw, notes: clean_embed(raw.get("featuredContent")),
    "topics": lambda raw, notes: clean_topics(raw.get("topics"), notes),
}


def to_article(raw: object) -> tuple[Article, tuple[str, ...]]:
    """Clean one record. Returns the Article and notes on what was cleaned or dropped.

    Raises InvalidRecord when the record has no usable title, publication date or URL.
    ``published: false`` is ignored: most real records say it (all five seeds do), and in
    Smartable's archive it does not mean draft. ``secured`` is opaque and never read.
    """
    if not isinstance(raw, Mapping):
        raise InvalidRecord(f"front matter is a {type(raw).__name__}, not a mapping of fields")
    notes = Notes()
    fields = {name: clean(raw, notes) for name, clean in FIELD_CLEANERS.items()}
    if not fields["title"]:
        raise InvalidRecord(_missing("title", raw))
    if fields["published"] is None:
        if raw.get("publishedDateTime") in (None, ""):
            raise InvalidRecord("missing publishedDateTime")
        raise InvalidRecord(f"publishedDateTime: not a date: {_shorten(raw.get('publishedDateTime'))}")
    if fields["url"] is None:
        raise InvalidRecord("no usable URL: webUrl/originalUrl missing or not absolute http(s)")
    if fields["image"] is None and fields["kind"] is Kind.VIDEO and fields["embed_url"]:
        fields["image"] = youtube_thumbnail(fields["embed_url"])
    fields["id"] = article_id(fields["url"])
    related = clean_related(raw.get("related"), fields["id"], notes)
    if len(notes) > MAX_NOTES_PER_RECORD:  # a record of thousands of bad values: not thousands of lines
        notes[MAX_NOTES_PER_RECORD - 1:] = [f"and {len(notes) - MAX_NOTES_PER_RECORD + 1} more notes like these"]
    return Article(**fields, related=related), tuple(notes)


def youtube_thumbnail(embed_url: str) -> Image | None:
    """YouTube serves a thumbnail for every video id; use it when a video record has none."""
    match = re.match(r"https://(?:www\.)?youtube(?:-nocookie)?\.com/embed/([\w-]{6,20})", embed_url)
    return Image(f"https://i.ytimg.com/vi/{match.group(1)}/hqdefault.jpg", 480, 360) if match else None


def _missing(field: str, raw: Mapping[str, Any]) -> str:
    value = raw.get(field)
    if value in (None, ""):
        return f"missing {field}"
    if not isinstance(value, str):
        return f"{field}: expected text, got {type(value).__name__}"
    return f"{field}: empty after removing markup and control characters"


def _shorten(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slugify(name: str) -> str:
    """Lowercase ASCII words joined by hyphens: ``"AWS AI"`` -> ``aws-ai``.

    The result only ever holds ``[a-z0-9-]`` and is never empty, so no topic name can
    address a folder outside ``out/topics``. A name with no ASCII letters or digits
    (``"人工知能"``) gets ``topic-`` and a short hash of the name.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:80].strip("-")
    return slug or "topic-" + hashlib.sha256(name.encode()).hexdigest()[:8]
