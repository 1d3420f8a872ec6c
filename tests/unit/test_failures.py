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


def test_the_edge_engines_disk_failures_hold_the_batch_and_bad_requests_do_not():
    """The engine's own texts (a WAL flush failing with EIO, seen in tests/e2e/test_vector_store_faults.py's
    indexer log): a disk failure must never be dead-lettered as poison; a bad request stays deterministic."""
    from shared.vectorstore.qdrant_edge import _engine_faults_as_unavailable

    disk = Exception('Service runtime error: WAL flush failed: Can\'t write WAL: Os { code: 5, kind: '
                     'InputOutputError, message: "Input/output error" }')
    bad_request = Exception("Wrong input: Vector dimension error: expected dim: 384, got 3")
    raised = []
    for engine_error in (disk, bad_request):
        try:
            with _engine_faults_as_unavailable():
                raise engine_error
        except Exception as exc:  # noqa: BLE001 (what the batch loop sees)
            raised.append(exc)
    assert isinstance(raised[0], StoreUnavailable) and is_dependency_unavailable(raised[0])
    assert raised[1] is bad_request and not is_dependency_unavailable(raised[1])
