"""A fake OpenAI-compatible provider whose failures can be switched at runtime.

Tests, the demo and the benchmarks point LiteLLM at it to see what the breaker
does when a provider errors, hangs, refuses connections or cuts a stream::

    async with FakeProvider() as provider, httpx.AsyncClient() as client:
        url = f"{provider.base_url}/chat/completions"
        body = {"model": "gpt-fake", "messages": []}
        provider.error(status=503)
        assert (await client.post(url, json=body)).status_code == 503
        provider.refuse()   # connecting fails now, and open connections are cut
        provider.healthy()  # listening again, on the same port
        assert (await client.post(url, json=body)).status_code == 200
        assert provider.calls("chat") == 2

    with FakeProvider() as provider:  # serves from its own thread: for sync code
        provider.hang()               # or for a proxy running in another process

It speaks just enough HTTP/1.1 over bare asyncio streams (keep-alive,
Content-Length and chunked bodies) to need nothing beyond the standard
library, so it starts in milliseconds and adds little to a benchmark.

Why not an ASGI app on uvicorn, the well-kept way to serve HTTP: the faults
are below what ASGI can express. A provider that accepts the connection and
never answers, one that refuses connections while keeping its port, one that
cuts a stream half-way through a chunk or closes a kept-alive connection
under the client, and headers sent long before the first byte of the body all
need the socket itself; uvicorn would answer, time out or close on its own
terms. (respx covers the cases that need no socket at all.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import http
import itertools
import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self, TypeVar

__all__ = ["Endpoint", "FakeProvider", "Mode", "RecordedCall"]

Endpoint = Literal["chat", "models", "other"]
"""What a request asked for: chat completions, the model list, or anything else."""

_T = TypeVar("_T")

_ROUTES: dict[str, tuple[str, Endpoint]] = {
    "/v1/chat/completions": ("POST", "chat"),
    "/chat/completions": ("POST", "chat"),
    "/v1/models": ("GET", "models"),
    "/models": ("GET", "models"),
}
_HEAD_LIMIT = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_BACKLOG = 128
_ACCEPT_RETRY_SEC = 1.0


class Mode(enum.StrEnum):
    """How the provider answers chat calls, and model-list calls unless told otherwise."""

    HEALTHY = "healthy"
    """Answer normally."""
    ERROR = "error"
    """Answer with an OpenAI-style JSON error (503 unless another status is given)."""
    HANG = "hang"
    """Read the request, then answer nothing until the mode changes."""
    REFUSE = "refuse"
    """Stop listening and drop open connections: connecting fails with ECONNREFUSED."""
    RATE_LIMIT = "rate_limit"
    """Answer 429 with a ``Retry-After`` header."""
    SLOW = "slow"
    """Answer normally, after a delay."""
    BREAK_STREAM = "break_stream"
    """Cut streamed answers after some chunks; other calls are answered normally."""
    STALL_STREAM = "stall_stream"
    """Send a streamed answer's headers and some chunks, then nothing until the mode
    changes (the rest follows then); other calls are answered normally."""
    SLOW_FIRST_TOKEN = "slow_first_token"  # noqa: S105 - a mode's name, not a secret
    """Send a streamed answer's headers at once and its first chunk after a delay;
    other calls are answered after the delay."""


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One request as kept by ``FakeProvider(record=True)``, for timelines in demos and benchmarks.

    ``at`` is when the request arrived, on the provider's clock; ``status`` is
    ``None`` when no response was sent (hung until dropped, or refused).
    """

    at: float
    method: str
    path: str
    status: int | None


@dataclass(frozen=True, slots=True)
class _Behaviour:
    mode: Mode
    status: int = 503
    message: str | None = None
    retry_after: float = 1.0
    delay: float = 1.0
    after_chunks: int = 1


_HEALTHY = _Behaviour(Mode.HEALTHY)

