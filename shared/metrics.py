"""Prometheus metrics shared by the services (names are the contract for dashboards)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_CONSUMED = Counter("pipeline_messages_consumed_total", "Messages read", ["service", "topic"])
MESSAGES_PRODUCED = Counter("pipeline_messages_produced_total", "Messages written", ["topic"])
DLQ_MESSAGES = Counter("pipeline_dlq_messages_total", "Messages sent to a dead-letter topic", ["service", "topic"])
# Of those, the ones found by splitting a batch that failed the same way every time (shared/kafka.py).
POISON_MESSAGES = Counter("pipeline_poison_messages_total", "Messages that failed processing deterministically "
                          "and were dead-lettered", ["service", "topic"])
BATCH_RETRIES = Counter("pipeline_batch_retries_total", "Batches rewound to be retried, by cause "
                        "(dependency = a dependency down or timing out; deterministic = the batch itself failed)",
                        ["service", "cause"])
CACHE_REQUESTS = Counter("pipeline_cache_requests_total", "Cache look-ups", ["cache", "result"])
CACHE_ERRORS = Counter("pipeline_cache_errors_total", "Cache operations that failed (processing goes on)", ["cache"])
STAGE_SECONDS = Histogram(
    "pipeline_stage_seconds", "Time spent per stage and batch", ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CDC_EVENTS = Counter("cdc_events_total", "Change events emitted", ["table", "op"])
CDC_SIGNALS_REJECTED = Counter("cdc_signals_rejected_total", "Malformed signals dead-lettered and skipped")
VIABILITY_DECISIONS = Counter("viability_transitions_total", "Accounts changing viability", ["to"])
# The viability sweep (time-based transitions), per loop: "live" or a replay version's collection.
SWEEP_AS_OF = Gauge("viability_sweep_as_of_timestamp_seconds", "Clock of the last completed sweep: activity "
                    "rules are evaluated as of this time until the next one", ["loop"])
SWEEP_CHECKED = Gauge("viability_sweep_last_checked_accounts", "Viable accounts the last sweep evaluated", ["loop"])
SWEEP_PURGED = Gauge("viability_sweep_last_purged_accounts", "Accounts the last sweep purged", ["loop"])
SWEEP_PURGED_TOTAL = Counter("viability_sweep_accounts_purged", "Accounts purged by sweeps", ["loop"])
INDEX_OPERATIONS = Counter("indexer_operations_total", "Vector store operations", ["op"])
FRESHNESS_SECONDS = Histogram(
    "pipeline_freshness_seconds", "MariaDB commit to indexed", buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
)
LAST_BATCH_TS = Gauge("pipeline_last_batch_timestamp_seconds", "When a service last processed a batch", ["service"])
# Drift of tier-1 predictions (shared/classification/tier_one.py VerticalDrift): a sliding window per taxonomy.
VERTICAL_SHARE = Gauge("vertical_predicted_share", "Share of the last N classified posts carrying a vertical "
                       "(vertical '-' = no label)", ["taxonomy", "vertical"])
VERTICAL_WINDOW = Gauge("vertical_window_posts", "Posts in the drift window", ["taxonomy"])
VERTICAL_DRIFT = Gauge("vertical_drift_distance", "Total-variation distance between the window's vertical mix "
                       "and the reference window (0 same, 1 disjoint)", ["taxonomy"])


# LLM tier (shared/llm.py): every paid token is counted, per taxonomy, vertical (of the labels an
# answer produced, "-" when none) and stage ("classify" | "summarize"); the Redis ledger
# (shared/spend.py) keeps the same figures across processes and restarts.
LLM_TOKENS = Counter("llm_tokens_total", "Tokens billed by the LLM endpoint",
                     ["taxonomy", "vertical", "stage", "model", "kind"])
LLM_COST_USD = Counter("llm_cost_usd_total", "Modelled LLM cost, US dollars", ["taxonomy", "vertical", "stage", "model"])
LLM_REQUESTS = Counter("llm_requests_total", "LLM HTTP requests by outcome", ["stage", "model", "outcome"])
LLM_REQUEST_SECONDS = Histogram(
    "llm_request_seconds", "Duration of one LLM HTTP request", ["stage", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
LLM_CONCURRENCY_LIMIT = Gauge("llm_concurrency_limit", "Current adaptive limit of LLM requests in flight", ["model"])
LLM_BUDGET_STOPS = Counter("llm_budget_exhausted_total", "LLM calls refused because the spend cap is reached",
                           ["stage", "model"])
LLM_POSTS = Counter("llm_classified_posts_total", "Posts through tier 2, by result (labelled|cached|failed)",
                    ["taxonomy", "result"])
LLM_LABELS_DROPPED = Counter("llm_labels_dropped_total", "Labels in LLM answers that failed validation",
                             ["taxonomy", "reason"])

# Account summaries (services/summarizer).
SUMMARY_REFRESHES = Counter("summarizer_refreshes_total", "Due accounts by outcome "
                            "(computed|unchanged|deleted|deferred)", ["outcome"])
SUMMARY_SECONDS = Histogram(
    "summarizer_summary_seconds", "One computed summary: scroll posts, summarize, embed, write",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
SUMMARY_BACKLOG = Gauge("summarizer_dirty_accounts", "Accounts waiting for a summary refresh", ["collection"])

# --- vertical classification (services/classifier) ---------------------------------------------
CLASSIFIER_POSTS = Counter("classifier_posts_total", "Posts the classifier looked at, by taxonomy and route "
                           "(confident = tier 1 only, uncertain = worth tier 2, whether or not an LLM is set)",
                           ["taxonomy", "route"])
CLASSIFIER_OPINIONS = Counter("classifier_opinions_total", "Tier-2 opinions published, by taxonomy", ["taxonomy"])
FEEDBACK_APPLIED = Counter("feedback_corrections_total", "Label corrections processed by the learner, by outcome "
                           "(learned|post_gone)", ["outcome"])
