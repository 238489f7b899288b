"""Where feeds finds its own files. Kept free of heavy imports: the no-change check uses it."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """The bundled templates: inside the package when installed from a wheel, the
    repository's top-level ``templates/`` in a checkout or editable install."""
    installed = _PACKAGE / "templates"
    return installed if installed.is_dir() else _PACKAGE.parent / "templates"
