"""The ``feeds`` command: parse flags, call :mod:`feeds.api`, print what happened."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from feeds import __version__, api
from feeds.config import load_config
from feeds.errors import FeedsError

PROGRESS_AFTER = 500  # records; smaller runs finish before a bar is worth drawing


def parse_moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO-8601 moment, such as 2020-06-18T00:00:00Z, as aware UTC; without a zone, UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 date or time, such as 2020-06-18T00:00:00Z"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="feeds")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="How much to log to stderr.")
def cli(log_level: str) -> None:
    """Ranked per-topic RSS, Atom and JSON feeds from a folder of news-article records."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option("--seeds", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of record files.  [default: seeds, or the config's seeds]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write feeds into.  [default: out, or the config's out]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config file.")
@click.option("--now", metavar="ISO-8601", callback=parse_moment, help="Rank as if it were this moment (default: the clock).")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any record was skipped.")
def build(seeds: Path | None, out: Path | None, config_path: Path | None,
          now: datetime | None, strict: bool) -> None:
    """Build ranked per-topic feeds, the OPML list and the index page.

    Example: feeds build --seeds ../shared/corpus/power-apps/articles --now 2021-06-03T00:00:00Z
    """
    started = time.perf_counter()
    try:
        config = load_config(config_path)
        config = replace(config, seeds=seeds or config.seeds, out=out or config.out)
        with _progress() as progress:
            report = api.build(config, now=now or utc_now(), progress=progress)
    except FeedsError as e:
        raise click.ClickException(str(e)) from e
    print_report(report, config.out, time.perf_counter() - started)
    if strict and report.skipped:
        raise SystemExit(1)


class _progress:
    """A progress bar on stderr for long runs on a terminal; nothing otherwise."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __enter__(self) -> api.Progress | None:
        return self.update if sys.stderr.isatty() else None

    def update(self, done: int, total: int) -> None:
        if total < PROGRESS_AFTER:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="Reading records", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(1)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def print_report(report: api.BuildReport, out: Path, elapsed: float) -> None:
    for error in report.skipped:
        click.echo(f"skipped {error}", err=True)
    for note in report.notes:
        click.echo(f"note    {note}", err=True)
    click.echo(
        f"Read {_plural(report.records, 'record')}: {_plural(report.articles, 'article')}"
        f", {len(report.skipped)} skipped, {report.duplicates} duplicates folded."
    )
    click.echo(
        f"{_plural(len(report.topics), 'topic')} (+ all). Wrote {_plural(len(report.written), 'file')}"
        f" to {out}/, {len(report.unchanged)} unchanged, in {elapsed:.2f} s."
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main() -> None:
    cli(prog_name="feeds")
