"""Account search quality: which account posted this? MRR@10, hit@1 and recall@10 per method, one run.

    .venv/bin/python -m ops.eval_accounts [--data eval/data/wordnet_accounts.jsonl] [--out eval/results/...]

Everything goes through the real parts: the posts are embedded by the real model and written by the
indexer's own code into a Qdrant Edge shard, the summarizer's refresher writes the accounts collection
(summaries, centroid, themes, terms), and every method is a query to that engine:

- ``summary``: today's summary search (hybrid search of the summary's dense and keyword vectors);
- ``post_hits``: accounts ranked by their best matching posts (the API's fallback without summaries);
- ``mean_of_posts``: the reference, cosine of the query and the mean of the account's post vectors;
- ``fused``: what POST /v1/search/accounts now runs (shared.account_vectors.fused_queries).

Queries are the titles of each account's held-out posts, which are never indexed, and each account's
topic by name. ``specialist wins`` is, over queries whose right answer is a narrow specialist, how often
the specialist ranks above the broad generalist of the same area (the method must never lose that to
the reference).

Fair measurement: the accounts are split (seeded, specialists and generalists each halved) into a
tuning half and a test half, and every query belongs to its right account's half. The fused weights
are chosen on the tuning half's queries only (a grid, ``GRID``); the report gives both halves, and the
test half is the figure to quote. The weights the query API runs (shared.account_vectors.FUSION) must be
the tuning half's choice; the report says whether they are.
"""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson
from pydantic import BaseModel

from ops.eval_core import write_report
from services.indexer.core import PostIndexer
from services.query.accounts import ACCOUNT_DEPTH, group_by_account
from services.query.encoding import normalise
from services.query.index import TenantIndex
from services.query.posts import to_hits
from services.summarizer.refresh import AccountRefresher
from shared.account_vectors import CENTROID_VECTOR, FUSION, FusionWeights, fused_queries
from shared.auth import DataScope
from shared.classification.taxonomy import TaxonomyCatalog
from shared.config import PROJECT_ROOT, ModelSettings, SummarizerSettings
from shared.embedding import TextEmbedder, load_text_embedder
from shared.events import AccountFields, EmbeddedPostUpsert, PostRecord, PostUpsert, SourcePosition
from shared.sparse import SparseEncoder
from shared.vectorstore import EdgeVectorStore, ScoredPoint, SearchFilter, SparseVector, VectorStore
from shared.vectorstore.base import WeightedQuery

DEFAULT_DATA = PROJECT_ROOT / "eval" / "data" / "wordnet_accounts.jsonl"
DEFAULT_OUT = PROJECT_ROOT / "eval" / "results" / "accounts-wordnet_accounts"
POSTS, ACCOUNTS = "posts", "accounts"
CUTOFF = 10
DAY_MS = 86_400_000
START_MS = 1_700_000_000_000
POST_HIT_CANDIDATES = 200  # the query API's default ACCOUNT_SEARCH_CANDIDATES is 200 as well
METHODS = ("summary", "post_hits", "mean_of_posts", "fused")
REFERENCE = "mean_of_posts"
SPLIT_SEED = 15
HALVES = ("tuning", "test")
BOOTSTRAP_ROUNDS = 2000
# The fused weights tried on the tuning half: centroid + themes = 1 (their scale is the cosine's), the
# term part's weight, and the summary text's vector with a small weight or not at all.
GRID = tuple(FusionWeights(centroid=c, themes=round(1 - c, 2), terms=t, summary=s)
             for c, t, s in itertools.product((0.4, 0.5, 0.6, 0.7, 0.8), (0.0, 0.05, 0.1, 0.2), (0.0, 0.1, 0.2)))


@dataclass(frozen=True)
class EvalAccount:
    account_id: int
    name: str
    breadth: str
    area: str
    topic: str = ""


@dataclass(frozen=True)
class EvalPost:
    post_id: int
    account_id: int
    title: str
    description: str
    query: bool


class MethodScore(BaseModel):
    mrr_at_10: float
    hit_at_1: float
    recall_at_10: float
    specialist_mrr_at_10: float
    generalist_mrr_at_10: float
    specialist_wins: float  # share of specialist queries where it ranks above its area's generalist


