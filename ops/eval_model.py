"""fp32 or int8 for live ingestion? Both models measured in one run on the same texts and threads.

    .venv/bin/python -m ops.eval_model [--out eval/results/model-variant]

- speed: texts/s of each model on the same texts (the account set's posts and the creator posts), the
  same batch size and intra-op threads (ModelSettings), rounds alternating so load drifts hit both;
- agreement: cosine between the two models' vectors of each text;
- post search on the account set (eval/data/wordnet_accounts.jsonl): the held-out titles as queries,
  every indexed post of the same account relevant; nDCG@10 and MRR@10 of dense, keyword (BM25-style
  sparse, the same for both models: a control) and hybrid search through the edge engine;
- account search: ops.eval_accounts on the same set (MRR@10 of every method, test half);
- tier-1 classification: ops.eval on eval/data/creator_posts.jsonl with the default taxonomy as
  configured (thresholds calibrated on fp32), held-out half: macro-F1, top-1 accuracy.

Queries are embedded one text per call, as the query API does (int8 quantises activations per call).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import orjson

from ops import eval as classification_eval
from ops import eval_accounts
from ops.eval_accounts import DEFAULT_DATA, POSTS, EvalPost, load_set, post_events
from ops.eval_core import write_report
from services.indexer.core import PostIndexer
from services.query.encoding import normalise
from services.query.index import TenantIndex
from shared.auth import DataScope
from shared.config import PROJECT_ROOT, ModelSettings
from shared.embedding import TextEmbedder, load_text_embedder
from shared.sparse import SparseEncoder
from shared.vectorstore import EdgeVectorStore, ScoredPoint, SearchFilter

DEFAULT_OUT = PROJECT_ROOT / "eval" / "results" / "model-variant"
CLASSIFICATION_DATA = PROJECT_ROOT / "eval" / "data" / "creator_posts.jsonl"
VARIANTS = ("fp32", "int8")
CUTOFF = 10
SPEED_ROUNDS = 3
HYBRID_DEPTH = 50  # candidates per part before fusion, as the posts API's default


def load_models(model: ModelSettings) -> dict[str, TextEmbedder]:
    return {v: load_text_embedder(model.model_cache_dir, batch_size=model.embedding_batch_size,
                                  intra_op_threads=model.embedding_threads, quantize=v == "int8") for v in VARIANTS}


def speed(models: dict[str, TextEmbedder], texts: Sequence[str]) -> dict:
    """Median texts/s and texts per CPU second (all of the process's threads) per model, over rounds that
    alternate the two models. On a shared machine the per-CPU-second figure is the one to compare: wall
    time also counts what other processes took from the cores."""
    for embedder in models.values():
        embedder.embed(texts[:64])  # warm-up: first session runs allocate
    rates: dict[str, dict[str, list[float]]] = {v: {"texts_per_s": [], "texts_per_cpu_s": []} for v in models}
    for _ in range(SPEED_ROUNDS):
        for variant, embedder in models.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            embedder.embed(texts)
            rates[variant]["texts_per_s"].append(len(texts) / (time.perf_counter() - started))
            rates[variant]["texts_per_cpu_s"].append(len(texts) / (time.process_time() - cpu_started))
    out: dict = {v: {k: float(np.median(r)) for k, r in per.items()} | {"rounds": per} for v, per in rates.items()}
    out["int8_over_fp32"] = out["int8"]["texts_per_s"] / out["fp32"]["texts_per_s"]
    out["int8_over_fp32_per_cpu_s"] = out["int8"]["texts_per_cpu_s"] / out["fp32"]["texts_per_cpu_s"]
    out["texts"] = len(texts)
    return out


def agreement(models: dict[str, TextEmbedder], texts: Sequence[str]) -> dict:
    cosines = np.sum(models["fp32"].embed(texts) * models["int8"].embed(texts), axis=1)
    return {"texts": len(texts), "mean_cosine": float(cosines.mean()), "p1_cosine": float(np.percentile(cosines, 1)),
            "min_cosine": float(cosines.min())}


def ndcg_at(ranked: Sequence[int], relevant: set[int], k: int = CUTOFF) -> float:
    """Binary-relevance nDCG@k: the ideal ranking puts min(k, |relevant|) relevant items first."""
    gain = sum(1 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return gain / ideal if ideal else 0.0


def reciprocal_rank(ranked: Sequence[int], relevant: set[int], k: int = CUTOFF) -> float:
    return next((1 / (i + 1) for i, item in enumerate(ranked[:k]) if item in relevant), 0.0)


def post_ids(points: Sequence[ScoredPoint]) -> list[int]:
    return [int(p.payload["post_id"]) for p in points]


def post_search(embedder: TextEmbedder, data: Path, store_dir: Path) -> dict:
    """nDCG@10 / MRR@10 of dense, keyword and hybrid post search, the relevant posts being the account's."""
    accounts, posts = load_set(data)
    indexed = [p for p in posts if not p.query]
    queries = [p for p in posts if p.query]
    relevant = _posts_by_account(indexed)
    store = EdgeVectorStore(store_dir)
    try:
        vectors = embedder.embed([f"{p.title}\n{p.description}" for p in indexed])
        PostIndexer(store, POSTS, vectors.shape[1]).apply(post_events(accounts, indexed, vectors, embedder.model_id))
        index, everything, sparse = TenantIndex(store, POSTS, DataScope()), SearchFilter(), SparseEncoder()
        modes: dict[str, Callable[[np.ndarray, object], list[ScoredPoint]]] = {
            "dense": lambda d, s: index.semantic(d, CUTOFF, everything),
            "keyword": lambda d, s: index.keyword(s, CUTOFF, everything),
            "hybrid": lambda d, s: index.hybrid(d, s, CUTOFF, everything, 0, HYBRID_DEPTH),
        }
        scores = {mode: {"ndcg_at_10": [], "mrr_at_10": []} for mode in modes}
        for query in queries:
            text = normalise(query.title)
            dense, sparse_query = embedder.embed([text])[0], sparse.query(text)
            for mode, search in modes.items():
                ranked = post_ids(search(dense, sparse_query))
                scores[mode]["ndcg_at_10"].append(ndcg_at(ranked, relevant[query.account_id]))
                scores[mode]["mrr_at_10"].append(reciprocal_rank(ranked, relevant[query.account_id]))
    finally:
        store.close()
    return {"queries": len(queries), "indexed_posts": len(indexed),
            "modes": {mode: {k: float(np.mean(v)) for k, v in s.items()} for mode, s in scores.items()}}


def _posts_by_account(posts: Sequence[EvalPost]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for post in posts:
        out.setdefault(post.account_id, set()).add(post.post_id)
    return out


def account_search(embedder: TextEmbedder, data: Path, store_dir: Path) -> dict:
    report = eval_accounts.evaluate(data, embedder, store_dir)
    return {kind: {name: m["mrr_at_10"] for name, m in sets["test"]["methods"].items()}
            for kind, sets in report["query_sets"].items()}


def classification(embedder: TextEmbedder) -> dict:
    args = classification_eval.parse_args(["--taxonomy", "default", "--data", str(CLASSIFICATION_DATA)])
    report = classification_eval.run(args, embedder.embed)["reports"]["as configured"]
    return {"held_out_texts": report.texts, "macro_f1": report.macro["f1"], "micro_f1": report.micro["f1"],
            "top1_accuracy": report.top1_accuracy, "uncertain_share": report.uncertain_share}


def speed_texts(data: Path) -> list[str]:
    """The account set's posts and the creator posts: the texts every other measure embeds."""
    _, posts = load_set(data)
    texts = [f"{p.title}\n{p.description}" for p in posts]
    return texts + [orjson.loads(line)["text"] for line in CLASSIFICATION_DATA.read_text().splitlines() if line.strip()]


def evaluate(data: Path = DEFAULT_DATA) -> dict:
    model = ModelSettings()
    models = load_models(model)
    texts = speed_texts(data)
    out: dict = {"batch_size": model.embedding_batch_size, "intra_op_threads": model.embedding_threads,
                 "model_ids": {v: m.model_id for v, m in models.items()},
                 "speed": speed(models, texts), "agreement": agreement(models, texts), "variants": {}}
    for variant, embedder in models.items():
        with tempfile.TemporaryDirectory(prefix="eval-model-") as posts_dir, \
                tempfile.TemporaryDirectory(prefix="eval-model-") as accounts_dir:
            out["variants"][variant] = {"post_search": post_search(embedder, data, Path(posts_dir)),
                                        "account_search_mrr_at_10": account_search(embedder, data, Path(accounts_dir)),
                                        "classification": classification(embedder)}
    return out


def render(report: dict) -> str:
    fp32, int8 = report["variants"]["fp32"], report["variants"]["int8"]
    s, a = report["speed"], report["agreement"]
    threads = "same texts, batch %d, %d threads" % (report["batch_size"], report["intra_op_threads"])
    rows = [(f"texts/s ({threads})", s["fp32"]["texts_per_s"], s["int8"]["texts_per_s"], "%.0f")]
    if "texts_per_cpu_s" in s["fp32"]:
        rows.append((f"texts per CPU second ({threads})", s["fp32"]["texts_per_cpu_s"], s["int8"]["texts_per_cpu_s"],
                     "%.1f"))
    for mode in fp32["post_search"]["modes"]:
        for metric in ("ndcg_at_10", "mrr_at_10"):
            rows.append((f"post search {mode} {metric.replace('_at_', '@')}", fp32["post_search"]["modes"][mode][metric],
                         int8["post_search"]["modes"][mode][metric], "%.3f"))
    for kind, methods in fp32["account_search_mrr_at_10"].items():
        for name, value in methods.items():
            rows.append((f"account search ({kind}) {name} MRR@10", value,
                         int8["account_search_mrr_at_10"][kind][name], "%.3f"))
    for metric in ("macro_f1", "micro_f1", "top1_accuracy", "uncertain_share"):
        rows.append((f"tier-1 {metric.replace('_', ' ')}", fp32["classification"][metric],
                     int8["classification"][metric], "%.3f"))
    per_cpu = f" ({s['int8_over_fp32_per_cpu_s']:.2f}x per CPU second)" if "int8_over_fp32_per_cpu_s" in s else ""
    lines = [f"fp32 vs int8, one run: {s['texts']} texts; int8/fp32 speed {s['int8_over_fp32']:.2f}x{per_cpu}; "
             f"cosine fp32 vs int8 mean {a['mean_cosine']:.4f}, 1st percentile {a['p1_cosine']:.4f}, "
             f"min {a['min_cosine']:.4f}.", "", "| measure | fp32 | int8 | int8 - fp32 |", "|---|---|---|---|"]
    for name, x, y, fmt in rows:
        lines.append(f"| {name} | {fmt % x} | {fmt % y} | {'%+.3f' % (y - x) if fmt == '%.3f' else f'{y / x:.2f}x'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.eval_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="account set JSONL (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report path without suffix (default: %(default)s)")
    parser.add_argument("--speed-only", action="store_true", help="measure speed again (first --speed-texts texts) "
                        "and replace the speed part of the report at --out")
    parser.add_argument("--speed-texts", type=int, default=None, help="with --speed-only: how many texts")
    args = parser.parse_args(argv)
    if args.speed_only:
        report = orjson.loads(args.out.with_suffix(".json").read_bytes())
        report["speed"] = speed(load_models(ModelSettings()), speed_texts(args.data)[:args.speed_texts])
    else:
        report = evaluate(args.data)
    write_report(args.out, report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
