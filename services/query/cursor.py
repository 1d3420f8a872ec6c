"""Opaque pagination cursors: an offset bound to the query it belongs to.

Offsets are what the engine pages by; the fingerprint makes a cursor useless with another query
(a 422 instead of a silently wrong page). Not signed: a forged offset only yields another page of
the caller's own results, still under its tenant filter.
"""

from __future__ import annotations

import base64
import hashlib

import orjson
from pydantic import BaseModel, ValidationError

from services.query.errors import invalid_field


class _Cursor(BaseModel):
    v: int = 1
    o: int
    f: str


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def encode_cursor(offset: int, query_fingerprint: str) -> str:
    raw = _Cursor(o=offset, f=query_fingerprint).model_dump_json().encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, query_fingerprint: str, max_offset: int) -> int:
    try:
        decoded = _Cursor.model_validate_json(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, ValidationError) as exc:
        raise invalid_field("body.cursor", "not a cursor this API issued") from exc
    if decoded.f != query_fingerprint:
        raise invalid_field("body.cursor", "belongs to another query or filters: start again without a cursor")
    if not 0 < decoded.o <= max_offset:
        raise invalid_field("body.cursor", f"offset out of range (at most {max_offset} results are paged)")
    return decoded.o
