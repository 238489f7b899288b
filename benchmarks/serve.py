"""Serving benchmark: ``feeds serve`` beside ``python -m http.server`` and nginx, on the same out/.

    .venv/bin/python -m benchmarks.serve            # 10,000 synthetic records, 5 s a run
    .venv/bin/python -m benchmarks.serve --records seeds --seconds 3

Builds out/ once (from the seeds, or from N synthetic records made by
:mod:`benchmarks.generate`, cached in --data), then serves it with each server in turn on a
loopback port and measures with wrk (Debian's ``wrk``), 50 connections on 2 threads, full
GETs of the ``all`` topic's rss.xml and GETs asking for gzip. The servers:

- ``feeds serve``, as an operator runs it (uvicorn with uvloop and httptools, installed
  with feeds);
- the same app on uvicorn's pure-Python stack (asyncio, h11), to show what the fast stack
  brings;
- ``python -m http.server`` (it never compresses: its gzip row sends the whole file);
- Debian's nginx with the shipped deploy/nginx/feeds.conf (gzip_static on the build's
  copies), started here with a temporary nginx.conf, as root in the foreground.

Figures go to the "Serving" section of benchmarks/RESULTS.md (the rest of the file is the
build benchmark's, :mod:`benchmarks.run`). Every server is stopped before the next starts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.run import NOW, records_for
from feeds.write import BROTLI_QUALITY, GZIP_LEVEL, compress

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
NGINX_CONF = ROOT / "deploy" / "nginx" / "feeds.conf"
BROTLI = Path("/usr/lib/nginx/modules/ngx_http_brotli_static_module.so")
FEED = "topics/all/rss.xml"
CONNECTIONS = 50
START = "<!-- serving benchmark: python -m benchmarks.serve -->"
END = "<!-- end of serving benchmark -->"


@dataclass
class Row:
    server: str
    full: float        # requests per second
    gzip: float
    full_bytes: int    # the body each request got
    gzip_bytes: int
    encoding: str      # Content-Encoding of the gzip GETs ("" for none)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_site(work: Path, records: str, data: Path) -> Path:
    """A config whose out/ holds a fresh build of the chosen records."""
    seeds = SEEDS if records == "seeds" else records_for(data, int(records))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "feeds.yaml"
    config.write_text(f"seeds: {seeds}\nout: {work / 'out'}\nstate_db: {work / 'state.db'}\n"
                      f"cache_db: {work / 'cache.db'}\nserve:\n  host: 127.0.0.1\n", encoding="utf-8")
    now = "2020-06-18T00:00:00Z" if records == "seeds" else NOW
    built = subprocess.run([sys.executable, "-m", "feeds", "build", "--config", str(config), "--now", now],
                           capture_output=True, text=True)
    if built.returncode != 0:
        raise SystemExit(f"feeds build failed:\n{built.stderr[-2000:]}")
    return config


def wait_up(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{' '.join(map(str, process.args))}: exited with {process.returncode}")  # type: ignore[arg-type]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url}: no answer within {seconds:.0f} s")


@contextmanager
def running(command: list[str], url: str) -> Iterator[None]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def feeds_serve(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "feeds", "serve", "--config", str(_with_port(config, port))]


def feeds_serve_slow_stack(config: Path, port: int) -> list[str]:
    code = ("import uvicorn; from pathlib import Path; from feeds.config import load_config; "
            "from feeds.serve import create_app; "
            f"uvicorn.run(create_app(load_config(Path({str(config)!r}))), host='127.0.0.1', port={port}, "
            "loop='asyncio', http='h11', log_config=None, access_log=False, lifespan='off')")
    return [sys.executable, "-c", code]


def http_server(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
            "--directory", str(config.parent / "out")]


def nginx_main_conf(folder: Path, *, workers: str, connections: int) -> str:
    """The nginx.conf around a server block in ``folder/feeds.conf`` (the shipped one, edited
    by the caller): root's own worker (a tmp folder is private to root), every file nginx
    writes kept in ``folder``, and the brotli_static module where Debian's package is there.
    The benchmark and tests/test_nginx.py run nginx from this one wrapper."""
    return f"""
