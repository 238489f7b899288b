"""feeds: ranked per-topic RSS, Atom and JSON feeds from a folder of news-article records.

The package follows the data flow of a run: ``load`` reads record files, ``normalise`` turns
each into an immutable :class:`~feeds.model.Article`, ``select`` ranks them per topic,
``render`` turns the selection into bytes and ``write`` puts the bytes in ``out/``.
``api`` ties the stages together; ``cli`` is a thin shell over ``api``.
"""

__version__ = "0.1.0"
