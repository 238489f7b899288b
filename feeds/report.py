"""What a build did: the summary line, ``--strict``, and the no-change shortcut's answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from feeds.errors import RecordError, RecordNotice


@dataclass(frozen=True)
class BuildReport:
    """What a build did, for the summary line and for ``--strict``."""

    records: int  # record files found
    parsed: int  # record files parsed; the others came from the parse cache
    articles: int  # distinct articles after folding duplicate URLs
    duplicates: int  # records folded into another record of the same URL
    skipped: tuple[RecordError, ...] = ()
    notes: tuple[RecordNotice, ...] = ()
    topics: tuple[str, ...] = ()  # topic slugs with a feed, "all" not counted
    written: tuple[str, ...] = ()  # paths under out/ whose bytes changed
    unchanged: tuple[str, ...] = field(default=(), repr=False)
    removed: tuple[str, ...] = ()  # paths under out/ the last build wrote and this one did not
    assumed: int = 0  # articles without a quality, ranked at neutral_quality
    neutral_quality: float | None = None  # the median of the qualities records give
    similar: int = 0  # articles folded into another story for a near-identical title
    topic_errors: tuple[RecordError, ...] = ()  # topic files of a topics folder that were skipped

    @property
    def failed(self) -> bool:
        """Anything skipped, record or topic file: what ``--strict`` fails on."""
        return bool(self.skipped or self.topic_errors)
