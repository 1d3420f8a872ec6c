"""Which errors mean "a dependency is down, wait" and which mean "this input fails every time".

A consuming service holds its batch and retries, with backoff, while Kafka, Redis, the vector
store, an HTTP endpoint or the database cannot be reached: the messages are fine and will go
through once it is back, so none may be dead-lettered for it. Anything else is deterministic (a
vector of the wrong size, a payload the store rejects, a bug in a core): retried a few times,
then the batch is split until the failing message is found, and that one is dead-lettered.
"""

from __future__ import annotations

import httpx
import pymysql
import redis
from confluent_kafka import KafkaError, KafkaException
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from shared.vectorstore.base import StoreUnavailable


class DependencyUnavailable(Exception):
    """Raised (or used as a cause) by code that knows a dependency is down or timed out."""


# The request never got a definite answer: a connection, a timeout, a server that is starting.
_UNAVAILABLE = (
    DependencyUnavailable,
    StoreUnavailable,
    OSError,  # ConnectionError, TimeoutError, socket errors, a full disk
    redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError,
    httpx.TransportError,  # connect/read/write/pool timeouts and network errors
    ResponseHandlingException,  # qdrant-client: the server could not be reached or answered garbage
    pymysql.err.OperationalError, pymysql.err.InterfaceError,
)
# Kafka errors that a retry can never fix: the message or the output itself is refused.
_KAFKA_DETERMINISTIC = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG,
    KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD, KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError._INVALID_ARG, KafkaError.TOPIC_AUTHORIZATION_FAILED,
})
_RETRIABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_dependency_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` or anything in its cause chain says a dependency is down or timed out."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else None
        # produce_all raises with the first delivery error; a bare message means "not acknowledged".
        return not (isinstance(error, KafkaError) and error.code() in _KAFKA_DETERMINISTIC)
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in _RETRIABLE_STATUS
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in _RETRIABLE_STATUS
    return isinstance(exc, _UNAVAILABLE)
