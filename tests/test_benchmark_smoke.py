"""The benchmark runner keeps working: a tiny run, Hugo included. Benchmarks are not
tests; this checks the runner, not speed."""

from __future__ import annotations

import re
from pathlib import Path

import feedparser
import pytest

from benchmarks import run

pytestmark = pytest.mark.bench  # both run the benchmark runner's code


def test_runner_works_at_200_records(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    run.main(["--sizes", "200", "--repeat", "1", "--data", str(tmp_path / "data"), "--results", str(results),
              "--no-plot", "--digest-subscribers", "40"])
    text = results.read_text()
    for scenario in run.GOALS:
        row = next(line for line in text.splitlines() if line.startswith(f"| 200 | {scenario} |"))
        assert re.search(r"\| \d+\.\d{3} / \d+\.\d{3} / \d+\.\d{3} \|", row), row
    assert re.search(r"personalised editions\s+rendered per second", text)
    assert "## Against issue 5's goals" in text and "| 200 | cold wall / Hugo | ≤ 0.5 |" in text
    # Hugo really built per-topic RSS from the same records.
    hugo_feeds = list((tmp_path / "data/run-200/hugo-out/topics").glob("*/index.xml"))
    feeds_feeds = list((tmp_path / "data/run-200/out/topics").glob("*/rss.xml"))
    assert len(hugo_feeds) >= 30 and len(feeds_feeds) == len(hugo_feeds) + 1  # + all/
    assert "one added (daemon)" in run.GOALS and "| 200 | one added (daemon) wall / Hugo | ≤ 0.05 |" in text
    # The last rebuild was the daemon's after news arrived: the new record leads the all feed.
    entries = feedparser.parse((tmp_path / "data/run-200/out/topics/all/rss.xml").read_bytes()).entries
    assert "/breaking-" in entries[0].link
    assert {"/breaking-1000000", "/breaking-2000000"} <= {e.link[-len("/breaking-1000000"):] for e in entries}
    assert not list((tmp_path / "data/records-200").glob("*breaking*"))  # taken away again
    # Sizes measured in separate runs are plotted together from their results files.
    medians = run.medians_from(results)
    assert set(medians) == {200} and set(medians[200]) == set(run.GOALS)
    assert all(feeds > 0 and hugo > 0 for feeds, hugo in medians[200].values())


def test_plot_from_results_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # the bench extra, not the test one
    results = tmp_path / "RESULTS.md"
    results.write_text("| 1,000 | cold | 0.9 / 1.0 / 1.1 | 0.68 s | 0.67 s | x |\n"
                       "| 1,000 | warm | 0.1 / 0.1 / 0.1 | 0.08 s | 0.68 s | x |\n"
                       "| 1,000 | one changed | 0.3 / 0.3 / 0.3 | 0.21 s | 0.66 s | x |\n"
                       "| 1,000 | one added | 0.3 / 0.3 / 0.3 | 0.24 s | 0.68 s | x |\n", encoding="utf-8")
    assert run.medians_from(results)[1000]["one added"] == (0.24, 0.68)
    run.main(["--plot-from", str(results), "--plot", str(tmp_path / "plot.png")])
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")
