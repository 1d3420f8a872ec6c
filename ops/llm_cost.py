"""What the LLM tier has cost so far, from the Redis spend ledger (shared/spend.py).

    python -m ops.llm_cost                          # by stage, model, taxonomy and vertical
    python -m ops.llm_cost --by model,stage         # any subset of stage,model,taxonomy,vertical
    python -m ops.llm_cost --json                   # the same lines as JSON

Tokens are what the endpoint reported in ``usage``; dollars are modelled from them with
LLM_PRICE_PROMPT_PER_MTOK / LLM_PRICE_COMPLETION_PER_MTOK at the time of each call. A call's
tokens are split between the verticals of the labels it produced ("-": none).
"""

from __future__ import annotations

import argparse
import sys

import orjson
import redis

from shared.cache import connect_redis
from shared.config import RedisSettings
from shared.spend import SpendLine, read_llm_spend, read_spend_breakdown

DIMENSIONS = ("stage", "model", "taxonomy", "vertical")
MEASURES = ("calls", "prompt_tokens", "completion_tokens", "usd")


def group(lines: list[SpendLine], by: list[str]) -> list[dict]:
    totals: dict[tuple, dict] = {}
    for line in lines:
        key = tuple(getattr(line, d) for d in by)
        row = totals.setdefault(key, {**dict(zip(by, key, strict=True)), **{m: 0 for m in MEASURES}})
        for measure in MEASURES:
            row[measure] += getattr(line, measure)
    return [totals[k] for k in sorted(totals)]


def render(rows: list[dict], by: list[str]) -> str:
    headers = [*by, *MEASURES]
    cells = [[str(r[d]) for d in by] + [str(r["calls"]), f"{r['prompt_tokens']:,}", f"{r['completion_tokens']:,}",
                                        f"{r['usd']:.6f}"] for r in rows]
    total = ["total", *[""] * (len(by) - 1), str(sum(r["calls"] for r in rows)),
             f"{sum(r['prompt_tokens'] for r in rows):,}", f"{sum(r['completion_tokens'] for r in rows):,}",
             f"{sum(r['usd'] for r in rows):.6f}"]
    table = [headers, *cells, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < len(by) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                   strict=True)))

    return "\n".join([line(headers), *(line(r) for r in cells), line(total)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.llm_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--by", default=",".join(DIMENSIONS), help="comma-separated: stage,model,taxonomy,vertical")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--redis-url", default=None, help="default: REDIS_URL")
    args = parser.parse_args(argv)
    by = [d.strip() for d in args.by.split(",") if d.strip()]
    unknown = sorted(set(by) - set(DIMENSIONS))
    if unknown or not by:
        parser.error(f"--by takes a subset of {','.join(DIMENSIONS)} (got {args.by!r})")
    client = connect_redis(args.redis_url or RedisSettings().redis_url)
    try:
        lines = read_spend_breakdown(client)
        totals = read_llm_spend(client)
    except redis.RedisError as exc:
        print(f"Redis unreachable: {exc}", file=sys.stderr)
        return 2
    rows = group(lines, by)
    if args.json:
        print(orjson.dumps({"rows": rows, "total": totals.model_dump()}, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not lines and not totals.calls:
        print("no LLM call recorded yet")
        return 0
    print(render(rows, by))
    print(f"\nledger total: ${totals.usd:.6f} over {totals.calls:,} calls "
          + ", ".join(f"({m.model}: ${m.usd:.6f}, {m.calls:,} calls)" for m in totals.by_model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