def load_set(path: Path) -> tuple[list[EvalAccount], list[EvalPost]]:
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    accounts: dict[str, EvalAccount] = {}
    posts = []
    for i, row in enumerate(rows, start=1):
        if row["account"] not in accounts:
            accounts[row["account"]] = EvalAccount(len(accounts) + 1, row["account"], row["breadth"], row["area"],
                                                   row["topic"])
        posts.append(EvalPost(i, accounts[row["account"]].account_id, row["title"], row["description"],
                              bool(row["query"])))
    return list(accounts.values()), posts


def rank_of(ranked: Sequence[int], target: int) -> int | None:
    return ranked.index(target) + 1 if target in ranked else None


def score(results: Sequence[tuple[EvalAccount, list[int]]], generalist_of: dict[str, int]) -> MethodScore:
    """results: (right account, ranked account ids) per query."""
    rr, hit1, found, wins = [], [], [], []
    by_breadth: dict[str, list[float]] = defaultdict(list)
    for target, ranked in results:
        rank = rank_of(ranked[:CUTOFF], target.account_id)
        reciprocal = 1 / rank if rank else 0.0
        rr.append(reciprocal)
        hit1.append(rank == 1)
        found.append(rank is not None)
        by_breadth[target.breadth].append(reciprocal)
        if target.breadth == "specialist":
            wins.append(specialist_wins(ranked, target, generalist_of))
    mean = lambda values: round(float(np.mean(values)), 4) if values else 0.0  # noqa: E731
    return MethodScore(mrr_at_10=mean(rr), hit_at_1=mean(hit1), recall_at_10=mean(found),
                       specialist_mrr_at_10=mean(by_breadth["specialist"]),
                       generalist_mrr_at_10=mean(by_breadth["generalist"]), specialist_wins=mean(wins))


def reciprocal_ranks(results: Sequence[tuple[EvalAccount, list[int]]]) -> np.ndarray:
    return np.asarray([1 / r if (r := rank_of(ranked[:CUTOFF], target.account_id)) else 0.0 for target, ranked in results])