user root;
worker_processes {workers};
pid {folder}/nginx.pid;
error_log {folder}/error.log;
{f"load_module {BROTLI};" if BROTLI.exists() else ""}
events {{ worker_connections {connections}; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/feeds.conf;
}}
"""


def nginx(config: Path, port: int) -> list[str]:
    """Debian's nginx with the shipped server block, its root and port replaced."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    folder = config.parent / "nginx"
    folder.mkdir(exist_ok=True)
    block = NGINX_CONF.read_text()
    if not BROTLI.exists():
        block = block.replace("brotli_static on;", "")
    block = (block.replace("root /var/lib/feeds/out;", f"root {config.parent / 'out'};")
             .replace("listen 80;", f"listen 127.0.0.1:{port} reuseport;")
             .replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{free_port()};"))
    (folder / "feeds.conf").write_text(block)
    (folder / "nginx.conf").write_text(nginx_main_conf(folder, workers="auto", connections=1024))
    return [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"]


SERVERS = {  # --servers name: (label in RESULTS.md, command)
    "feeds": ("`feeds serve` (uvloop, httptools)", feeds_serve),
    "feeds-h11": ("`feeds serve`'s app on asyncio + h11", feeds_serve_slow_stack),
    "http.server": ("`python -m http.server`", http_server),
    "nginx": ("nginx 1.22, deploy/nginx/feeds.conf", nginx),
}


def _with_port(config: Path, port: int) -> Path:
    """A copy of the config that serves on ``port`` (flags belong to another part of the CLI)."""
    copy = config.with_name(f"feeds-{port}.yaml")
    copy.write_text(config.read_text().replace("  host: 127.0.0.1\n", f"  host: 127.0.0.1\n  port: {port}\n"))
    return copy


def wrk(url: str, seconds: int, headers: dict[str, str]) -> float:
    """Requests per second over ``seconds``; a run with errors or non-2xx answers is refused."""
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"wrk {url}: {output}")
    found = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if found is None:
        raise SystemExit(f"wrk {url}: no Requests/sec in {output!r}")
    return float(found.group(1))


def probe(url: str, headers: dict[str, str]) -> tuple[int, str]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return len(response.read()), response.headers.get("Content-Encoding", "")


def measure(config: Path, seconds: int, servers: list[str]) -> list[Row]:
    rows = []
    zipped = {"Accept-Encoding": "gzip"}
    for name in servers:
        port = free_port()
        url = f"http://127.0.0.1:{port}/{FEED}"
        label, command = SERVERS[name]
        with running(command(config, port), url):
            full_bytes, _ = probe(url, {})
            gzip_bytes, encoding = probe(url, zipped)
            wrk(url, 1, {})  # warm up: caches, the first connections
            full = wrk(url, seconds, {})
            compressed = wrk(url, seconds, zipped)
        rows.append(Row(label, full, compressed, full_bytes, gzip_bytes, encoding))
        print(f"{label}: {full:,.0f} full GETs/s, {compressed:,.0f} gzip GETs/s ({encoding or 'not compressed'})",
              file=sys.stderr)
    return rows


def copy_cost(config: Path) -> tuple[float, float, int, int, int]:
    """CPU time to make the gzip and the brotli copy of the feed measured, as the build does."""
    data = (config.parent / "out" / FEED).read_bytes()
    runs = 20
    start = time.process_time()
    for _ in range(runs):
        small = compress(".gz", data)
    middle = time.process_time()
    for _ in range(runs):
        smaller = compress(".br", data)
    end = time.process_time()
    return (middle - start) / runs, (end - middle) / runs, len(data), len(small), len(smaller)


def section(rows: list[Row], records: str, seconds: int, cost: tuple[float, float, int, int, int]) -> str:
    baseline = next((r for r in rows if r.server == SERVERS["http.server"][0]), None)
    what = "the five seed records" if records == "seeds" else f"{int(records):,} synthetic records"
    lines = [
        START, "## Serving", "",
        f"Made by `python -m benchmarks.serve` on {time.strftime('%Y-%m-%d')}, on this project's 2-core machine",
        f"(the load generator shares it). out/ built from {what}; wrk, {CONNECTIONS} connections, 2 threads,",
        f"{seconds} s a run, GETs of `{FEED}` ({rows[0].full_bytes:,} bytes; gzip {rows[0].gzip_bytes:,}).",
        "",
        "| server | full GETs/s | gzip GETs/s | gzip body | full / http.server | gzip / http.server |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratios = (f"{row.full / baseline.full:.1f}x | {row.gzip / baseline.gzip:.1f}x" if baseline
                  else "- | -")
        body = f"{row.gzip_bytes:,} B ({row.encoding})" if row.encoding else f"{row.gzip_bytes:,} B (not compressed)"
        lines.append(f"| {row.server} | {row.full:,.0f} | {row.gzip:,.0f} | {body} | {ratios} |")
    gz, br, size, gz_size, br_size = cost
    lines += ["",
              f"Compressed copies at build time, per feed of {size:,} bytes, CPU time: "
              f"gzip level {GZIP_LEVEL} {gz * 1000:.1f} ms "
              f"({gz_size:,} B), brotli quality {BROTLI_QUALITY} {br * 1000:.1f} ms ({br_size:,} B).",
              END]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Put the serving section in RESULTS.md, replacing the last one and nothing else."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in old and END in old:
        new = old[:old.index(START)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text + "\n"
    path.write_text(new, encoding="utf-8")


def kept_section(path: Path) -> str | None:
    """The serving section of RESULTS.md as it stands, for :mod:`benchmarks.run` to keep."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    if START not in text or END not in text:
        return None
    return text[text.index(START):text.index(END) + len(END)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", default="10000", help="'seeds', or a number of synthetic records")
    parser.add_argument("--seconds", type=int, default=5, help="each wrk run (1-60)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/feeds-bench"))
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, from: " + ", ".join(SERVERS))
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 60:
        parser.error("--seconds: between 1 and 60")
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    for name in servers:
        if name not in SERVERS:
            parser.error(f"--servers: unknown {name!r}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if "nginx" in servers and not (shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK)):
        raise SystemExit("nginx is not installed (apt-get install nginx libnginx-mod-http-brotli-static)")
    work = args.data / f"serve-{args.records}"
    shutil.rmtree(work, ignore_errors=True)
    config = build_site(work, args.records, args.data)
    rows = measure(config, args.seconds, servers)
    text = section(rows, args.records, args.seconds, copy_cost(config))
    write_section(args.results, text)
    print(text)


if __name__ == "__main__":
    main()
