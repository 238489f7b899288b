"""Shared helpers: write real record files, find the real corpus, run the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from feeds.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
CORPUS = ROOT.parent / "shared" / "corpus" / "power-apps"
DATA = Path(__file__).resolve().parent / "data"


def record(**fields: Any) -> dict[str, Any]:
    """A minimal valid record in Smartable's shape; keyword arguments override or add
    fields, and a value of None removes the field."""
    base: dict[str, Any] = {
        "category": "news",
        "title": "A story",
        "excerpt": "What happened.",
        "publishedDateTime": "2020-06-17T12:00:00Z",
        "webUrl": "https://example.com/a-story",
        "type": "article",
        "quality": 50,
        "heat": 50,
        "published": False,
        "provider": {"name": "Example", "domain": "example.com"},
        "topics": ["AI"],
        "images": [{"url": "https://example.com/a.jpg", "width": 800, "height": 450}],
        "secured": "opaque-secret-value",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def write_record(path: Path, **fields: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    front = yaml.safe_dump(record(**fields), sort_keys=False, allow_unicode=True)
    path.write_text(f"---\n{front}---\n", encoding="utf-8")
    return path


def write_video(path: Path, **fields: Any) -> Path:
    """A video record as Smartable writes them: an iframe in featuredContent (never to be
    output) and the thumbnail as its image. None of the five seeds is a video."""
    video = {
        "title": "Facial recognition: Should police be allowed to use it?",
        "excerpt": "How the technology works, where it fails and why campaigners want it banned.",
        "publishedDateTime": "2020-06-17T11:30:00Z",
        "webUrl": None,
        "originalUrl": "https://youtube.com/watch?v=Xq3m8cWT0yE",
        "type": "video",
        "quality": 110,
        "featuredContent": '<iframe width="800" height="500" src="https://www.youtube.com/embed/Xq3m8cWT0yE"'
                           " allowfullscreen></iframe>",
        "provider": {"name": "BBC", "domain": "bbc.co.uk"},
        "topics": ["AI", "Computer Vision"],
        "images": [{"url": "https://i.ytimg.com/vi/Xq3m8cWT0yE/maxresdefault.jpg", "width": 1280, "height": 720}],
    }
    return write_record(path, **{**video, **fields})


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test from its own folder: the default state database (feeds.db) and out/
    land there, never in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _forget_remembered_indexes() -> None:
    """Each test starts as a new process does: with no parse-cache index in memory."""
    from feeds import cache
    cache._MEMORY.clear()


@pytest.fixture
def corpus() -> Path:
    if not (CORPUS / "articles").is_dir():
        pytest.skip(f"the shared corpus is not beside the checkout ({CORPUS})")
    return CORPUS
