"""Write or check the JSON Schemas of the event contracts under schemas/.

`python -m shared.schemas --write` regenerates them; the test suite fails if a model changed and
the checked-in schema did not (so consumers in other languages see contract changes in review).
"""

from __future__ import annotations

import argparse
import sys

import orjson

from shared.config import PROJECT_ROOT
from shared.events import json_schemas

SCHEMAS_DIR = PROJECT_ROOT / "schemas"


def rendered() -> dict[str, bytes]:
    return {f"{name}.json": orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
            for name, schema in json_schemas().items()}


def stale() -> list[str]:
    return [name for name, body in rendered().items()
            if not (SCHEMAS_DIR / name).exists() or (SCHEMAS_DIR / name).read_bytes() != body]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.schemas", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite schemas/ instead of checking it")
    args = parser.parse_args()
    if args.write:
        SCHEMAS_DIR.mkdir(exist_ok=True)
        for name, body in rendered().items():
            (SCHEMAS_DIR / name).write_bytes(body)
        return 0
    outdated = stale()
    if outdated:
        print(f"schemas out of date: {outdated}; run `make schemas`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
