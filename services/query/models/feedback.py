"""Label corrections ("wrong vertical") for the classifier to learn from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.query.models.common import Name, PostId


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as documented: no false for 0

    post_id: PostId
    taxonomy: Name = "default"
    vertical: Name = Field(description="The label shown that is wrong.", examples=["fashion"])
    correct_vertical: Name | None = Field(None, description="The right label, if you know it.",
                                          examples=["beauty"])
    comment: str | None = Field(None, max_length=1000)


class FeedbackReceipt(BaseModel):
    feedback_id: str = Field(description="Entry id in the feedback stream.")
    status: Literal["recorded"] = "recorded"
