"""Synthetic records shaped like Smartable's, deterministic for a seed.

Size mix small and large, 0-20 ``related`` entries, 1-3 topics Zipf-distributed over 40,
dates over two years, some duplicate URLs (amp and tracking variants of another record),
some videos. The files are also Hugo content files (YAML front matter), so Hugo can build
the same records; they leave out the real records' ``published: false``, which Hugo reads
as a publication date and refuses.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

TOPICS = [f"Topic {name}" for name in (
    "AI", "Robotics", "Computer Vision", "NLP", "Chips", "Cloud", "Security", "Policy", "Health",
    "Finance", "Autonomous Cars", "Drones", "Quantum", "Edge", "Data", "Ethics", "Startups",
    "Research", "Education", "Games", "Energy", "Climate", "Space", "Biotech", "Retail", "Media",
    "Telecom", "IoT", "AR", "VR", "Blockchain", "Open Source", "Developer Tools", "Databases",
    "Networks", "Mobile", "Wearables", "Smart Home", "Agriculture", "Manufacturing")]
OUTLETS = [(f"Outlet {i}", f"outlet{i}.example.com") for i in range(120)]
WORDS = ("model data system new research company launch future market learning robot open cloud "
         "network chip team study policy report users growth test global power smart").split()
START = datetime(2019, 1, 1, tzinfo=UTC)


def sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:]


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def zipf_topics(rng: random.Random) -> list[str]:
    count = rng.choice((1, 1, 2, 2, 2, 3))
    weights = [1 / (rank + 1) for rank in range(len(TOPICS))]
    chosen: list[str] = []
    while len(chosen) < count:
        topic = rng.choices(TOPICS, weights)[0]
        if topic not in chosen:
            chosen.append(topic)
    return chosen


def related_entry(rng: random.Random, n: int) -> str:
    name, domain = rng.choice(OUTLETS)
    published = START + timedelta(seconds=rng.randrange(2 * 365 * 86400))
    return f"""  - title: {quoted(sentence(rng, 8))}
    excerpt: {quoted(sentence(rng, rng.choice((20, 40, 60))))}
    publishedDateTime: {published:%Y-%m-%dT%H:%M:%SZ}
    webUrl: "https://{domain}/news/{n}-{rng.randrange(10**9)}"
    type: article
    provider:
      name: {quoted(name)}
      domain: {domain}
    quality: {rng.randrange(10, 150)}
    images:
      - url: "https://{domain}/img/{rng.randrange(10**9)}.jpg"
        width: 1200
        height: 630
        isCached: true
"""


def record(rng: random.Random, n: int, url: str, published: datetime, quality: int | None = None) -> str:
    name, domain = rng.choice(OUTLETS)
    video = rng.random() < 0.06
    large = rng.random() < 0.3
    related = "".join(related_entry(rng, n * 100 + i) for i in range(rng.randrange(21) if large else rng.randrange(4)))
    kind = "video" if video else "article"
    featured = ("\nfeaturedContent: \"<iframe width=\\\"800\\\" height=\\\"500\\\" "
                f"src=\\\"https://www.youtube.com/embed/v{n:010d}\\\" allowfullscreen></iframe>\"\n") if video else ""
    topics = "".join(f"  - {t}\n" for t in zipf_topics(rng))
    return f"""---
category: news
title: {quoted(sentence(rng, rng.randrange(6, 14)))}
excerpt: {quoted(sentence(rng, rng.choice((15, 30, 80) if large else (10, 20))))}
publishedDateTime: {published:%Y-%m-%dT%H:%M:%SZ}
originalUrl: "{url}"
webUrl: "{url}"
ampWebUrl: "{url}/amp/"
type: {kind}
quality: {rng.randrange(0, 160) if quality is None else quality}
heat: {rng.randrange(-1, 160)}
{featured}
provider:
  name: {quoted(name)}
  domain: {domain}

topics:
{topics}
images:
  - url: "https://{domain}/images/{n}.jpg"
    width: {rng.choice((640, 1024, 1200))}
    height: {rng.choice((360, 576, 630))}
    isCached: true

{"related:" + chr(10) + related if related else ""}
secured: "{rng.randbytes(96).hex()}"
---
"""


def generate(folder: Path, count: int, seed: int = 2020) -> list[Path]:
    """Write ``count`` records into ``folder`` (created); returns their paths."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    urls: list[str] = []
    for n in range(count):
        published = START + timedelta(seconds=rng.randrange(2 * 365 * 86400))
        if urls and rng.random() < 0.02:  # the same story again: an amp or tracking variant
            base = rng.choice(urls)
            url = rng.choice((base + "?utm_source=twitter", base.replace("https://", "https://www.")))
        else:
            url = f"https://{rng.choice(OUTLETS)[1]}/{published:%Y/%m/%d}/story-{n}"
            urls.append(url)
        path = folder / f"{published:%Y-%m-%d}-story-{n:06d}.md"
        path.write_text(record(rng, n, url, published), encoding="utf-8")
        paths.append(path)
    return paths


def breaking_news(folder: Path, n: int, now: datetime) -> Path:
    """A new record, published an hour before ``now`` with the top quality: it leads the
    all feed and its topics' feeds (the case of a rebuild after news arrives)."""
    published = now - timedelta(hours=1)
    url = f"https://outlet1.example.com/{published:%Y/%m/%d}/breaking-{n}"
    path = folder / f"{published:%Y-%m-%d}-breaking-{n:06d}.md"
    path.write_text(record(random.Random(n), n, url, published, quality=159), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    generate(args.folder, args.count, args.seed)


if __name__ == "__main__":
    main()