# Which options each mode takes, so a typo such as ``slow(status=...)`` fails loudly.
_OPTIONS: dict[Mode, frozenset[str]] = {
    Mode.HEALTHY: frozenset(),
    Mode.ERROR: frozenset({"status", "message"}),
    Mode.HANG: frozenset(),
    Mode.REFUSE: frozenset(),
    Mode.RATE_LIMIT: frozenset({"retry_after", "message"}),
    Mode.SLOW: frozenset({"delay"}),
    Mode.BREAK_STREAM: frozenset({"after_chunks"}),
    Mode.STALL_STREAM: frozenset({"after_chunks"}),
    Mode.SLOW_FIRST_TOKEN: frozenset({"delay"}),
}


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


_Response = tuple[int, bytes, Sequence[tuple[str, str]]]
"""Status, JSON body and extra headers of a response."""


class _BadRequestError(Exception):
    """The bytes on the connection are not an HTTP/1.x request we can parse."""


class FakeProvider:
    """An OpenAI-compatible provider on a loopback port, with switchable failure modes.

    Run it in the caller's event loop (``async with``, or ``start``/``aclose``)
    or in a thread with its own loop (``with``, or ``start_in_thread``/``stop``)
    for sync code and for other processes. Mode switches and counters are safe
    from any thread; a switch has taken effect when the call returns.
    """

    def __init__(
        self,
        *,
        models: Sequence[str] = ("fake-model",),
        reply: str = "ok",
        host: str = "127.0.0.1",
        port: int = 0,
        models_follow_mode: bool = True,
        require_api_key: str | None = None,
        record: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Configure the provider; nothing listens until it is started.

        ``host`` is an IPv4 address; ``port=0`` picks a free port, kept for the
        provider's lifetime. ``models_follow_mode=False`` keeps ``/models``
        healthy while chat calls fail. ``require_api_key`` answers 401 to
        requests whose bearer token differs. ``clock`` stamps recorded calls
        and ``sleep`` waits out ``slow`` delays.
        """
        if isinstance(models, str):
            raise TypeError(f"models={models!r} is invalid: expected a sequence of model names")
        if not 0 <= port <= 65535:
            raise ValueError(f"port={port!r} is invalid: expected 0 to 65535")
        self._models = tuple(models)
        self._reply = reply
        self._host = host
        self._port = port
        self._models_follow_mode = models_follow_mode
        self._api_key = require_api_key
        self._record = record
        self._clock = clock
        self._sleep = sleep

        self._behaviour = _HEALTHY
        self._script: deque[_Behaviour] = deque()
        self._lock = threading.Lock()
        self._counts: dict[Endpoint, int] = {"chat": 0, "models": 0, "other": 0}
        self._log: list[RecordedCall] = []
        self._ids = itertools.count(1)

        # Owned by the serving loop's thread once started.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._closed = False
        # Replaced on every mode change; setting the old one wakes hung requests.
        self._changed = asyncio.Event()
        # The bound port; the loop accepts on it while ``_listening``.
        self._sock: socket.socket | None = None
        self._listening = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Every socket from accept() until its task starts, then its writer:
        # refuse() and shutdown close both, so no connection outlives the provider.
        self._accepted: set[socket.socket] = set()
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

        # Only used when serving from a thread.
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_requested = False

    # -- properties ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port, fixed from start until close, even across ``refuse``."""
        if self._port == 0:
            raise RuntimeError("FakeProvider has no port until it is started")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self._host}:{self.port}/v1"

    @property
    def mode(self) -> Mode:
        """The current mode (scripted ``fail_next`` failures are not reflected)."""
        return self._behaviour.mode

    # -- modes --------------------------------------------------------------

    def set_mode(
        self,
        mode: Mode | str,
        *,
        status: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        after_chunks: int | None = None,
    ) -> None:
        """Switch mode, discarding pending ``fail_next`` failures; hung requests then follow it.

        Options apply to the mode named: ``status``/``message`` to error,
        ``retry_after``/``message`` to rate_limit, ``delay`` to slow and
        ``after_chunks`` to break_stream and stall_stream, ``delay`` to
        slow_first_token.
        """
        behaviour = _build_behaviour(
            Mode(mode),
            status=status,
            message=message,
            retry_after=retry_after,
            delay=delay,
            after_chunks=after_chunks,
        )
        self._in_loop(lambda: self._apply(behaviour))

    def healthy(self) -> None:
        """Answer every call normally."""
        self.set_mode(Mode.HEALTHY)

    def error(self, status: int = 503, message: str | None = None) -> None:
        """Answer calls with an OpenAI-style JSON error with this status."""
        self.set_mode(Mode.ERROR, status=status, message=message)

    def hang(self) -> None:
        """Read requests and answer nothing until the mode changes or the provider closes."""
        self.set_mode(Mode.HANG)

    def refuse(self) -> None:
        """Stop listening and drop open connections; other modes listen again on the same port."""
        self.set_mode(Mode.REFUSE)

    def rate_limit(self, retry_after: float = 1.0) -> None:
        """Answer 429 with ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``."""
        self.set_mode(Mode.RATE_LIMIT, retry_after=retry_after)

    def slow(self, delay: float) -> None:
        """Answer normally, ``delay`` seconds after each request arrives."""
        self.set_mode(Mode.SLOW, delay=delay)

    def break_stream(self, after_chunks: int = 1) -> None:
        """Cut streamed chat answers after ``after_chunks`` SSE chunks, before ``[DONE]``."""
        self.set_mode(Mode.BREAK_STREAM, after_chunks=after_chunks)

    def stall_stream(self, after_chunks: int = 0) -> None:
        """Stream headers and ``after_chunks`` chunks, then hold the rest until the mode changes."""
        self.set_mode(Mode.STALL_STREAM, after_chunks=after_chunks)

    def slow_first_token(self, delay: float) -> None:
        """Stream headers at once, the first chunk ``delay`` seconds later (other calls: slow)."""
        self.set_mode(Mode.SLOW_FIRST_TOKEN, delay=delay)

    def fail_next(self, n: int, status: int = 503) -> None:
        """Make the next ``n`` chat calls fail with ``status``, then follow the mode again."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n={n!r} is invalid: expected an int >= 0")
        failure = _build_behaviour(Mode.ERROR, status=status)
        self._in_loop(lambda: self._script.extend([failure] * n))

    # -- counters -----------------------------------------------------------

    def calls(self, endpoint: Endpoint | None = None) -> int:
        """Requests received for ``endpoint`` ("chat", "models", "other"), or all of them."""
        with self._lock:
            if endpoint is None:
                return sum(self._counts.values())
            return self._counts[endpoint]

    def reset_counts(self) -> None:
        """Zero the counters and forget recorded calls."""
        with self._lock:
            self._counts = {"chat": 0, "models": 0, "other": 0}
            self._log = []

    def recorded(self) -> list[RecordedCall]:
        """The calls finished so far, in the order they finished (empty unless ``record=True``)."""
        with self._lock:
            return list(self._log)

    # -- lifecycle in the caller's loop ---------------------------------------

    async def start(self) -> Self:
        """Bind the port and serve from the running event loop; idempotent."""
        if self._closed:
            raise RuntimeError("FakeProvider cannot be restarted once closed")
        if self._loop is not None:
            return self
        self._sock = self._bind()  # first, so a failed bind leaves the provider unstarted
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._behaviour.mode is not Mode.REFUSE:
            self._listen()
        return self

    async def aclose(self) -> None:
        """Close the port and every open connection, hung ones included; idempotent."""
        if self._thread is not None and threading.get_ident() != self._loop_thread:
            await asyncio.to_thread(self.stop)
            return
        if self._loop is None or self._closed:
            self._closed = True
            return
        if threading.get_ident() != self._loop_thread:
            raise RuntimeError("FakeProvider.aclose() must run in the loop that started it")
        await self._shutdown()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- lifecycle in a thread ------------------------------------------------

    def start_in_thread(self) -> Self:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        if self._thread is not None:
            return self
        if self._loop is not None or self._closed:
            raise RuntimeError("FakeProvider is already running in an event loop, or closed")
        started: concurrent.futures.Future[asyncio.Event] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._thread_main, args=(started,), name="FakeProvider", daemon=True
        )
        thread.start()
        try:
            self._stop_event = started.result()
        except BaseException:
            thread.join()
            raise
        self._thread = thread
        return self

    def stop(self) -> None:
        """Stop a provider started with ``start_in_thread`` and join its thread; idempotent."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or stop_event is None:
            if self._loop is not None and not self._closed:
                raise RuntimeError("FakeProvider runs in the caller's loop: use `await aclose()`")
            self._closed = True
            return
        if threading.get_ident() == thread.ident:
            raise RuntimeError("FakeProvider.stop() cannot run on the provider's own thread")
        with self._lock:
            if not self._stop_requested:
                self._stop_requested = True
                loop.call_soon_threadsafe(stop_event.set)
        thread.join()

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self, started: concurrent.futures.Future[asyncio.Event]) -> None:
        asyncio.run(self._serve_in_thread(started))

    async def _serve_in_thread(self, started: concurrent.futures.Future[asyncio.Event]) -> None:
        stop_event = asyncio.Event()
        try:
            await self.start()
        except BaseException as exc:  # noqa: BLE001 - re-raised by start_in_thread()
            await self._shutdown()
            started.set_exception(exc)
            return
        started.set_result(stop_event)
        try:
            await stop_event.wait()
        finally:
            await self._shutdown()

    # -- loop-side machinery --------------------------------------------------

    def _in_loop(self, action: Callable[[], _T]) -> _T:
        """Run ``action`` on the serving loop's thread and return its result.

        Every change to listening sockets, tasks and hung requests happens
        there, so callers in other threads wait for it to be done.
        """
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or not loop.is_running():
            return action()
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(action())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result()

    def _apply(self, behaviour: _Behaviour) -> None:
        running = self._loop is not None and not self._closed
        if running and behaviour.mode is not Mode.REFUSE:
            self._listen()  # may fail if another process took the port: then nothing changes
        self._script.clear()
        self._behaviour = behaviour
        self._changed.set()
        self._changed = asyncio.Event()
        if running and behaviour.mode is Mode.REFUSE:
            self._unlisten()

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Lets healthy() after refuse() rebind while dropped connections sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        return sock

    def _listen(self) -> None:
        """Listen on the port and accept from the loop; effective when this returns.

        The kernel queues connections from here on, so a switch out of REFUSE
        is visible at once. The provider accepts itself rather than through an
        ``asyncio.Server``: a connection that server accepts as it closes can
        outlive it (and Python 3.11's server forgets it), while every socket
        accepted here is closed by ``refuse()`` and by shutdown.
        """
        if self._listening:
            return
        if self._sock is None:
            self._sock = self._bind()
        sock, loop = self._sock, self._serving_loop()
        sock.listen(_BACKLOG)
        sock.setblocking(False)  # noqa: FBT003 - the socket module's own signature
        loop.add_reader(sock.fileno(), self._accept, sock)
        self._listening = True

    def _accept(self, sock: socket.socket) -> None:
        """Take what the backlog holds (a loop reader callback: nothing can interleave)."""
        for _ in range(_BACKLOG):
            try:
                conn, _address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:
                # Out of file descriptors or buffers: pause, as asyncio's own server does.
                self._stop_accepting()
                self._serving_loop().call_later(_ACCEPT_RETRY_SEC, self._resume_accepting, sock)
                return
            if self._closed or self._behaviour.mode is Mode.REFUSE:
                _close_socket(conn)
                continue
            conn.setblocking(False)  # noqa: FBT003 - the socket module's own signature
            self._accepted.add(conn)
            self._spawn(self._on_connection(conn))

    def _serving_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:  # pragma: no cover - set before anything listens
            raise RuntimeError("the provider is not serving")
        return self._loop

    def _resume_accepting(self, sock: socket.socket) -> None:
        if sock is self._sock and not self._closed and self._behaviour.mode is not Mode.REFUSE:
            self._listen()

    def _stop_accepting(self) -> None:
        if self._listening and self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._listening = False

    def _unlisten(self) -> None:
        """Stop listening and drop connections, keeping the port bound but not listening.

        A bound socket that does not listen still refuses connections, and it
        keeps the port ours for the switch back.
        """
        self._stop_accepting()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._drop_all()
        self._sock = self._bind()

    def _drop_all(self) -> None:
        for conn in self._accepted:
            _close_socket(conn)
        self._accepted.clear()
        for writer in self._connections.values():
            _drop(writer)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _shutdown(self) -> None:
        self._closed = True
        self._stop_accepting()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A transport closes its socket on the loop turn after close() or abort():
        # give it that turn, so a loop that ends next leaves nothing open.
        await asyncio.sleep(0)

    # -- serving ----------------------------------------------------------------

    async def _on_connection(self, conn: socket.socket) -> None:
        if conn not in self._accepted:
            return  # refuse() closed it before this task started
        # From here the transport owns the socket: closing it under a transport
        # being made breaks the loop, so refuse() and shutdown leave it to this task.
        self._accepted.discard(conn)
        task, loop = asyncio.current_task(), self._serving_loop()
        if task is None:  # pragma: no cover - always run as a task
            raise RuntimeError("a connection is served by a task")
        reader = asyncio.StreamReader(limit=_HEAD_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=conn)
        except BaseException:
            _close_socket(conn)  # cancelled by shutdown; the transport, if made, is closed
            raise
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if self._closed or self._behaviour.mode is Mode.REFUSE:
            # Dropped by a refuse() while its transport was being made.
            _drop(writer)
            return
        self._connections[task] = writer
        try:
            while await self._serve_one(reader, writer):
                pass
        except _BadRequestError as exc:
            with contextlib.suppress(ConnectionError):
                body = _error_body(str(exc), "invalid_request_error", "bad_request")
                await _send(writer, 400, body, (), keep_alive=False)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away, or a mode change dropped the connection
        except asyncio.CancelledError:
            pass  # shutdown cancels the connections it drops
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done."""
        request = await _read_request(reader, writer)
        if request is None:
            return False
        route = _ROUTES.get(request.path)
        endpoint: Endpoint = route[1] if route and route[0] == request.method else "other"
        with self._lock:
            self._counts[endpoint] += 1
        arrived = self._clock()
        status: int | None = None
        try:
            status, keep_alive = await self._answer(request, endpoint, reader, writer)
        finally:
            if self._record:
                call = RecordedCall(arrived, request.method, request.path, status)
                with self._lock:
                    self._log.append(call)
        return keep_alive

    async def _answer(
        self,
        request: _Request,
        endpoint: Endpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> tuple[int | None, bool]:
        """Answer as the mode says: the status sent (None if none), and keep the connection?"""
        keep = request.keep_alive
        if endpoint == "other":
            return await _send(writer, *_not_routed(request), keep), keep

        behaviour = (
            self._script.popleft()
            if endpoint == "chat" and self._script
            else self._current(endpoint)
        )
        while behaviour.mode is Mode.HANG:
            if not await self._wait_for_change(reader):
                return None, False
            behaviour = self._current(endpoint)
        if behaviour.mode is Mode.REFUSE:
            _drop(writer)
            return None, False
        if behaviour.mode is Mode.SLOW or (
            behaviour.mode is Mode.SLOW_FIRST_TOKEN and not _streamed(request)
        ):
            await self._sleep(behaviour.delay)

        # Faults come before the key check: a provider that is down checks no keys.
        refusal = _fault(behaviour) or self._auth_failure(request)
        if refusal is not None:
            return await _send(writer, *refusal, keep), keep
        if endpoint == "models":
            return await _send(writer, 200, self._model_list(), (), keep), keep
        return await self._chat(request, writer, behaviour)

    def _auth_failure(self, request: _Request) -> _Response | None:
        if self._api_key is None or request.headers.get("authorization") == (
            f"Bearer {self._api_key}"
        ):
            return None
        message = "Incorrect API key provided"
        return 401, _error_body(message, "invalid_request_error", "invalid_api_key"), ()

    def _current(self, endpoint: Endpoint) -> _Behaviour:
        if endpoint == "models" and not self._models_follow_mode:
            return _HEALTHY
        return self._behaviour

    async def _wait_for_change(self, reader: asyncio.StreamReader) -> bool:
        """Wait for a mode change; False if the client hung up first."""
        changed = asyncio.ensure_future(self._changed.wait())
        gone = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({changed, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            gone.cancel()
            await asyncio.gather(changed, gone, return_exceptions=True)
        # Bytes while hung mean a pipelining client we will not serve: treat it as gone.
        return gone.cancelled()

    async def _chat(
        self, request: _Request, writer: asyncio.StreamWriter, behaviour: _Behaviour
    ) -> tuple[int | None, bool]:
        keep = request.keep_alive
        try:
            payload = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = None
        if not isinstance(payload, dict):
            body = _error_body(
                "The request body must be a JSON object", "invalid_request_error", None
            )
            return await _send(writer, 400, body, (), keep), keep
        model, messages = payload.get("model"), payload.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list):
            message = "you must provide a model (a string) and messages (a list)"
            body = _error_body(message, "invalid_request_error", None)
            return await _send(writer, 400, body, (), keep), keep

        pieces = re.findall(r"\S+\s*|\s+", self._reply)
        prompt_tokens = max(1, len(json.dumps(messages)) // 4)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": max(1, len(pieces)),
            "total_tokens": prompt_tokens + max(1, len(pieces)),
        }
        completion_id = f"chatcmpl-fake{next(self._ids)}"
        created = int(time.time())
        if payload.get("stream") is True:
            options = payload.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events = _stream_events(
                completion_id, created, model, pieces, usage if include_usage else None
            )
            mode = behaviour.mode
            cut = behaviour.after_chunks if mode is Mode.BREAK_STREAM else None
            hold: tuple[int, Callable[[], Awaitable[object]]] | None = None
            if mode is Mode.STALL_STREAM:
                hold = behaviour.after_chunks, self._changed.wait
            elif mode is Mode.SLOW_FIRST_TOKEN:
                hold = 0, lambda: self._sleep(behaviour.delay)
            return await _send_stream(writer, events, keep, cut, hold)
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self._reply, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return await _send(writer, 200, _json(completion), (), keep), keep

    def _model_list(self) -> bytes:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake-provider"}
            for name in self._models
        ]
        return _json({"object": "list", "data": data})


# -- plain helpers ------------------------------------------------------------


def _build_behaviour(
    mode: Mode,
    *,
    status: int | None = None,
    message: str | None = None,
    retry_after: float | None = None,
    delay: float | None = None,
    after_chunks: int | None = None,
) -> _Behaviour:
    given = {
        "status": status,
        "message": message,
        "retry_after": retry_after,
        "delay": delay,
        "after_chunks": after_chunks,
    }
    for name, value in given.items():
        if value is not None and name not in _OPTIONS[mode]:
            raise ValueError(f"{name}={value!r} is invalid: mode {mode.value!r} takes no {name}")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
    ):
        raise ValueError(f"status={status!r} is invalid: expected an int from 400 to 599")
    for name, number in (("retry_after", retry_after), ("delay", delay)):
        if number is not None and (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not 0 <= number < math.inf
        ):
            raise ValueError(f"{name}={number!r} is invalid: expected a finite number >= 0")
    if after_chunks is not None and (
        isinstance(after_chunks, bool) or not isinstance(after_chunks, int) or after_chunks < 0
    ):
        raise ValueError(f"after_chunks={after_chunks!r} is invalid: expected an int >= 0")
    default = _Behaviour(mode)
    return _Behaviour(
        mode,
        status=default.status if status is None else status,
        message=message,
        retry_after=default.retry_after if retry_after is None else float(retry_after),
        delay=default.delay if delay is None else float(delay),
        after_chunks=default.after_chunks if after_chunks is None else after_chunks,
    )


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> _Request | None:
    """Read one request, or None if the client closed an idle connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadRequestError("the connection closed mid-request") from None
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequestError("request head too large") from None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequestError(f"malformed request line {request_line!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequestError(f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await _read_body(reader, headers)
    return _Request(method, target.partition("?")[0], headers, body, keep_alive)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length = headers.get("content-length")
    if length is None:
        return b""
    if not length.isdigit() or int(length) > _MAX_BODY:
        raise _BadRequestError(f"bad Content-Length {length!r}")
    return await reader.readexactly(int(length))


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequestError(f"bad chunk size line {size_line!r}") from None
        if size < 0 or total + size > _MAX_BODY:
            raise _BadRequestError(f"bad chunk size {size}")
        if size == 0:
            break
        total += size
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise _BadRequestError("chunk not followed by CRLF")
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailers carry nothing we need
    return b"".join(parts)


def _fault(behaviour: _Behaviour) -> _Response | None:
    """The error response an error or rate-limit mode sends, or None for the other modes."""
    if behaviour.mode is Mode.ERROR:
        status = behaviour.status
        kind = "server_error" if status >= 500 else "invalid_request_error"
        message = behaviour.message or f"fake provider error: {status} {_phrase(status)}"
        return status, _error_body(message, kind, None), ()
    if behaviour.mode is Mode.RATE_LIMIT:
        seconds = behaviour.retry_after
        headers = (
            ("Retry-After", str(math.ceil(seconds))),
            ("retry-after-ms", str(round(seconds * 1000))),
        )
        message = behaviour.message or "Rate limit reached (fake provider)"
        return 429, _error_body(message, "requests", "rate_limit_exceeded"), headers
    return None


def _not_routed(request: _Request) -> _Response:
    """404 for an unknown path, 405 for a known path with the wrong method."""
    route = _ROUTES.get(request.path)
    if route is not None:
        message = f"Method {request.method} not allowed on {request.path}"
        return 405, _error_body(message, "invalid_request_error", None), (("Allow", route[0]),)
    message = f"Unknown request URL: {request.method} {request.path}"
    return 404, _error_body(message, "invalid_request_error", "unknown_url"), ()


def _close_socket(conn: socket.socket) -> None:
    """Close an accepted socket that never got a transport, sending the FIN at once."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def _drop(writer: asyncio.StreamWriter) -> None:
    """Cut a connection now: the FIN leaves before this returns, not on the next loop turn.

    So a client that checks its pooled connection right after ``refuse()``
    sees it closed, whichever thread it runs on.
    """
    sock = writer.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    writer.transport.abort()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _head(status: int, headers: Sequence[tuple[str, str]], keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_phrase(status)}",
        *(f"{name}: {value}" for name, value in headers),
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1")


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _error_body(message: str, kind: str, code: str | None) -> bytes:
    return _json({"error": {"message": message, "type": kind, "param": None, "code": code}})


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    extra_headers: Sequence[tuple[str, str]],
    keep_alive: bool,
) -> int:
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *extra_headers,
    ]
    writer.write(_head(status, headers, keep_alive) + body)
    await writer.drain()
    return status


def _stream_events(
    completion_id: str,
    created: int,
    model: str,
    pieces: Sequence[str],
    usage: dict[str, int] | None,
) -> list[bytes]:
    """The SSE ``data:`` events of a streamed completion, without the final ``[DONE]``."""

    def chunk(delta: dict[str, str], finish_reason: str | None) -> dict[str, object]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    chunks = [
        chunk({"role": "assistant", "content": ""}, None),
        *(chunk({"content": piece}, None) for piece in pieces),
        chunk({}, "stop"),
    ]
    if usage is not None:
        chunks.append({**chunk({}, None), "choices": [], "usage": usage})
    return [b"data: " + _json(c) + b"\n\n" for c in chunks]


def _streamed(request: _Request) -> bool:
    """Whether a chat request asks for a streamed answer."""
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(payload, dict) and payload.get("stream") is True


async def _send_stream(
    writer: asyncio.StreamWriter,
    events: Sequence[bytes],
    keep_alive: bool,
    cut_after: int | None,
    hold: tuple[int, Callable[[], Awaitable[object]]] | None = None,
) -> tuple[int, bool]:
    """Send ``events`` and ``[DONE]`` as chunked SSE, or cut the connection after ``cut_after``.

    ``hold``: after that many events, flush and await the callable before the rest.
    """
    headers = [
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-cache"),
        ("Transfer-Encoding", "chunked"),
    ]
    writer.write(_head(200, headers, keep_alive))
    for sent, event in enumerate(events):
        if hold is not None and sent == hold[0]:
            await writer.drain()
            await hold[1]()
        if cut_after is not None and sent >= cut_after:
            break
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
    if cut_after is not None:
        # Flush what was sent so the client sees those chunks, then cut
        # without the terminating chunk, as a dying upstream would.
        writer.transport.set_write_buffer_limits(high=0)
        await writer.drain()
        _drop(writer)
        return 200, False
    done = b"data: [DONE]\n\n"
    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
    await writer.drain()
    return 200, keep_alive
