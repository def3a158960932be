"""A local OpenAI-compatible embeddings server for tests, with scripted faults.

Usage::

    from tests._openai_server import Fault, FakeOpenAIServer

    with FakeOpenAIServer(dim=8) as server:
        server.script(Fault(status=429, headers={"Retry-After": "0"}), None)  # then success
        encoder = OpenAIEncoder("text-embedding-ada-002", api_key=server.api_key, base_url=server.base_url)
        ...
        assert server.n_requests == 2

``POST /v1/embeddings`` answers with the documented body
``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}], "model": ...,
"usage": {...}}``, with ``encoding_format`` ``"float"`` or ``"base64"``. Each request takes the next
scripted :class:`Fault` (``None`` = answer normally); when the script is empty it answers normally.
Vectors are deterministic unit vectors of the text (:meth:`FakeOpenAIServer.vector`), so tests can
check order and content.
"""

from __future__ import annotations

import base64
import hashlib
import json
import select
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

MAX_INPUTS = 2048


@dataclass(frozen=True)
class Fault:
    """One scripted answer instead of a normal one.

    Attributes
    ----------
    status
        HTTP status to answer with; 200 with ``body`` set sends a malformed success.
    headers
        Extra response headers, e.g. ``{"Retry-After": "1"}``.
    body
        Raw body; by default an OpenAI-style error object for ``status``.
    delay_s
        Longest wait before answering; the answer is dropped as soon as the client closes the connection, so
        a value above the client timeout is a timeout whatever the machine's load. With ``status=200`` and
        no ``body`` an answer sent after the wait is a normal one.
    """

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay_s: float = 0.0


UNAUTHORIZED = Fault(status=401)
RATE_LIMITED = Fault(status=429, headers={"Retry-After": "0"})
SERVER_ERROR = Fault(status=500)
MALFORMED = Fault(status=200, body=b'{"object": "list", "data": "not a list"}')


def timeout(delay_s: float) -> Fault:
    """Hold a normal answer until the client gives up, at most ``delay_s`` seconds (set it above its timeout)."""
    return Fault(status=200, delay_s=delay_s)


@dataclass
class SeenRequest:
    """What the server received in one request."""

    model: str
    inputs: list[str]
    encoding_format: str
    authorization: str
    status: int


class FakeOpenAIServer:
    """Threaded OpenAI-compatible ``/v1/embeddings`` server on 127.0.0.1 (a random free port).

    Parameters
    ----------
    dim
        Embedding length.
    api_key
        The key it accepts (``Authorization: Bearer <key>``); any other gets a 401.
    """

    def __init__(self, *, dim: int = 8, api_key: str = "sk-test") -> None:
        self.dim = dim
        self.api_key = api_key
        self.requests: list[SeenRequest] = []
        self._script: deque[Fault | None] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- control

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, to pass as the client's ``base_url``."""
        assert self._httpd is not None, "start the server first (use it as a context manager)"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def n_requests(self) -> int:
        """Requests received so far (including failed and timed-out ones)."""
        with self._lock:
            return len(self.requests)

    def script(self, *answers: Fault | None) -> None:
        """Queue answers for the next requests; ``None`` answers normally."""
        with self._lock:
            self._script.extend(answers)

    def vector(self, text: str) -> np.ndarray:
        """The deterministic unit vector the server returns for ``text``."""
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def start(self) -> FakeOpenAIServer:
        """Start serving in a daemon thread."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (sleeping handler threads are daemons and are abandoned)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- serving

    def _answer(
        self, payload: dict[str, Any], authorization: str
    ) -> tuple[int, dict[str, str], bytes, float]:
        raw_input = payload.get("input", [])
        inputs = [raw_input] if isinstance(raw_input, str) else list(raw_input)
        encoding_format = payload.get("encoding_format") or "float"
        fault: Fault | None = None
        if authorization != f"Bearer {self.api_key}":
            fault = Fault(status=401)  # a bad key does not use up a scripted answer
        else:
            with self._lock:
                fault = self._script.popleft() if self._script else None
        if fault is None and len(inputs) > MAX_INPUTS:
            fault = Fault(status=400, body=_error(f"'$.input' must have at most {MAX_INPUTS} items"))
        status = fault.status if fault else 200
        with self._lock:
            self.requests.append(
                SeenRequest(str(payload.get("model")), inputs, encoding_format, authorization, status)
            )
        delay = fault.delay_s if fault else 0.0
        headers = dict(fault.headers) if fault else {}
        if fault is not None and fault.body is not None:
            return status, headers, fault.body, delay
        if status != 200:
            return status, headers, _error(f"scripted fault {status}", status), delay
        data = []
        for i, text in enumerate(inputs):
            vector = self.vector(str(text))
            embedding: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if encoding_format == "base64"
                else [float(x) for x in vector]
            )
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        n_tokens = sum(len(str(text).split()) for text in inputs)
        body = {
            "object": "list",
            "data": data,
            "model": payload.get("model"),
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }
        return 200, headers, json.dumps(body).encode(), delay


def _error(message: str, status: int = 400) -> bytes:
    kinds = {401: ("invalid_request_error", "invalid_api_key"), 429: ("requests", "rate_limit_exceeded")}
    kind, code = kinds.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/embeddings":
                self._send(404, {}, _error(f"no route {self.path}", 404))
                return
            try:
                payload = json.loads(raw)
            except ValueError:
                self._send(400, {}, _error("body is not JSON"))
                return
            status, headers, body, delay = server._answer(payload, self.headers.get("Authorization", ""))
            if delay and self._client_gave_up(delay):
                return  # a timed-out client closed the connection: nothing to answer
            self._send(status, headers, body)

        def _client_gave_up(self, limit_s: float) -> bool:
            """Hold the answer until the client closes the connection (its timeout) or ``limit_s`` passes.

            The outcome turns on the client's own timeout, not on a sleep racing it; ``limit_s`` only bounds
            the wait of a client that never gives up.
            """
            readable, _, _ = select.select([self.connection], [], [], limit_s)
            if not readable:
                return False
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and closed the connection

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