def difference_interval(method: np.ndarray, reference: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS,
                        seed: int = SPLIT_SEED) -> dict[str, float]:
    """Mean per-query difference (method - reference) and its 95% paired bootstrap interval: the same
    resampled queries for both, so a gain the interval keeps above 0 is not the luck of the draw."""
    difference = np.asarray(method, dtype=float) - np.asarray(reference, dtype=float)
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), size=(rounds, len(difference)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"difference": round(float(difference.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4)}


def specialist_wins(ranked: Sequence[int], target: EvalAccount, generalist_of: dict[str, int]) -> bool:
    mine, generalist = rank_of(ranked, target.account_id), rank_of(ranked, generalist_of[target.area])
    return mine is not None and (generalist is None or mine < generalist)


def specialist_losses(reference: Sequence[tuple[EvalAccount, list[int]]], method: Sequence[tuple[EvalAccount, list[int]]],
                      generalist_of: dict[str, int]) -> dict[str, int]:
    """Where the reference puts a specialist above its generalist and the method does not: per query, and
    per specialist account (fewer such wins over the account's queries than the reference)."""
    queries, by_account = 0, defaultdict(int)
    for (target, ranked_ref), (_, ranked) in zip(reference, method, strict=True):
        if target.breadth != "specialist":
            continue
        difference = int(specialist_wins(ranked, target, generalist_of)) - int(specialist_wins(ranked_ref, target, generalist_of))
        queries += difference < 0
        by_account[target.account_id] += difference
    return {"queries": queries, "accounts": sum(d < 0 for d in by_account.values()),
            "specialist_accounts": len(by_account)}


def split_accounts(accounts: Sequence[EvalAccount], seed: int = SPLIT_SEED) -> frozenset[int]:
    """The tuning half's account ids: half the specialists and half the generalists, drawn with ``seed``."""
    rng = random.Random(seed)
    tuning: list[int] = []
    for breadth in sorted({a.breadth for a in accounts}):
        ids = sorted(a.account_id for a in accounts if a.breadth == breadth)
        rng.shuffle(ids)
        tuning += ids[: len(ids) // 2]
    return frozenset(tuning)


class GridPoint(BaseModel):
    weights: FusionWeights
    mrr_at_10: dict[str, float]  # per query set, tuning half
    specialist_losses: int  # tuning queries where the reference ranks a specialist above its generalist and this does not


def pick(points: Sequence[GridPoint]) -> GridPoint:
    """The best summed tuning MRR@10 among points that lose no specialist-above-generalist comparison
    the reference wins (fewest such losses if none is clean); ties go to the earlier grid point."""
    fewest = min(p.specialist_losses for p in points)
    clean = [p for p in points if p.specialist_losses == fewest]
    return max(clean, key=lambda p: round(sum(p.mrr_at_10.values()), 4))


def post_events(accounts: Sequence[EvalAccount], posts: Sequence[EvalPost], vectors: np.ndarray,
                model_id: str) -> list[EmbeddedPostUpsert]:
    """The indexed posts as the embedder would publish them: one account per eval account, one post a day."""
    names = {a.account_id: a for a in accounts}
    events = []
    for n, (post, vector) in enumerate(zip(posts, vectors, strict=True)):
        account = names[post.account_id]
        record = PostRecord(id=post.post_id, account_id=post.account_id, platform="blog", title=post.title,
                            description=post.description, published_at=START_MS + post.post_id * DAY_MS)
        # A neutral name: the set's account names spell out their topic, and the summary text (whose
        # vector the summary method and a fused part search) starts with the name, so the name would
        # hand topic-name queries their answer.
        fields = AccountFields(handle=f"acct{account.account_id}", display_name=f"Account {account.account_id}",
                               followers=1000 * account.account_id)
        upsert = PostUpsert(post=record, account=fields, position=SourcePosition(ts_ms=START_MS, pos=n + 1))
        events.append(EmbeddedPostUpsert.build(upsert, model_id, vector))
    return events


def build_index(store: VectorStore, embedder: TextEmbedder, accounts: Sequence[EvalAccount],
                indexed: Sequence[EvalPost]) -> None:
    vectors = embedder.embed([f"{p.title}\n{p.description}" for p in indexed])
    PostIndexer(store, POSTS, vectors.shape[1]).apply(post_events(accounts, indexed, vectors, embedder.model_id))
    refresher = AccountRefresher(store, POSTS, ACCOUNTS, embedder, SummarizerSettings())
    now_ms = int(time.time() * 1000)
    for account in accounts:
        refresher.write(refresher.compute(account.account_id, now_ms), len(indexed))


def ranked_ids(points: Sequence[ScoredPoint]) -> list[int]:
    return [int(p.payload["account_id"]) for p in points]


Ranking = Callable[[np.ndarray, SparseVector], list[int]]


def fused_with(store: VectorStore, weights: FusionWeights) -> Ranking:
    accounts = TenantIndex(store, ACCOUNTS, DataScope())
    return lambda dense, sparse: ranked_ids(accounts.weighted(fused_queries(dense, sparse, weights), CUTOFF * 5,
                                                              SearchFilter(), ACCOUNT_DEPTH))


def methods(store: VectorStore, catalog: TaxonomyCatalog) -> dict[str, Ranking]:
    everything = SearchFilter()
    posts = TenantIndex(store, POSTS, DataScope())
    accounts = TenantIndex(store, ACCOUNTS, DataScope())

    def summary(dense: np.ndarray, sparse: SparseVector) -> list[int]:
        # What POST /v1/search/accounts ran before the account vectors (services/query/accounts.py).
        return ranked_ids(accounts.hybrid(dense, sparse, CUTOFF * 5, everything, 0, 50))

    def post_hits(dense: np.ndarray, sparse: SparseVector) -> list[int]:
        points = posts.hybrid(dense, sparse, POST_HIT_CANDIDATES, everything, 0, POST_HIT_CANDIDATES)
        return [hit.account.account_id for hit in group_by_account(to_hits(points, catalog))]

    def mean_of_posts(dense: np.ndarray, sparse: SparseVector) -> list[int]:
        part = WeightedQuery(using=CENTROID_VECTOR, dense=list(map(float, dense)), weight=1.0)
        return ranked_ids(accounts.weighted([part], CUTOFF * 5, everything, ACCOUNT_DEPTH))

    return {"summary": summary, "post_hits": post_hits, "mean_of_posts": mean_of_posts,
            "fused": fused_with(store, FUSION)}


@dataclass(frozen=True)
class QuerySet:
    targets: list[EvalAccount]
    dense: np.ndarray
    sparse: list[SparseVector]
    halves: dict[str, list[int]]  # query rows per half

    def rows(self, half: str) -> tuple[list[EvalAccount], list[tuple[np.ndarray, SparseVector]]]:
        rows = self.halves[half]
        return [self.targets[i] for i in rows], [(self.dense[i], self.sparse[i]) for i in rows]


def encode(embedder: TextEmbedder, pairs: Sequence[tuple[str, EvalAccount]], tuning: frozenset[int]) -> QuerySet:
    texts = [normalise(text) for text, _ in pairs]
    sparse_encoder = SparseEncoder()
    targets = [target for _, target in pairs]
    halves = {"tuning": [i for i, t in enumerate(targets) if t.account_id in tuning],
              "test": [i for i, t in enumerate(targets) if t.account_id not in tuning]}
    return QuerySet(targets, embedder.embed(texts), [sparse_encoder.query(t) for t in texts], halves)


def run(ranking: Ranking, targets: Sequence[EvalAccount], queries: Sequence[tuple[np.ndarray, SparseVector]]
        ) -> list[tuple[EvalAccount, list[int]]]:
    return [(target, ranking(dense, sparse)) for target, (dense, sparse) in zip(targets, queries, strict=True)]


def tune(store: VectorStore, ranking: dict[str, Ranking], query_sets: dict[str, QuerySet],
         generalist_of: dict[str, int]) -> list[GridPoint]:
    """Every GRID point on the tuning half's queries (of every query set) only."""
    reference = {kind: run(ranking[REFERENCE], *qs.rows("tuning")) for kind, qs in query_sets.items()}
    points = []
    for weights in GRID:
        mrr, losses = {}, 0
        for kind, qs in query_sets.items():
            results = run(fused_with(store, weights), *qs.rows("tuning"))
            mrr[kind] = score(results, generalist_of).mrr_at_10
            losses += specialist_losses(reference[kind], results, generalist_of)["queries"]
        points.append(GridPoint(weights=weights, mrr_at_10=mrr, specialist_losses=losses))
    return points


def evaluate(data: Path, embedder: TextEmbedder, store_dir: Path, seed: int = SPLIT_SEED) -> dict:
    accounts, posts = load_set(data)
    indexed = [p for p in posts if not p.query]
    queries = [p for p in posts if p.query]
    tuning = split_accounts(accounts, seed)
    store = EdgeVectorStore(store_dir)
    try:
        started = time.perf_counter()
        build_index(store, embedder, accounts, indexed)
        built_s = time.perf_counter() - started
        by_id = {a.account_id: a for a in accounts}
        generalist_of = {a.area: a.account_id for a in accounts if a.breadth == "generalist"}
        ranking = methods(store, TaxonomyCatalog.load(PROJECT_ROOT / "config" / "taxonomies"))
        # Held-out titles (one query per held-out post), and the topic's name (one query per account).
        query_sets = {"titles": encode(embedder, [(q.title, by_id[q.account_id]) for q in queries], tuning),
                      "topics": encode(embedder, [(a.topic, a) for a in accounts], tuning)}
        grid = tune(store, ranking, query_sets, generalist_of)
        reports = {kind: {half: run_methods(ranking, *qs.rows(half), generalist_of) for half in HALVES}
                   for kind, qs in query_sets.items()}
    finally:
        store.close()
    chosen = pick(grid)
    return {"data": str(data.relative_to(PROJECT_ROOT)) if data.is_relative_to(PROJECT_ROOT) else str(data),
            "accounts": len(accounts), "specialists": sum(a.breadth == "specialist" for a in accounts),
            "generalists": sum(a.breadth == "generalist" for a in accounts), "indexed_posts": len(indexed),
            "queries": len(queries), "model_id": embedder.model_id, "index_build_s": round(built_s, 1),
            "split": {"seed": seed, "tuning_accounts": sorted(tuning),
                      "queries": {kind: {h: len(qs.halves[h]) for h in HALVES} for kind, qs in query_sets.items()}},
            "fused_weights": asdict(FUSION), "tuned_weights": asdict(chosen.weights),
            "fused_is_tuned": chosen.weights == FUSION,
            "grid": [p.model_dump() for p in grid], "query_sets": reports}


def run_methods(ranking: dict[str, Ranking], targets: Sequence[EvalAccount],
                queries: Sequence[tuple[np.ndarray, SparseVector]], generalist_of: dict[str, int]) -> dict:
    """Every method on the same (query, right account) pairs."""
    results = {name: run(ranking[name], targets, queries) for name in METHODS}
    scores = {name: score(results[name], generalist_of).model_dump() for name in METHODS}
    versus = {name: specialist_losses(results[REFERENCE], results[name], generalist_of) for name in METHODS
              if name != REFERENCE}
    reference = reciprocal_ranks(results[REFERENCE])
    gains = {name: difference_interval(reciprocal_ranks(results[name]), reference) for name in METHODS
             if name != REFERENCE}
    return {"queries": len(targets), "methods": scores, f"specialist_losses_vs_{REFERENCE}": versus,
            f"mrr_at_10_vs_{REFERENCE}": gains}


QUERY_SETS = {"titles": "the titles of held-out posts (which account posted this?)",
              "topics": "each account's topic by name (a specialist's topic, a generalist's area)"}


def render(report: dict) -> str:
    split = report["split"]
    tuned = report["tuned_weights"]
    lines = [f"Account search on `{report['data']}`: {report['accounts']} accounts ({report['specialists']} specialists, "
             f"{report['generalists']} generalists), {report['indexed_posts']} indexed posts; model "
             f"{report['model_id']}, Qdrant Edge.", "",
             f"Split (seed {split['seed']}): tuning accounts {split['tuning_accounts']}; the rest are the test half.",
             f"Weights chosen on the tuning half ({len(report['grid'])} grid points): {tuned}; the query API runs "
             f"{report['fused_weights']} ({'the same' if report['fused_is_tuned'] else 'NOT the tuned choice'}).", ""]
    for half in ("test", "tuning"):
        for kind, what in QUERY_SETS.items():
            part = report["query_sets"][kind][half]
            lines += [f"{half.capitalize()} half, {part['queries']} queries: {what}.", ""]
            lines += render_table(part)
            lines.append("")
    return "\n".join(lines)


def render_table(report: dict) -> list[str]:
    lines = ["| method | MRR@10 | hit@1 | recall@10 | specialists MRR@10 | generalists MRR@10 | specialist above its generalist |",
             "|---|---|---|---|---|---|---|"]
    for name, m in report["methods"].items():
        lines.append(f"| {name} | {m['mrr_at_10']:.3f} | {m['hit_at_1']:.3f} | {m['recall_at_10']:.3f} | "
                     f"{m['specialist_mrr_at_10']:.3f} | {m['generalist_mrr_at_10']:.3f} | {m['specialist_wins']:.3f} |")
    lines.append("")
    for name, losses in report[f"specialist_losses_vs_{REFERENCE}"].items():
        gain = report[f"mrr_at_10_vs_{REFERENCE}"][name]
        lines.append(f"- {name}: MRR@10 {gain['difference']:+.3f} against the reference (95% paired bootstrap "
                     f"interval {gain['low']:+.3f} to {gain['high']:+.3f}); a specialist the reference ranks above "
                     f"its generalist is not, for {losses['queries']} queries; {losses['accounts']} of "
                     f"{losses['specialist_accounts']} specialists win less often than with the reference.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.eval_accounts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSONL (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report path without suffix; .json and .md "
                        "are written (default: %(default)s)")
    args = parser.parse_args(argv)
    model = ModelSettings()
    embedder = load_text_embedder(model.model_cache_dir, batch_size=model.embedding_batch_size,
                                  intra_op_threads=model.embedding_threads)
    with tempfile.TemporaryDirectory(prefix="eval-accounts-") as store_dir:
        report = evaluate(args.data, embedder, Path(store_dir))
    write_report(args.out, report, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
