"""A real HTTP server speaking the OpenAI chat-completions wire format, for tests of the LLM tier.

The one test double the project allows (a paid endpoint cannot be called from tests): it listens
on a free loopback port, answers ``POST /v1/chat/completions`` with scripted or computed answers,
and injects the faults the field saw: 429 with Retry-After, 5xx, answers slower than the client's
timeout, malformed JSON, labels outside the taxonomy. Every request is recorded (arrival and end
time, requests in flight at arrival, the usage it was billed) so tests can assert batching,
concurrency, retries and accounting against what the server actually saw and said.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


@dataclass
class Reply:
    """One scripted answer. With ``body`` set, those raw bytes are sent as they are."""

    status: int = 200
    content: str | None = None  # the assistant message; None = what the server's answerer says
    delay_s: float = 0.0  # before anything is sent (beyond the client's timeout = a timeout)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens; None = computed from lengths
    omit_usage: bool = False


@dataclass
class RecordedRequest:
    body: dict | None
    headers: dict[str, str]
    arrived: float  # time.monotonic()
    in_flight_at_arrival: int  # requests being served at that moment, this one included
    status: int = 0
    finished: float = 0.0
    usage: tuple[int, int] | None = None  # billed in the answer (what the client must book)

    @property
    def posts(self) -> list[dict]:
        """The posts of a classification request (user message JSON), [] for other requests."""
        try:
            posts = orjson.loads(self.body["messages"][-1]["content"])["posts"]
        except (TypeError, KeyError, IndexError, orjson.JSONDecodeError):
            return []
        # A summary request has "posts" too, as plain strings: not a classification request.
        return posts if all(isinstance(post, dict) for post in posts) else []


Answerer = Callable[[dict], str]


def taxonomy_names(request: dict) -> list[str]:
    """Vertical names listed in a classification system prompt ("- name: description")."""
    return re.findall(r"^- ([a-z0-9_-]+):", request["messages"][0]["content"], flags=re.MULTILINE)


def keyword_answerer(request: dict) -> str:
    """Labels each post with every listed vertical whose name appears in its text (confidence 0.9):
    a deterministic stand-in for a model, so tests can say what the right labels are."""
    names = taxonomy_names(request)
    posts = RecordedRequest(body=request, headers={}, arrived=0, in_flight_at_arrival=0).posts
    if not names:  # not a classification request: a plain answer (a summary, say)
        return f"answer to: {request['messages'][-1]['content'][:80]}"
    results = [{"id": p["id"], "labels": [{"vertical": n, "confidence": 0.9} for n in names if n in p["text"].lower()]}
               for p in posts]
    return orjson.dumps({"results": results}).decode()


class FakeLlmServer:
    def __init__(self, answerer: Answerer = keyword_answerer, *, delay_s: float = 0.0,
                 capacity: int | None = None, capacity_retry_after: str = "0", required_key: str | None = None,
                 model_name: str = "fake-model") -> None:
        self.answerer = answerer
        self.delay_s = delay_s  # of every computed answer (so concurrent requests overlap)
        self.capacity = capacity  # more requests than this in flight: 429 (a throttling endpoint)
        self.capacity_retry_after = capacity_retry_after
        self.required_key = required_key
        self.model_name = model_name
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-llm", daemon=True)

    # --- control ---

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeLlmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes slow handlers
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeLlmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply) -> None:
        """Serve these to the next requests, in order, before computed answers resume."""
        with self._lock:
            self._script.extend(replies)

    @property
    def max_in_flight(self) -> int:
        return max((r.in_flight_at_arrival for r in self.requests), default=0)

    def billed(self) -> tuple[int, int]:
        """Prompt and completion tokens the server reported over all its answers."""
        answered = [r.usage for r in self.requests if r.usage is not None]
        return sum(u[0] for u in answered), sum(u[1] for u in answered)

    # --- serving ---

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                fake._serve(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean; requests are recorded instead

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        with self._lock:
            self._in_flight += 1
            record = RecordedRequest(body=body, headers={k.lower(): v for k, v in handler.headers.items()},
                                     arrived=time.monotonic(), in_flight_at_arrival=self._in_flight)
            self.requests.append(record)
            over_capacity = self.capacity is not None and self._in_flight > self.capacity
            reply = None if over_capacity else (self._script.popleft() if self._script else None)
        try:
            status, headers, payload, usage = self._reply(handler.path, record, reply, over_capacity)
            record.status, record.usage = status, usage
            delay = reply.delay_s if reply is not None else (self.delay_s if status == 200 else 0.0)
            if delay and self._stopping.wait(delay):
                return
            handler.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                handler.send_header(name, value)
            handler.send_header("content-length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): as a real server, nothing to do
        finally:
            with self._lock:
                self._in_flight -= 1
                record.finished = time.monotonic()

    def _reply(self, path: str, record: RecordedRequest, reply: Reply | None,
               over_capacity: bool) -> tuple[int, dict[str, str], bytes, tuple[int, int] | None]:
        if path.rstrip("/") != "/v1/chat/completions":
            return 404, {}, b'{"error": {"message": "not found"}}', None
        if self.required_key and record.headers.get("authorization") != f"Bearer {self.required_key}":
            return 401, {}, b'{"error": {"message": "invalid api key"}}', None
        if over_capacity:
            return 429, {"retry-after": self.capacity_retry_after}, b'{"error": {"message": "rate limited"}}', None
        if record.body is None:
            return 400, {}, b'{"error": {"message": "body is not JSON"}}', None
        reply = reply or Reply()
        if reply.status != 200:
            return reply.status, reply.headers, orjson.dumps({"error": {"message": f"scripted {reply.status}"}}), None
        if reply.body is not None:
            return 200, reply.headers, reply.body, None
        try:
            content = reply.content if reply.content is not None else self.answerer(record.body)
        except Exception as exc:  # a bug in a test's answerer: say so to the client, as a server would
            return 500, {}, orjson.dumps({"error": {"message": f"answerer failed: {exc!r}"}}), None
        usage = reply.usage or (_tokens("".join(m["content"] for m in record.body["messages"])), _tokens(content))
        payload = {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": record.body.get("model", self.model_name),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
        if reply.omit_usage:
            return 200, reply.headers, orjson.dumps(payload), None
        payload["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
        return 200, reply.headers, orjson.dumps(payload), usage


def _tokens(text: str) -> int:
    # Not the client's estimate on purpose (words, not characters): the client must book what the
    # server reports, never its own guess, when usage is present.
    return len(text.split()) + 3
