"""The ``feeds`` command: parse flags, call :mod:`feeds.api`, print what happened."""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from feeds import __version__
from feeds.config import CADENCES, Config, load_config
from feeds.errors import FeedsError
from feeds.report import BuildReport

if TYPE_CHECKING:  # the library is imported only by the commands that need it: start-up
    from feeds import api  # time is most of a rebuild that has nothing to do

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
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="How much to log to stderr, as one JSON object per line.")
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """Ranked per-topic RSS, Atom and JSON feeds from a folder of news-article records."""
    ctx.obj = log_level
    if ctx.invoked_subcommand != "build":  # build sets logging up once it has work to do
        from feeds import logs

        logs.setup(log_level)


@cli.command()
@click.option("--seeds", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of record files.  [default: seeds, or the config's seeds]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write feeds into.  [default: out, or the config's out]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config file.")
@click.option("--now", metavar="ISO-8601", callback=parse_moment, help="Rank as if it were this moment (default: the clock).")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any record was skipped.")
@click.option("--no-cache", is_flag=True, help="Parse every record again, ignoring the parse cache.")
def build(seeds: Path | None, out: Path | None, config_path: Path | None,
          now: datetime | None, strict: bool, no_cache: bool) -> None:
    """Build ranked per-topic feeds, the OPML list and the index page.

    Example: feeds build --seeds ../shared/corpus/power-apps/articles --now 2021-06-03T00:00:00Z
    """
    started = time.perf_counter()
    # A build makes a few long-lived objects per record; the collector's default (a pass
    # every 700 allocations) walks them over and over for nothing. Less often, as mypy does.
    gc.set_threshold(100_000, 20, 20)
    moment = now or utc_now()
    try:
        config = load_config(config_path)
        config = replace(config, seeds=seeds or config.seeds, out=out or config.out)
        report = inputs = scanned = None
        if not no_cache and config.seeds.is_dir():
            # Nothing changed? Then say so without loading the library or any record.
            from feeds import manifest
            from feeds.paths import templates_dir

            scanned = manifest.scan(config.seeds)
            inputs = manifest.fingerprint(config, config.seeds, templates_dir(), scanned)
            report = manifest.check(inputs, config.out, moment)
        if report is None:
            from feeds import api, logs

            logs.setup(click.get_current_context().obj or "warning")

            with _progress() as progress:
                report = api.build(config, now=moment, progress=progress, use_cache=not no_cache,
                                   inputs=inputs, scanned=scanned)
    except FeedsError as e:
        raise click.ClickException(str(e)) from e
    print_report(report, config.out, time.perf_counter() - started)
    global _built
    _built = True
    if strict and report.skipped:
        raise SystemExit(1)


@cli.command()
@click.argument("url")
@click.option("--topic", metavar="SLUG", help="Only this topic's feed (default: every feed the article is in).")
@click.option("--seeds", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of record files.  [default: seeds, or the config's seeds]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config file.")
@click.option("--now", metavar="ISO-8601", callback=parse_moment, help="Rank as if it were this moment (default: the clock).")
def explain(url: str, topic: str | None, seeds: Path | None, config_path: Path | None, now: datetime | None) -> None:
    """Say why the article at URL is where it is in each feed: its quality, age and score,
    its rank, its story and coverage, and what kept it out.

    Example: feeds explain https://www.digitaljournal.com/pr/5061426 --now 2021-06-03T00:00:00Z
    """
    from feeds import api
    try:
        found = api.explain(_config(config_path), url, now=now or utc_now(), seeds=seeds, topic=topic)
    except FeedsError as e:
        raise click.ClickException(str(e)) from e
    print_explanation(found)


def print_explanation(found: api.Explanation) -> None:
    article = found.article
    click.echo(f"{article.title}\n  {article.url}")
    outlet = article.provider.name if article.provider else "no outlet"
    quality = f"{article.quality:g}" + (" (assumed: median)" if found.assumed else "")
    days = found.age.total_seconds() / 86400
    click.echo(f"  {outlet}, published {article.published:%Y-%m-%d %H:%M} UTC ({days:.1f} days old)")
    click.echo(f"  quality {quality}, score {found.score:.4g}")
    for place in found.placements:
        rank = f"ranked {place.position} of {place.eligible}" if place.position else f"{place.eligible} eligible"
        click.echo(f"{place.name} ({place.slug}): {rank}; {place.fate}: {place.reason}")
        if place.lead is not None:
            click.echo(f"  lead: {place.lead.title} ({place.lead.url})")
        for c in place.coverage:
            click.echo(f"  also covered by {c.provider.name if c.provider else '?'}: {c.url}")


config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                             help="YAML config file.")


def _config(path: Path | None) -> Config:
    try:
        return load_config(path)
    except FeedsError as e:
        raise click.ClickException(str(e)) from e


@cli.group()
def subscribers() -> None:
    """Manage digest subscribers (kept in the state database).

    Example: feeds subscribers add ada@example.org --topics ai,computer-vision
    """


@subscribers.command("add")
@click.argument("email")
@click.option("--topics", required=True, help="Comma-separated topic slugs or names; 'all' for everything.")
@click.option("--cadence", type=click.Choice(list(CADENCES)), default="daily", show_default=True,
              help="How often the digest comes.")
@config_option
def subscribers_add(email: str, topics: str, cadence: str, config_path: Path | None) -> None:
    """Subscribe EMAIL (or change their topics and cadence)."""
    from feeds import api
    try:
        person, created = api.add_subscriber(_config(config_path), email, topics.split(","), cadence, now=utc_now())
    except FeedsError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{'Added' if created else 'Updated'} {person.email}: {person.cadence}, {', '.join(person.topics)}")


@subscribers.command("remove")
@click.argument("email")
@config_option
def subscribers_remove(email: str, config_path: Path | None) -> None:
    """Remove EMAIL and their delivery history."""
    from feeds import api
    if not api.remove_subscriber(_config(config_path), email):
        raise click.ClickException(f"{email} is not a subscriber")
    click.echo(f"Removed {email}")


@subscribers.command("list")
@config_option
def subscribers_list(config_path: Path | None) -> None:
    """List every subscriber: address, cadence, topics, and whether they left."""
    from feeds import api
    people = api.list_subscribers(_config(config_path))
    for person in people:
        left = "" if person.active else "  (unsubscribed)"
        click.echo(f"{person.email}\t{person.cadence}\t{','.join(person.topics)}{left}")
    click.echo(f"{_plural(len(people), 'subscriber')}, {sum(p.active for p in people)} active.", err=True)


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@config_option
def subscribers_import(file: Path, config_path: Path | None) -> None:
    """Subscribe everyone in a CSV FILE with columns email, topics and (optional) cadence."""
    from feeds import api
    try:
        report = api.import_subscribers(_config(config_path), file, now=utc_now())
    except FeedsError as e:
        raise click.ClickException(str(e)) from e
    for error in report.errors:
        click.echo(f"skipped {error}", err=True)
    click.echo(f"Imported {report.added} new, {report.updated} updated, {len(report.errors)} skipped.")


@cli.command()
@click.option("--date", "date", metavar="ISO-8601", callback=parse_moment,
              help="End of the period the edition covers (default: now).")
@click.option("--send", is_flag=True, help="Send by SMTP (default: write .eml files to out/outbox/).")
@click.option("--cadence", type=click.Choice(list(CADENCES)),
              help="Only subscribers of this cadence (default: everyone).")
@click.option("--preview", is_flag=True, help="Render one edition with no subscriber: the web copy.")
@click.option("--topics", help="With --preview: comma-separated topics (default: every top-level topic).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder.  [default: out]")
@config_option
def digest(date: datetime | None, send: bool, cadence: str | None, preview: bool, topics: str | None,
           out: Path | None, config_path: Path | None) -> None:
    """Make this period's digest edition for every subscriber.

    Example: feeds digest --date 2020-06-18T00:00:00Z --send
    """
    from feeds import api
    config = _config(config_path)
    if out:
        config = replace(config, out=out)
    try:
        if preview:
            path, edition = api.preview(config, now=date or utc_now(), topics=(topics or "").split(",") if topics else (),
                                        cadence=cadence or "daily")
            click.echo(f"Preview of {len(edition.stories)} stories written to {config.out}/{path}")
            return
        report = api.digest(config, now=utc_now(), date=date, send=send, cadence=cadence)
    except FeedsError as e:
        raise click.ClickException(str(e)) from e
    print_digest_report(report, config.out)
    if report.failed or report.deferred:
        raise SystemExit(1)


def print_digest_report(report: api.DigestReport, out: Path) -> None:
    for address in report.no_news:
        click.echo(f"no new stories for {address}: no email", err=True)
    for line in report.failed:
        click.echo(f"failed  {line}", err=True)
    for line in report.deferred:
        click.echo(f"deferred {line} (the next run tries again)", err=True)
    parts = []
    if report.sent or not report.written:
        parts.append(f"Sent {_plural(len(report.sent), 'message')}")
    if report.written:
        parts.append(f"wrote {_plural(len(report.written), 'message')} to {out}/outbox/")
    parts += [f"{len(report.already)} already had this edition", f"{len(report.no_news)} had no new stories"]
    if report.failed or report.deferred:
        parts.append(f"{len(report.failed)} failed, {len(report.deferred)} deferred")
    click.echo(", ".join(parts) + ".")
    if report.web_copies:
        click.echo(f"Web copies: {', '.join(f'{out}/{p}' for p in report.web_copies)}")
    if report.stopped:
        click.echo("Stopped before everyone was handled; the next run goes on from there.")


@cli.command()
@config_option
@click.option("--no-serve", is_flag=True, help="Only run the jobs; do not serve out/ over HTTP.")
def run(config_path: Path | None, no_serve: bool) -> None:
    """Run the daemon: rebuild feeds and send digests on schedule, and serve out/.

    Stops gracefully on SIGTERM or Ctrl-C: a digest being sent finishes its current
    message. Example: feeds --log-level info run --config /etc/feeds/feeds.yaml
    """
    import signal

    from feeds.scheduler import Daemon

    config = _config(config_path)
    daemon = Daemon(config, str(config_path.resolve()) if config_path else None, serve=not no_serve)
    try:
        daemon.start()
    except FeedsError as e:
        raise click.ClickException(str(e)) from e

    def stop(signum: int, _frame: object) -> None:
        daemon.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"feeds daemon running (pid {os.getpid()}); SIGTERM or Ctrl-C stops it.", err=True)
    daemon.wait()
    daemon.shutdown()


@cli.command()
@config_option
def serve(config_path: Path | None) -> None:
    """Serve out/ over HTTP, with one-click unsubscribe, until interrupted.

    Example: feeds serve --config feeds.yaml
    """
    from feeds.serve import serve as serve_forever

    config = _config(config_path)
    click.echo(f"Serving {config.out}/ on http://{config.serve.host}:{config.serve.port}/", err=True)
    serve_forever(config)


@cli.command()
@config_option
def status(config_path: Path | None) -> None:
    """Show the scheduled jobs, their next run and last result, and which daemon runs them."""
    from feeds.scheduler import status as job_status

    config = _config(config_path)
    try:
        jobs, lease = job_status(config)
    except FeedsError as e:
        raise click.ClickException(str(e)) from e
    now = utc_now()
    if lease is None or lease.expires_at < now:
        click.echo("Daemon: not running")
    else:
        click.echo(f"Daemon: running ({lease.description}), lease until {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC")
    if not jobs:
        click.echo("No jobs scheduled yet: start the daemon with feeds run.")
    for job in jobs:
        next_run = f"{job.next_run:%Y-%m-%d %H:%M %Z}" if job.next_run else "paused"
        click.echo(f"{job.id:<14} {job.trigger:<34} next {next_run}")
        if job.last:
            click.echo(f"{'':<14} last {job.last.status} at {job.last.finished_at:%Y-%m-%d %H:%M:%S} UTC: {job.last.summary}")


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


def print_report(report: BuildReport, out: Path, elapsed: float) -> None:
    for error in report.skipped:
        click.echo(f"skipped {error}", err=True)
    for note in report.notes:
        click.echo(f"note    {note}", err=True)
    cached = report.records - report.parsed
    click.echo(
        f"Read {_plural(report.records, 'record')}"
        + (f" ({cached} unchanged since the last build)" if cached else "")
        + f": {_plural(report.articles, 'article')}"
        f", {len(report.skipped)} skipped, {report.duplicates} duplicates folded."
    )
    if report.similar:
        click.echo(f"{_plural(report.similar, 'article')} folded into a story with a near-identical title.")
    if report.assumed:
        click.echo(f"{_plural(report.assumed, 'article')} without a quality ranked at the median,"
                   f" {report.neutral_quality:g}.")
    click.echo(
        f"{_plural(len(report.topics), 'topic')} (+ all). Wrote {_plural(len(report.written), 'file')}"
        f" to {out}/, {len(report.unchanged)} unchanged"
        + (f", {len(report.removed)} removed" if report.removed else "")
        + f", in {elapsed:.2f} s."
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


_built = False  # set once a build has written everything and said so


def main() -> None:
    try:
        cli(prog_name="feeds")
    except SystemExit as end:
        if not _built:
            raise
        # A build's files are written and closed and its report printed: the interpreter's
        # teardown, freeing every record's summary one by one, would add ~30 ms to a quick
        # rebuild for nothing (mypy exits the same way).
        logging = sys.modules.get("logging")  # imported only by a build that had work
        if logging is not None:
            logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(end.code if isinstance(end.code, int) else 0 if end.code is None else 1)
