"""Renderers: selected stories in, bytes out. Nothing here touches files or the clock."""

from __future__ import annotations

from pathlib import Path

import jinja2

_PACKAGE = Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    """The bundled templates: inside the package when installed from a wheel, the
    repository's top-level ``templates/`` in a checkout or editable install."""
    installed = _PACKAGE / "templates"
    return installed if installed.is_dir() else _PACKAGE.parent / "templates"


def jinja_env(folder: Path | None = None) -> jinja2.Environment:
    """A Jinja environment that escapes everything, whatever a template's file name says.

    ``select_autoescape()`` only covers .html/.xml names; record text is untrusted, so we
    never leave escaping to a suffix.
    """
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder or templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
