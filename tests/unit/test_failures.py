"""The line between "a dependency is down, hold the batch" and "this input fails every time"."""

from __future__ import annotations

import httpx
import redis
from confluent_kafka import KafkaError, KafkaException

from shared.failures import DependencyUnavailable, is_dependency_unavailable
from shared.vectorstore import StoreUnavailable


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://llm.test/v1")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(status, request=request))


def test_outages_and_timeouts_are_dependency_errors():
    for exc in [ConnectionRefusedError(), TimeoutError(), redis.ConnectionError(), redis.TimeoutError(),
                httpx.ConnectTimeout("t"), StoreUnavailable("closed"), DependencyUnavailable("qdrant"),
                KafkaException(KafkaError(KafkaError._TRANSPORT)), KafkaException("3 undelivered"),
                _status_error(503), _status_error(429)]:
        assert is_dependency_unavailable(exc), exc


def test_a_cause_chain_is_followed():
    try:
        try:
            raise redis.ConnectionError("down")
        except redis.ConnectionError as inner:
            raise RuntimeError("could not load the few-shot examples") from inner
    except RuntimeError as outer:
        assert is_dependency_unavailable(outer)


def test_everything_else_is_deterministic():
    for exc in [ValueError("vector of 3 floats, collection has 384"), KeyError("id"), RuntimeError("bug"),
                KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)), _status_error(400),
                _status_error(422), redis.ResponseError("WRONGTYPE")]:
        assert not is_dependency_unavailable(exc), exc
