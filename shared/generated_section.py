"""A generated table inside a hand-written page: the part between two marker lines is rewritten from
code (the settings classes, the topology), the prose around it is kept; a test compares the two."""

from __future__ import annotations


def with_generated(page: str, begin: str, end: str, content: str, where: str) -> str:
    """``page`` with what stands between ``begin`` and ``end`` replaced by ``content``."""
    if begin not in page or end not in page:
        raise ValueError(f"{where} lacks the markers {begin!r} ... {end!r}")
    head, rest = page.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{content}\n{end}{tail}"
