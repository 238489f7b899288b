"""The ``feeds`` command: parse flags, call :mod:`feeds.api`, print what happened."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from feeds import __version__
from feeds.config import CADENCES, CONFIG_NAME, Config, find_config, load_config, missing_state_db
from feeds.errors import FeedsError
from feeds.report import BuildReport

if TYPE_CHECKING:  # the library is imported only by the commands that need it: start-up
    from feeds import api  # time is most of a rebuild that has nothing to do

PROGRESS_AFTER = 500  # records; smaller runs finish before a bar is worth drawing


CONFIG_HELP = "YAML config file.  [default: $FEEDS_CONFIG, else ./feeds.yaml if there is one]"


def parse_moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO-8601 moment, such as 2020-06-18T00:00:00Z, as aware UTC; without a zone, UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        # OverflowError: in UTC it falls outside years 1-9999 (9999-12-31T23:00:00-12:00)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 date or time, such as 2020-06-18T00:00:00Z"
        ) from None


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Commands(click.Group):
    """Every error feeds raises on purpose (a bad config, an unreachable database, a port
    that is taken) ends a command with one line naming its culprit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FeedsError as e:
            raise click.ClickException(str(e)) from e


class BuildDone(SystemExit):
    """A build's files are written and closed and its report printed: the process may
    end at once (see :func:`exit_now`)."""


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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


# The records a ranking reads, and as of when: what build and explain share.
seeds_option = click.option("--seeds", type=click.Path(file_okay=False, path_type=Path),
                            help="Folder of record files.  [default: seeds, or the config's seeds]")


