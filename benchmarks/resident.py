"""A resident feeds process, as the daemon (``feeds run``) is: Python and the libraries are
loaded once, and each rebuild is the call the daemon's build job makes
(:func:`feeds.scheduler.build_job`: the config read again, then :func:`feeds.api.build`),
with the benchmark's clock rather than the wall clock.

    python -m benchmarks.resident CONFIG SEEDS OUT NOW

Builds once (the daemon's first run), says ``{"ready": true}``, then rebuilds once per
line read on stdin and answers each with a JSON line: wall and CPU seconds of that
rebuild, the process's peak RSS, and how many files it wrote.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import datetime
from pathlib import Path


def main(argv: list[str]) -> None:
    config_path, seeds, out, now = argv
    from feeds import api
    from feeds.config import load_config

    moment = datetime.fromisoformat(now)

    def rebuild() -> int:
        config = load_config(Path(config_path))
        return len(api.build(config, now=moment, seeds=Path(seeds), out=Path(out)).written)

    rebuild()
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        wall, cpu = time.perf_counter(), time.process_time()
        written = rebuild()
        print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                          "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "written": written}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
