"""Post search, one post and similar posts: request models in, response models out."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import ValidationError

from services.query.cursor import decode_cursor, encode_cursor, fingerprint
from services.query.encoding import EncodedQuery, QueryEncoder, normalise
from services.query.errors import invalid_field, not_found
from services.query.index import TenantIndex
from services.query.models.posts import (
    Facets,
    PlatformCount,
    Post,
    PostFilters,
    PostHit,
    PostSearchRequest,
    PostSearchResponse,
    SearchMode,
    SimilarPostsResponse,
    VerticalCount,
    VerticalFilter,
)
from services.query.timing import StageClock
from shared.classification.taxonomy import TaxonomyCatalog, split_label_key
from shared.logging import get_logger
from shared.stored_post import payload_fields, stored_labels
from shared.vectorstore import ScoredPoint, SearchFilter, VerticalCondition

log = get_logger("query.posts")
# A label shown at calibrated confidence p is right about p of the time (shared/classification/calibration.py):
# under 0.5 it is more often wrong than right. QuerySettings.label_confidence_floor overrides it.
DEFAULT_LABEL_FLOOR = 0.5
FACET_LIMIT = 200  # distinct values returned per facet: every platform, every label of a few taxonomies


def epoch_ms(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def vertical_condition(verticals: VerticalFilter, catalog: TaxonomyCatalog, field: str,
                       default_min: float = 0.0) -> VerticalCondition:
    """Only known, enabled verticals filter: a switched-off vertical's labels are not trusted.
    ``default_min`` is the minimum confidence when the request names none."""
    taxonomy = catalog.get(verticals.taxonomy)
    if taxonomy is None:
        raise invalid_field(f"{field}.taxonomy", f"unknown taxonomy {verticals.taxonomy!r} (see GET /v1/taxonomies)")
    for name in verticals.verticals:
        found = taxonomy.vertical(name)
        if found is None:
            raise invalid_field(f"{field}.verticals", f"{name!r} is not a vertical of taxonomy {taxonomy.name!r}")
        if not found.enabled:
            raise invalid_field(f"{field}.verticals", f"{name!r} is switched off in taxonomy {taxonomy.name!r}")
    return VerticalCondition(taxonomy=taxonomy.name, verticals=list(dict.fromkeys(verticals.verticals)),
                             min_confidence=default_min if verticals.min_confidence is None else verticals.min_confidence)


def post_filter(filters: PostFilters, catalog: TaxonomyCatalog, label_floor: float = 0.0) -> SearchFilter:
    after, before = epoch_ms(filters.published_after), epoch_ms(filters.published_before)
    if after is not None and before is not None and after >= before:
        raise invalid_field("body.filters.published_before", "must be later than published_after")
    return SearchFilter(
        platform=filters.platform, account_id=filters.account_id, published_after=after, published_before=before,
        min_views=filters.min_views, min_likes=filters.min_likes,
        verticals=(vertical_condition(filters.verticals, catalog, "body.filters.verticals", label_floor)
                   if filters.verticals else None),
    )


def to_hit(point: ScoredPoint, catalog: TaxonomyCatalog, label_floor: float = 0.0) -> PostHit | None:
    """None for a point whose payload is not a post (logged): one odd point must not fail a search.
    Labels of switched-off verticals and labels under ``label_floor`` confidence are not shown.
    The payload is validated once, straight into the result card (a search builds ten per request)."""
    shown = [label.model_dump() for label in stored_labels(point.payload)
             if catalog.is_enabled(label.taxonomy, label.vertical) and label.confidence >= label_floor]
    try:
        post = Post.model_validate({**payload_fields(point.payload), "verticals": shown})
    except ValidationError as exc:
        log.warning("point payload is not a post", point_id=point.id, error=str(exc))
        return None
    return PostHit(id=point.id, post_id=post.post_id, score=point.score, post=post)


def to_hits(points: list[ScoredPoint], catalog: TaxonomyCatalog, label_floor: float = 0.0) -> list[PostHit]:
    return [hit for hit in (to_hit(p, catalog, label_floor) for p in points) if hit is not None]


def rank(index: TenantIndex, mode: SearchMode, query: EncodedQuery, limit: int, flt: SearchFilter, offset: int,
         depth: int) -> list[ScoredPoint]:
    if mode == "semantic":
        return index.semantic(query.dense, limit, flt, offset)
    if mode == "keyword":
        return index.keyword(query.sparse, limit, flt, offset)
    return index.hybrid(query.dense, query.sparse, limit, flt, offset, depth)


class PostSearch:
    def __init__(self, encoder: QueryEncoder, catalog: TaxonomyCatalog, max_results: int,
                 label_floor: float = DEFAULT_LABEL_FLOOR) -> None:
        self.encoder = encoder
        self.catalog = catalog
        # Labels under this calibrated confidence are right less often than not: not shown, not
        # counted, and the vertical filter's minimum when a request names none.
        self.label_floor = label_floor
        # Paging depth: hybrid fuses this many candidates of each kind, the same for every page of a
        # query, so pages never overlap or skip; deeper pages are refused (refine the filters instead).
        self.max_results = max_results

    def visible(self, index: TenantIndex) -> TaxonomyCatalog:
        """The taxonomies the searching tenant sees: filters, labels and facets of others' are not its business."""
        return index.catalog or self.catalog

    def search(self, body: PostSearchRequest, index: TenantIndex, clock: StageClock) -> PostSearchResponse:
        flt = post_filter(body.filters, self.visible(index), self.label_floor)
        query_id = fingerprint(normalise(body.query), body.mode, body.filters.model_dump(mode="json"),
                               body.index_version)
        offset = decode_cursor(body.cursor, query_id, self.max_results - 1) if body.cursor else 0
        with clock.stage("embed"):
            encoded = self.encoder.encode(body.query, dense=body.mode != "keyword", sparse=body.mode != "semantic",
                                          model_variant=index.model_variant)
        clock.embedding_cached = encoded.embedding_cached
        page = min(body.limit, self.max_results - offset)
        with clock.stage("search"):
            # One more than the page: tells whether a next page exists without counting.
            points = rank(index, body.mode, encoded, page + 1, flt, offset, self.max_results)
        with clock.stage("fetch"):
            hits = to_hits(points[:page], self.visible(index), self.label_floor)
            facets = self.facets(index, flt, body.facets) if body.cursor is None and body.facets else None
        more = len(points) > page and offset + page < self.max_results
        return PostSearchResponse(mode=body.mode, results=hits, facets=facets, timings=clock.timings(),
                                  next_cursor=encode_cursor(offset + page, query_id) if more else None)

    def facets(self, index: TenantIndex, flt: SearchFilter, wanted: list[str]) -> Facets:
        """Each facet ignores its own filter (choosing TikTok must not hide the YouTube count)."""
        facets = Facets()
        if "platform" in wanted:
            counts = index.facet("platform", flt.without("platform"), FACET_LIMIT)
            facets.platform = [PlatformCount(value=str(c.value), count=c.count) for c in counts]
        if "vertical" in wanted:
            facets.vertical = self.vertical_counts(index, flt.without("verticals"))
        return facets

    def vertical_counts(self, index: TenantIndex, flt: SearchFilter) -> list[VerticalCount]:
        """Posts per enabled label at or above the floor. The flat ``vertical_labels`` facet names the
        candidates in one read; with a floor each candidate is counted again with the nested
        confidence condition (the flat keys carry no confidence)."""
        counts = index.facet("vertical_labels", flt, FACET_LIMIT)
        labels = [(split_label_key(str(c.value)), c.count) for c in counts]
        labels = [((t, v), n) for (t, v), n in labels if self.visible(index).is_enabled(t, v)]
        if self.label_floor > 0:
            labels = [((t, v), index.count(flt.model_copy(update={"verticals": VerticalCondition(
                taxonomy=t, verticals=[v], min_confidence=self.label_floor)}))) for (t, v), _ in labels]
        return [VerticalCount(taxonomy=t, vertical=v, count=n) for (t, v), n in
                sorted(labels, key=lambda item: -item[1]) if n > 0]

    def get(self, post_id: int, index: TenantIndex, clock: StageClock) -> PostHit:
        with clock.stage("fetch"):
            point = index.get("post", post_id)
        hit = to_hit(point, self.visible(index), self.label_floor) if point else None
        if hit is None:
            raise not_found(f"post {post_id}")
        return hit

    def similar(self, post_id: int, limit: int, index: TenantIndex, clock: StageClock) -> SimilarPostsResponse:
        with clock.stage("fetch"):
            point = index.get("post", post_id)
            vector = index.dense_vector(point) if point else None
        if vector is None:
            raise not_found(f"post {post_id}")
        with clock.stage("search"):
            points = index.semantic(vector, limit, SearchFilter(exclude_ids=[point.id]))
        with clock.stage("fetch"):
            hits = to_hits(points, self.visible(index), self.label_floor)
        return SimilarPostsResponse(post_id=post_id, results=hits, timings=clock.timings())