def ranking_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and ``--now``, as build and explain take them."""
    command = click.option("--now", metavar="ISO-8601", callback=parse_moment,
                           help="Rank as if it were this moment (default: the clock).")(command)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                        help=CONFIG_HELP)(command)


@cli.command()
@seeds_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write feeds into.  [default: out, or the config's out]")
@ranking_options
@click.option("--strict", is_flag=True, help="Exit with status 1 if any record or topic file was skipped.")
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
    config = _config(config_path)
    config = replace(config, seeds=seeds or config.seeds, out=out or config.out)
    checked = None
    if config.seeds.is_dir():
        # Nothing changed? Then say so without loading the library or any record.
        from feeds import manifest

        checked = manifest.precheck(config, config.seeds, config.out, moment, use_cache=not no_cache)
    report = checked.report if checked else None
    if report is None:
        from feeds import api, logs

        logs.setup(click.get_current_context().obj or "warning")
        with _progress() as progress:
            report = api.build(config, now=moment, progress=progress, use_cache=not no_cache, checked=checked)
    print_report(report, config.out, time.perf_counter() - started)
    raise BuildDone(1 if strict and report.failed else 0)


@cli.command()
@click.argument("url")
@click.option("--topic", metavar="SLUG", help="Only this topic's feed (default: every feed the article is in).")
@seeds_option
@ranking_options
def explain(url: str, topic: str | None, seeds: Path | None, config_path: Path | None, now: datetime | None) -> None:
    """Say why the article at URL is where it is in each feed: its quality, age and score,
    its rank, its story and coverage, and what kept it out.

    Example: feeds explain https://www.digitaljournal.com/pr/5061426 --now 2021-06-03T00:00:00Z
    """
    from feeds import api
    found = api.explain(_config(config_path), url, now=now or utc_now(), seeds=seeds, topic=topic)
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
                             help=CONFIG_HELP)
reactivate_option = click.option("--reactivate", is_flag=True,
                                 help="Subscribe again people who unsubscribed, complained or bounced.")


def _config(path: Path | None) -> Config:
    """The config named by --config, else FEEDS_CONFIG, else ./feeds.yaml, else the defaults."""
    return load_config(find_config(path))


@cli.group()
def subscribers() -> None:
    """Manage digest subscribers (kept in the state database).

    Example: feeds subscribers add ada@example.org --topics ai,computer-vision
    """


@subscribers.command("add")
@click.argument("email")
@click.option("--topics", required=True,
              help="Comma-separated topic slugs, names or shortnames; 'all' for everything.")
@click.option("--cadence", type=click.Choice(list(CADENCES)), default="daily", show_default=True,
              help="How often the digest comes.")
@reactivate_option
@config_option
def subscribers_add(email: str, topics: str, cadence: str, reactivate: bool, config_path: Path | None) -> None:
    """Subscribe EMAIL (or change their topics and cadence).

    Someone who unsubscribed, complained or bounced is not subscribed again without
    --reactivate. Example: feeds subscribers add ada@example.org --topics "ai,AI Ethics"
    """
    from feeds import api
    done = api.add_subscriber(_config(config_path), email, topics.split(","), cadence, now=utc_now(),
                              reactivate=reactivate)
    if done.outcome == "not reactivated":
        click.echo(f"left {done.describe()}", err=True)
        raise SystemExit(1)
    person = done.subscriber
    click.echo(f"{done.outcome.capitalize()} {person.email}: {person.cadence}, {', '.join(person.topics)}")


@subscribers.command("remove")
@click.argument("email")
@config_option
def subscribers_remove(email: str, config_path: Path | None) -> None:
    """Remove EMAIL and their delivery history."""
    from feeds import api
    try:
        removed = api.remove_subscriber(_config(config_path), email)
    except FeedsError as e:  # a state database that cannot be opened: one line, no traceback
        raise click.ClickException(str(e)) from e
    if not removed:
        raise click.ClickException(f"{email} is not a subscriber")
    click.echo(f"Removed {email}")


@subscribers.command("list")
@click.option("--history", is_flag=True, help="Under each subscriber, every change of their status.")
@config_option
def subscribers_list(history: bool, config_path: Path | None) -> None:
    """List every subscriber: address, cadence, topics and status (active, paused, or how
    they left).  Example: feeds subscribers list --history"""
    from feeds import api
    config = _config(config_path)
    people = api.list_histories(config)
    for person, changes in people:
        click.echo(f"{person.email}\t{person.cadence}\t{','.join(person.topics)}  ({api.describe_status(person)})")
        for change in changes if history else ():
            reason = f"  {change.reason}" if change.reason else ""
            click.echo(f"  {change.at:%Y-%m-%dT%H:%M:%SZ}  {change.status} ({change.source}){reason}")
    counts = Counter(person.status for person, _ in people)
    others = "".join(f", {counts[status]} {status}" for status in sorted(counts) if status != "active")
    missing = missing_state_db(config.state_db)
    none_yet = f" (no state database yet at {missing})" if missing else ""
    click.echo(f"{_plural(len(people), 'subscriber')}, {counts['active']} active{others}{none_yet}.", err=True)


@subscribers.command("export")
@click.argument("email")
@config_option
def subscribers_export(email: str, config_path: Path | None) -> None:
    """Print everything held about EMAIL as JSON: their row, status history, delivery
    ledger, anything else keyed to them, and outbox files addressed to them.

    Example: feeds subscribers export ada@example.org > ada.json
    """
    import json

    from feeds import api
    data = api.export_subscriber(_config(config_path), email)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@subscribers.command("erase")
@click.argument("email")
@config_option
def subscribers_erase(email: str, config_path: Path | None) -> None:
    """Erase EMAIL: keep only what exactly-once delivery and "never mail again" need,
    the address replaced by a keyed hash (HMAC-SHA256 under the state secret).

    Added again later, someone who had left stays suppressed (without --reactivate);
    someone erased while subscribed is subscribed afresh. Example: feeds subscribers erase ada@example.org
    """
    from feeds import api
    erased = api.erase_subscriber(_config(config_path), email, now=utc_now())
    click.echo(f"Erased {email.strip()}: kept as {erased.email[:19]}… ({erased.status}), "
               "with its status history and delivery ledger and no address in clear")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@reactivate_option
@config_option
def subscribers_import(file: Path, reactivate: bool, config_path: Path | None) -> None:
    """Subscribe everyone in a CSV FILE with columns email, topics and (optional) cadence.

    Topics are separated by commas or semicolons. People who unsubscribed, complained or
    bounced are reported and left alone without --reactivate.
    Example: feeds subscribers import people.csv
    """
    from feeds import api
    report = api.import_subscribers(_config(config_path), file, now=utc_now(), reactivate=reactivate)
    for error in report.errors:
        click.echo(f"skipped {error}", err=True)
    for line in report.not_reactivated:
        click.echo(f"left {line}", err=True)
    click.echo(f"Imported {report.added} new, {report.updated} updated, {report.unchanged} unchanged, "
               + (f"{report.reactivated} reactivated, " if reactivate else "")
               + f"{len(report.not_reactivated)} not reactivated, {len(report.errors)} skipped.")


@subscribers.command("purge")
@click.option("--now", callback=parse_moment, help="Purge as if it were this moment (ISO 8601).  [default: now]")
@config_option
def subscribers_purge(now: datetime | None, config_path: Path | None) -> None:
    """Delete the web sign-ups nobody confirmed within signup.purge_after_hours.

    The daemon (feeds run) does this every hour by itself.
    Example: feeds subscribers purge
    """
    from feeds import api
    purged = api.purge_unconfirmed(_config(config_path), now or utc_now())
    click.echo(f"Purged {_plural(len(purged), 'unconfirmed sign-up')}.")


@cli.group()
def inbox() -> None:
    """Act on what came back to the digest's From address: bounces, complaints, unsubscribes.

    Example: feeds inbox process --maildir /var/mail/digest
    """


@inbox.command("process")
@click.option("--maildir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A Maildir folder: its new messages are read, then marked seen.")
@click.option("--mbox", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An mbox file: every message is read; the file is not changed.")
@config_option
def inbox_process(maildir: Path | None, mbox: Path | None, config_path: Path | None) -> None:
    """Apply delivery reports (hard bounces), abuse complaints and mailto unsubscribe
    requests to the subscribers they are about, one line per message.

    Example: feeds inbox process --mbox /var/mail/digest --config feeds.yaml
    """
    if (maildir is None) == (mbox is None):
        raise click.UsageError("give one of --maildir DIR or --mbox FILE")
    from feeds import api
    report = api.process_inbox(_config(config_path), now=utc_now(), maildir=maildir, mbox=mbox)
    for line in report.lines:
        click.echo(str(line))
    counts = report.counts()
    outcomes = ("bounced", "complained", "unsubscribed", "soft bounce", "unchanged", "ignored")
    click.echo(f"Processed {_plural(len(report.lines), 'message')}: "
               + ", ".join(f"{counts[o]} {o}" for o in outcomes) + ".")


@cli.command()
@click.option("--date", "date", metavar="ISO-8601", callback=parse_moment,
              help="End of the period the edition covers (default: now).")
@click.option("--send", is_flag=True, help="Send by SMTP (default: write .eml files to out/outbox/).")
@click.option("--cadence", type=click.Choice(list(CADENCES)),
              help="Only subscribers of this cadence (default: everyone).")
@click.option("--preview", is_flag=True,
              help="Render one edition with no subscriber into out/preview/; publishes nothing.")
@click.option("--topics", help="With --preview or --test-to: comma-separated topics "
                               "(default: every top-level topic).")
@click.option("--test-to", "test_to", metavar="EMAIL",
              help="Send one real edition to EMAIL only; records nothing, and its unsubscribe link is inert.")
@click.option("--as", "as_subscriber", metavar="SUBSCRIBER",
              help="With --test-to: the edition this subscriber (an address) would get.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder.  [default: out]")
@config_option
def digest(date: datetime | None, send: bool, cadence: str | None, preview: bool, topics: str | None,
           test_to: str | None, as_subscriber: str | None, out: Path | None, config_path: Path | None) -> None:
    """Make this period's digest edition for every subscriber.

    Example: feeds digest --date 2020-06-18T00:00:00Z --send

    Example: feeds digest --test-to me@example.org --as ada@example.org
    """
    from feeds import api
    config = _config(config_path)
    if out:
        config = replace(config, out=out)
    if as_subscriber and (topics or not test_to):
        raise click.UsageError("--as goes with --test-to, and instead of --topics")
    if test_to and (send or preview):
        raise click.UsageError("--test-to sends one message by itself: no --send or --preview with it")
    chosen = [t for t in (topics or "").split(",") if t.strip()]
    if test_to:
        _send_test(config, test_to, date=date, subscriber=as_subscriber, topics=chosen, cadence=cadence)
        return
    if preview:
        path, edition = api.preview(config, now=date or utc_now(), topics=chosen, cadence=cadence or "daily")
        click.echo(f"Preview of {_plural(len(edition.stories), 'story')} written to {config.out}/{path}")
        return
    with _stop_on_sigterm() as stopping:
        report = api.digest(config, now=utc_now(), date=date, send=send, cadence=cadence,
                            should_stop=stopping.is_set)
    print_digest_report(report, config.out, sent=send)
    # Only failures new in this run fail it: deferred messages are retried by later runs,
    # and an address refused yesterday must not fail every run from now on.
    if report.failed:
        raise SystemExit(1)


def _send_test(config: Config, to: str, *, date: datetime | None, subscriber: str | None,
               topics: list[str], cadence: str | None) -> None:
    from feeds import api
    sent = api.send_test(config, to=to, now=utc_now(), date=date, subscriber=subscriber, topics=topics,
                         cadence=cadence)
    edition = sent.edition
    what = f"{edition.cadence} edition of {edition.day.isoformat()} ({', '.join(edition.topics)})"
    count = _plural(len(edition.stories), "story")
    if sent.left_out:
        count += f", {sent.left_out} left for the web copy"
    if sent.outcome.status != "sent":
        click.echo(f"Test message to {sent.to} not sent: {sent.outcome.detail}", err=True)
        raise SystemExit(1)
    click.echo(f"Sent a test of the {what} to {sent.to}: {count}. Nothing was recorded.")


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[threading.Event]:
    """SIGTERM stops a digest between messages (the one being sent finishes and is
    recorded) instead of killing it mid-message."""
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopping  # signals can only be handled in the main thread (CliRunner in tests)
        return
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    try:
        yield stopping
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_digest_report(report: api.DigestReport, out: Path, *, sent: bool) -> None:
    """The run's lines, then its summary, which starts with what it did: "Sent ..." for a
    ``--send`` run, "wrote ... to out/outbox/" for one without (even if it wrote nothing)."""
    for address in report.no_news:
        click.echo(f"no new stories for {address}: no email", err=True)
    for line in report.not_due:
        click.echo(f"not due   {line}", err=True)
    for line in report.failed:
        click.echo(f"failed  {line}", err=True)
    for line in report.failed_before:
        click.echo(f"failed before {line}", err=True)
    for line in report.deferred:
        click.echo(f"deferred {line} (the next run tries again)", err=True)
    for address in report.elsewhere:
        click.echo(f"elsewhere {address}: another run is sending it", err=True)
    for line in report.paused:
        click.echo(f"paused  {line}", err=True)
    for line in report.resumed:
        click.echo(f"resumed {line} (the pause is over)", err=True)
    if report.queued_for_workers:
        click.echo(f"Queued {_plural(report.queued, 'subscriber')} in {_plural(report.batches, 'batch')} "
                   f"for feeds worker, {len(report.suppressed)} suppressed; feeds status shows their progress.")
        if report.web_copies:
            click.echo(f"Web copies: {', '.join(f'{out}/{p}' for p in report.web_copies)}")
        return
    if sent:
        parts = [f"Sent {_plural(len(report.sent), 'message')}"]
    else:
        parts = [f"wrote {_plural(len(report.written), 'message')} to {out}/outbox/"]
    parts += [f"{len(report.deferred)} deferred", f"{len(report.failed)} failed",
              f"{len(report.suppressed)} suppressed"]
    click.echo(", ".join(parts) + "; " + ", ".join([
        f"{len(report.already)} already had this edition", f"{len(report.no_news)} had no new stories",
        f"{len(report.not_due)} not due yet", f"{len(report.elsewhere)} sent by another run",
    ]) + ".")
    if report.web_copies:
        click.echo(f"Web copies: {', '.join(f'{out}/{p}' for p in report.web_copies)}")
    if report.stop_reason:
        click.echo(f"Stopped: {report.stop_reason}. The next run goes on from there.")
    elif report.stopped:
        click.echo("Stopped before everyone was handled; the next run goes on from there.")


def _listen_options(command: Any) -> Any:
    command = click.option("--port", type=click.IntRange(0, 65535),
                           help="Port to listen on; wins over serve.port.  [default: 8000]")(command)
    return click.option("--host", help="Address to listen on; wins over serve.host.  [default: 127.0.0.1]")(command)


def _listening(config: Config, host: str | None, port: int | None) -> Config:
    """``config`` with --host and --port (flags win over the file)."""
    return replace(config, serve=replace(config.serve, host=host or config.serve.host,
                                         port=config.serve.port if port is None else port))


@cli.command()
@config_option
@click.option("--no-serve", is_flag=True, help="Only run the jobs; do not serve out/ over HTTP.")
@_listen_options
def run(config_path: Path | None, no_serve: bool, host: str | None, port: int | None) -> None:
    """Run the daemon: rebuild feeds and send digests on schedule, and serve out/.

    Stops gracefully on SIGTERM or Ctrl-C: a digest being sent finishes its current
    message. A port that is taken, or a server that stops, ends it with status 1.
    Example: feeds --log-level info run --config /etc/feeds/feeds.yaml --port 8080
    """
    from feeds.scheduler import Daemon

    found = find_config(config_path)
    config = _listening(load_config(found), host, port)
    # The jobs reload the config by its path, from a folder that may not be this one.
    daemon = Daemon(config, str(found.resolve()) if found else None, serve=not no_serve)

    def stop(signum: int, _frame: object) -> None:
        daemon.request_stop()

    # Before start(): its jobs run (and log) as soon as the scheduler starts, and a SIGTERM
    # then must stop the daemon gracefully, not kill it mid-job.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.start()
    click.echo(f"feeds daemon running (pid {os.getpid()}); SIGTERM or Ctrl-C stops it.", err=True)
    daemon.wait()
    daemon.shutdown()
    if daemon.failure is not None:
        raise daemon.failure


@cli.command()
@config_option
@_listen_options
def serve(config_path: Path | None, host: str | None, port: int | None) -> None:
    """Serve out/ over HTTP, with one-click unsubscribe, until interrupted.

    A port that is taken ends it with status 1 before it serves anything.
    Example: feeds serve --config feeds.yaml --port 8080
    """
    from feeds import api

    config = _listening(_config(config_path), host, port)
    api.serve(config, listening=lambda url: click.echo(f"Serving {config.out}/ on {url}", err=True))


@cli.command()
@config_option
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Batches this worker sends at once, each on an SMTP connection of its own.")
def worker(config_path: Path | None, threads: int) -> None:
    """Send the digest batches queued on queue.url, until SIGTERM or Ctrl-C.

    Run as many as the list needs, on as many machines, with one config: they share the
    state database, the queue and the SMTP rate limits. On SIGTERM the batch in hand
    finishes its current message and goes back to the queue.
    Example: feeds --log-level info worker --config /etc/feeds/feeds.yaml
    """
    from feeds.queue import run_worker

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
        signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    run_worker(_config(config_path), threads=threads, stop=stop, ready=lambda name: click.echo(
        f"feeds worker running ({name}, {_plural(threads, 'thread')}); SIGTERM or Ctrl-C stops it.", err=True))


@cli.command()
@config_option
def status(config_path: Path | None) -> None:
    """Show the files in use (config, state database, cache, output folder), the
    scheduled jobs with their next run and last result, and which daemon runs them;
    with queue.url, the queue and its workers (Redis not answering: all the rest, then
    one error line and exit status 1); the latest editions' deliveries."""
    from feeds import api

    found = api.service_status(_config(config_path))
    if found.config is None and found.state_missing:  # most likely the wrong folder
        raise click.ClickException(
            f"no config file (no --config, $FEEDS_CONFIG or ./{CONFIG_NAME}) and no state database at "
            f"{found.state_missing}: nothing has run here; give --config or run from the config's folder")
    none_yet = " (none yet: nothing has been recorded)" if found.state_missing else ""
    click.echo(f"Config:         {found.config or 'none (the defaults, in the current folder)'}")
    click.echo(f"State database: {found.state_db}{none_yet}")
    click.echo(f"Cache:          {found.cache_db}")
    click.echo(f"Output folder:  {found.out}")
    now = utc_now()
    lease = found.lease
    if lease is None or lease.expires_at < now:
        click.echo("Daemon: not running")
    else:
        click.echo(f"Daemon: running ({lease.description}), lease until {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC")
    if not found.jobs:
        click.echo("No jobs scheduled yet: start the daemon with feeds run.")
    for job in found.jobs:
        next_run = f"{job.next_run:%Y-%m-%d %H:%M %Z}" if job.next_run else "paused"
        click.echo(f"{job.id:<14} {job.trigger:<34} next {next_run}")
        if job.last:
            last = job.last
            click.echo(f"{'':<14} last {last.status} at {last.finished_at:%Y-%m-%d %H:%M:%S} UTC: {last.summary}")
    if found.queue_error is None:
        print_queue_status(found.queue)
    for progress in found.editions:
        counts = progress.counts
        click.echo(f"Edition {progress.edition}: " + ", ".join(
            f"{counts.get(status, 0)} {status}" for status in ("claimed", "sent", "deferred", "failed")))
    if found.queue_error is not None:
        raise click.ClickException(found.queue_error)


