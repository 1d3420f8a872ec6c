"""Dependencies of the routes: the context, the caller's API key (scope + rate limit), timing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Response, Security
from pydantic import BaseModel
from fastapi.security import APIKeyHeader

from services.query.context import QueryContext
from services.query.errors import ApiError
from services.query.index import TenantIndex
from services.query.models.common import ErrorBody
from services.query.timing import StageClock
from shared.auth import ApiKeyRecord, InvalidKey, Scope

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="Per-client key (`python -m services.query.admin_keys create`).")


def _error(description: str, retry_after: bool = False) -> dict:
    response: dict = {"model": ErrorBody, "description": description}
    if retry_after:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                               "schema": {"type": "integer"}}}
    return response


KEYED_RESPONSES: dict[int | str, dict] = {
    400: _error("The body is not JSON (e.g. not UTF-8)."),
    401: _error("Missing, malformed, unknown or revoked X-API-Key."),
    403: _error("The key lacks the scope this route needs."),
    422: _error("Invalid request: detail names each field and why."),
    429: _error("Rate limit of the key exceeded.", retry_after=True),
    503: _error("A dependency (vector store, Redis) is down.", retry_after=True),
}
NOT_FOUND = {404: _error("No such id visible to this key.")}


# Dependencies that do no I/O are async: FastAPI runs a sync one on the threadpool, a hop per
# dependency per request that costs more than the work.
async def get_context(request: Request) -> QueryContext:
    return request.app.state.context


async def stage_clock() -> StageClock:
    return StageClock()


ContextDep = Annotated[QueryContext, Depends(get_context)]


def authenticate(context: ContextDep, key: Annotated[str | None, Security(api_key_header)] = None) -> ApiKeyRecord:
    if not key:
        raise ApiError(401, "missing API key", f"send it in the {API_KEY_HEADER} header",
                       headers={"WWW-Authenticate": "ApiKey"})
    try:
        return context.keys.authenticate(key)
    except InvalidKey as exc:
        raise ApiError(401, "invalid API key", str(exc), headers={"WWW-Authenticate": "ApiKey"}) from exc


def require(scope: Scope) -> Callable[..., ApiKeyRecord]:
    def allowed_key(context: ContextDep, response: Response,
                    key: Annotated[str | None, Security(api_key_header)] = None) -> ApiKeyRecord:
        record = authenticate(context, key)  # called here, not as a dependency: one threadpool hop for both
        if scope not in record.scopes:
            raise ApiError(403, f"this key lacks the {scope.value!r} scope",
                           f"key {record.key_id} has scopes {[s.value for s in record.scopes]}")
        decision = context.limiter.hit(record.key_id, record.rate)
        limits = {"X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": str(decision.remaining)}
        if not decision.allowed:
            raise ApiError(429, "rate limit exceeded", f"{record.rate} for key {record.key_id}",
                           headers={"Retry-After": str(decision.retry_after_s), **limits})
        response.headers.update(limits)
        return record

    return allowed_key


SearchKey = Annotated[ApiKeyRecord, Depends(require(Scope.search))]
FeedbackKey = Annotated[ApiKeyRecord, Depends(require(Scope.feedback))]
StatusKey = Annotated[ApiKeyRecord, Depends(require(Scope.status))]


def posts_index(context: ContextDep, key: SearchKey) -> TenantIndex:
    return context.posts_index(key.data_scope, tenant=key.tenant)


PostsIndex = Annotated[TenantIndex, Depends(posts_index)]


def json_response(model: BaseModel, response: Response) -> Response:
    """``model`` as the JSON FastAPI would send, with the headers the route set on ``response``. A sync
    route that returns the model instead has FastAPI validate it again, on the threadpool: one more
    hop per request for a model the route just built."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json",
                    headers={k: v for k, v in response.headers.items() if k != "content-length"})
Clock = Annotated[StageClock, Depends(stage_clock)]
