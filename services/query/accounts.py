"""Accounts: search by topic and one account's profile.

Account summaries come from the summarizer into an ``accounts`` collection (one point per account:
the summary's vectors, the account's centroid, theme and term vectors of shared.account_vectors,
payload account_id, platform, handle, display_name, followers, summary, verticals). Accounts are
ranked by the weighted sum of the centroid, best-theme and summary scores (shared.account_vectors.FUSION,
chosen on a tuning half; docs/account-search.md has the measurements). Until summaries exist, account
search is honest about what it does instead: it ranks accounts by their best matching posts (source
"post_hits").
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import ValidationError

from services.query.encoding import QueryEncoder
from services.query.errors import not_found
from services.query.index import TenantIndex
from services.query.models.accounts import (
    Account,
    AccountDetail,
    AccountFilters,
    AccountHit,
    AccountSearchRequest,
    AccountSearchResponse,
    AccountVertical,
)
from services.query.models.posts import PostHit
from services.query.posts import DEFAULT_LABEL_FLOOR, FACET_LIMIT, to_hits, vertical_condition
from services.query.timing import StageClock
from shared.account_vectors import fused_queries
from shared.classification.taxonomy import TaxonomyCatalog, split_label_key
from shared.stored_post import payload_fields
from shared.vectorstore import ScoredPoint, SearchFilter

# Candidates of each of the account views (centroid, themes, summary) before their scores are added up:
# an account outside one view's top ACCOUNT_DEPTH counts 0 there.
ACCOUNT_DEPTH = 200
POSTS_PER_ACCOUNT = 3  # best posts shown per account, and the posts an account's score adds up
TOP_POSTS = 5  # most viewed posts on an account's page



def account_from_payload(payload: dict) -> Account | None:
    try:
        return Account.model_validate(payload_fields(payload))  # a post's payload (packed) or a summary's
    except ValidationError:
        return None


def account_filter(filters: AccountFilters, catalog: TaxonomyCatalog) -> SearchFilter:
    verticals = filters.verticals
    return SearchFilter(platform=filters.platform, min_followers=filters.min_followers,
                        verticals=vertical_condition(verticals, catalog, "body.filters.verticals") if verticals else None)


def group_by_account(hits: list[PostHit]) -> list[AccountHit]:
    """Accounts ranked by the summed scores of their best POSTS_PER_ACCOUNT posts: one great post
    does not beat several good ones, and a prolific account does not win on volume alone."""
    by_account: dict[int, list[PostHit]] = defaultdict(list)
    for hit in hits:  # best first, so each account's list is best first too
        by_account[hit.post.account_id].append(hit)
    results = []
    for posts in by_account.values():
        first = posts[0].post
        account = Account(account_id=first.account_id, platform=first.platform, handle=first.handle,
                          display_name=first.display_name, followers=first.followers)
        best = posts[:POSTS_PER_ACCOUNT]
        results.append(AccountHit(account=account, score=sum(h.score for h in best), matching_posts=len(posts),
                                  top_posts=best))
    return sorted(results, key=lambda a: a.score, reverse=True)


class AccountSearch:
    def __init__(self, encoder: QueryEncoder, catalog: TaxonomyCatalog, candidates: int,
                 label_floor: float = DEFAULT_LABEL_FLOOR) -> None:
        self.encoder = encoder
        self.catalog = catalog
        self.candidates = candidates  # post hits grouped into accounts when there are no summaries
        self.label_floor = label_floor  # posts shown here show their labels as post search does

    def search(self, body: AccountSearchRequest, posts: TenantIndex, accounts: TenantIndex | None,
               clock: StageClock) -> AccountSearchResponse:
        catalog = posts.catalog or self.catalog  # the taxonomies this tenant sees
        flt = account_filter(body.filters, catalog)
        with clock.stage("embed"):
            # embedded by the model of the collection searched: the summaries, else the posts version
            query = self.encoder.encode(body.query, model_variant=(accounts or posts).model_variant)
        clock.embedding_cached = query.embedding_cached
        if accounts is not None:
            with clock.stage("search"):
                points = accounts.weighted(fused_queries(query.dense, query.sparse), body.limit, flt,
                                           max(body.limit, ACCOUNT_DEPTH))
            hits = [self._summary_hit(p) for p in points]
            return AccountSearchResponse(source="accounts_collection", results=[h for h in hits if h],
                                         timings=clock.timings())
        with clock.stage("search"):
            points = posts.hybrid(query.dense, query.sparse, self.candidates, flt, 0, self.candidates)
        with clock.stage("fetch"):
            ranked = group_by_account(to_hits(points, catalog, self.label_floor))[: body.limit]
        return AccountSearchResponse(source="post_hits", results=ranked, timings=clock.timings())

    def detail(self, account_id: int, posts: TenantIndex, accounts: TenantIndex | None,
               clock: StageClock) -> AccountDetail:
        flt = SearchFilter(account_id=[account_id])
        with clock.stage("fetch"):
            top = posts.top(flt, TOP_POSTS, order_by="views")
            account = account_from_payload(top[0].payload) if top else None
            if account is None:
                raise not_found(f"account {account_id}")
            post_count = posts.count(flt)
            labels = posts.facet("vertical_labels", flt, FACET_LIMIT)
            summary_point = accounts.get("account", account_id) if accounts is not None else None
        return AccountDetail(
            account=account, summary=(summary_point.payload.get("summary") if summary_point else None),
            post_count=post_count, verticals=self._verticals(labels, post_count, posts.catalog or self.catalog),
            top_posts=to_hits(top, posts.catalog or self.catalog, self.label_floor), timings=clock.timings(),
        )

    def _verticals(self, labels: list, post_count: int, catalog: TaxonomyCatalog) -> list[AccountVertical]:
        found = [(split_label_key(str(c.value)), c.count) for c in labels]
        return [AccountVertical(taxonomy=t, vertical=v, posts=n, share=round(n / post_count, 4))
                for (t, v), n in found if catalog.is_enabled(t, v)]

    def _summary_hit(self, point: ScoredPoint) -> AccountHit | None:
        account = account_from_payload(point.payload)
        if account is None:
            return None
        return AccountHit(account=account, score=point.score, matching_posts=0,
                          summary=point.payload.get("summary"), top_posts=[])
