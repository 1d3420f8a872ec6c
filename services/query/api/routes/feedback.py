"""Feedback: POST /v1/feedback records a "wrong vertical" correction for the classifier."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.query.api.deps import KEYED_RESPONSES, NOT_FOUND, ContextDep, FeedbackKey
from services.query.errors import invalid_field, not_found
from services.query.models.feedback import FeedbackReceipt, FeedbackRequest
from shared.classification.feedback import VerticalFeedback, record_feedback

router = APIRouter(tags=["feedback"], responses=KEYED_RESPONSES)


@router.post("/v1/feedback", response_model=FeedbackReceipt, status_code=status.HTTP_202_ACCEPTED,
             responses=NOT_FOUND)
def submit_feedback(body: FeedbackRequest, context: ContextDep, key: FeedbackKey) -> FeedbackReceipt:
    """Accepted means durably queued (Redis stream); the classifier learns from it later. A key may correct
    the shared taxonomies and its tenant's own; only corrections of its own taxonomies, or made with a key
    that sees every post, teach tier 1 (examples, neighbours): one tenant never changes another's labels."""
    taxonomy = context.catalog.visible_to(key.tenant).get(body.taxonomy)
    if taxonomy is None:
        raise invalid_field("body.taxonomy", f"unknown taxonomy {body.taxonomy!r}")
    for field, name in (("vertical", body.vertical), ("correct_vertical", body.correct_vertical)):
        if name is not None and taxonomy.vertical(name) is None:
            raise invalid_field(f"body.{field}", f"{name!r} is not a vertical of taxonomy {taxonomy.name!r}")
    if body.correct_vertical == body.vertical:
        raise invalid_field("body.correct_vertical", "is the label being reported as wrong")
    post = context.posts_index(key.data_scope, tenant=key.tenant).get("post", body.post_id)
    if post is None:
        raise not_found(f"post {body.post_id}")
    feedback = VerticalFeedback(tenant=key.tenant, api_key_id=key.key_id, post_id=body.post_id,
                                account_id=post.payload.get("account_id"), taxonomy=taxonomy.name,
                                vertical=body.vertical, correct_vertical=body.correct_vertical, comment=body.comment,
                                teaches=taxonomy.tenant == key.tenant or key.data_scope.is_unrestricted(),
                                data_scope=None if key.data_scope.is_unrestricted() else key.data_scope)
    return FeedbackReceipt(feedback_id=record_feedback(context.redis, feedback))
