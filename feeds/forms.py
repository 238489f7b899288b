"""The one reader of the forms ``feeds serve`` receives (sign-up, confirm, preferences and
the one-click unsubscribe), with one set of limits, so that no route is laxer than another.

A form is small: a sign-up with every topic ticked is well under 1 KiB. Only urlencoded
and multipart bodies are read (RFC 8058 section 3.1: a one-click POST SHOULD be
multipart/form-data); files are refused, a body whose Content-Length is too big is refused
before it is read, and the parser caps the fields and each part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.exceptions import HTTPException
from starlette.requests import Request

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FIELDS = 200  # the sign-up form with a few dozen topics ticked, and room to spare
MAX_PART_BYTES = 4096
MAX_FORM_BYTES = 64 << 10

Form = dict[str, list[str]]  # text fields by name, each with its values in the order sent


def form_type(request: Request) -> str:
    """The request's media type, lowercased, without parameters ("" when it has none)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(request: Request) -> Form | None:
    """The text fields of a small urlencoded or multipart form; None for anything else
    (another type, a file, too many fields or bytes, a malformed body)."""
    if form_type(request) not in FORM_TYPES:
        return None
    length = request.headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:  # read whole before parsing: refuse big ones first
        return None
    try:
        async with request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_PART_BYTES) as form:
            return {key: [v for v in form.getlist(key) if isinstance(v, str)] for key in form}
    except HTTPException:  # Starlette's 400 for a body it cannot parse or that breaks a limit
        return None


def first(form: Mapping[str, Sequence[str]], name: str) -> str:
    """The first value of field ``name``, stripped; "" when there is none."""
    values = form.get(name) or ()
    return values[0].strip() if values else ""