def print_queue_status(queue: api.QueueStatus | None) -> None:
    if queue is None:
        click.echo("Queue: none (digests are sent inline)")
        return
    click.echo(f"Queue: {queue.url}: {_plural(queue.waiting, 'batch')} waiting, {queue.in_hand} in hand, "
               f"{queue.retrying} waiting to retry, {queue.dead} given up")
    click.echo(f"Workers: {len(queue.workers)} seen" + (":" if queue.workers else ""))
    for seen in queue.workers:
        click.echo(f"  {seen.name}, {_plural(seen.threads, 'thread')}, since {seen.started}, last seen {seen.seen}")


@cli.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
def init(folder: Path | None) -> None:
    """Write a commented starter feeds.yaml into FOLDER (default: the current folder),
    every key at its default. Never overwrites one.

    Example: feeds init /etc/feeds
    """
    from feeds import api

    path = api.init(folder or Path())
    click.echo(f"Wrote {path}: every key at its default. Relative paths in it are resolved against its folder.")


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
    lines = [f"skipped {error}" for error in (*report.topic_errors, *report.skipped)]
    lines += [f"note    {note}" for note in report.notes]
    if lines:  # one write: click.echo flushes each call, a system call per line of hundreds
        click.echo("\n".join(lines), err=True)
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
        f"{_plural(len(report.topics), 'topic')} (+ all)"
        + (f", {_plural(len(report.topic_errors), 'topic file')} skipped" if report.topic_errors else "")
        + f". Wrote {_plural(len(report.written), 'file')}"
        f" to {out}/, {len(report.unchanged)} unchanged"
        + (f", {len(report.removed)} removed" if report.removed else "")
        + f", in {elapsed:.2f} s."
    )


def _plural(count: int, noun: str) -> str:
    """"1 story", "2 stories", "3 messages"."""
    if count == 1:
        return f"1 {noun}"
    if noun.endswith(("ch", "sh", "s", "x")):  # "2 batches"
        return f"{count} {noun}es"
    return f"{count} {noun[:-1]}ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else f"{count} {noun}s"


def exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown, which, freeing every record's
    summary one by one, adds ~30 ms to a quick rebuild for nothing (mypy exits the same way).
    Only for a command whose files are written and closed and whose output is printed."""
    logging = sys.modules.get("logging")  # imported only by a build that had work
    if logging is not None:
        logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    try:
        cli(prog_name="feeds")
    except BuildDone as done:
        exit_now(done.code if isinstance(done.code, int) else 1)
