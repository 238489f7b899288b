"""Shared helpers: write real record files, find the real corpus, run the real CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from click.testing import CliRunner, Result

from feeds.cli import cli

if TYPE_CHECKING:
    from tests.redisserver import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
CORPUS = ROOT.parent / "shared" / "corpus" / "power-apps"
DATA = Path(__file__).resolve().parent / "data"


# The quick local default. Tests marked slow (seconds each), browser (Chromium) or bench
# (the benchmark runner) are left out of a bare `pytest` run on a developer's machine, and
# the header and summary say so; CI (CI=true, as .ci/run sets), a marker expression (-m)
# or test paths named on the command line run them. The markers are pyproject.toml's.
QUICK_LEAVES_OUT = ("slow", "browser", "bench")
_LEFT_OUT = pytest.StashKey[int]()  # how many a quick run left out, for its summary


def quick_run(config: pytest.Config) -> bool:
    """Whether this run is the quick local default (see QUICK_LEAVES_OUT)."""
    in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return (not in_ci and not config.option.markexpr
            and config.args_source == pytest.Config.ArgsSource.TESTPATHS)


def pytest_report_header(config: pytest.Config) -> str:
    if quick_run(config):
        return (f"quick run: tests marked {', '.join(QUICK_LEAVES_OUT)} are left out; "
                "run them all with CI=true .venv/bin/pytest")
    return "full run: every test, slow, browser and bench ones included"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not quick_run(config):
        return
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        (left_out if any(item.get_closest_marker(m) for m in QUICK_LEAVES_OUT) else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
    config.stash[_LEFT_OUT] = len(left_out)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _LEFT_OUT in config.stash:
        terminalreporter.write_line(
            f"quick run: {config.stash[_LEFT_OUT]} slow, browser or bench tests left out "
            "(CI=true .venv/bin/pytest runs everything)")


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


@pytest.fixture
def redis_url(redis: RedisServer) -> str:
    """A redis-server of the test's own, on a free loopback port: its URL."""
    return redis.url


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may kill and start again. Skips where
    Debian's redis-server is not installed, unless FEEDS_REQUIRE_REDIS is set (.ci/run sets it)."""
    from tests.redisserver import have_redis, redis_process

    if not have_redis():
        if os.environ.get("FEEDS_REQUIRE_REDIS"):
            pytest.fail("FEEDS_REQUIRE_REDIS is set but redis-server is not installed")
        pytest.skip("no redis-server (apt-get install redis-server)")
    with redis_process() as server:
        yield server
