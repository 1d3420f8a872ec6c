"""Every error is JSON ({"error", "detail"}): 4xx name the problem, 503 says when to retry, and a
bug is a bare 500 whose stack trace goes to the log, never to the client."""

from __future__ import annotations

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.query.models.common import ErrorBody, FieldError
from shared.logging import get_logger
from shared.vectorstore import StoreUnavailable

log = get_logger("query")
RETRY_AFTER_S = 5


class ApiError(Exception):
    """An error the client can act on: status, a sentence, optional field errors and headers."""

    def __init__(self, status: int, error: str, detail: list[FieldError] | str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def invalid_field(field: str, reason: str) -> ApiError:
    return ApiError(422, "invalid request", [FieldError(field=field, reason=reason)])


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def _json(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"), headers=headers)


def _unavailable(what: str) -> JSONResponse:
    return _json(503, ErrorBody(error=f"{what} unavailable, retry later", detail=None),
                 {"Retry-After": str(RETRY_AFTER_S)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [FieldError(field=".".join(str(p) for p in e["loc"]), reason=e["msg"]) for e in exc.errors()]
        return _json(422, ErrorBody(error="invalid request", detail=fields))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status, ErrorBody(error=exc.error, detail=exc.detail), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _json(exc.status_code, ErrorBody(error=str(exc.detail)), getattr(exc, "headers", None))

    @app.exception_handler(StoreUnavailable)
    async def store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("vector store unavailable", error=str(exc))
        return _unavailable("vector store")

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable", error=str(exc))
        return _unavailable("key and cache store (Redis)")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error=repr(exc))
        return _json(500, ErrorBody(error="internal error"))
