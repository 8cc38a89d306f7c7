"""Many OpenAI-compatible endpoints behind one loopback port, for the probe-scale suite.

``GET /e{i}/v1/models`` answers a one-model list for any ``i``, so one process
stands in for thousands of distinct endpoints. ``GET /__stats`` reports the
requests and connections seen. Runs in its own process (``python
bench/endpoint_server.py``), so the benchmark's socket and memory counts are
the prober's alone; prints its port on the first line of stdout and serves
until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys

_MODELS = json.dumps(
    {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "bench"}]}
).encode()


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.connections = 0
        self.open = 0
        self.peak_open = 0


def _response(status: str, body: bytes, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


async def _serve(stats: _Stats, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    stats.connections += 1
    stats.open += 1
    stats.peak_open = max(stats.peak_open, stats.open)
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            request_line, _, rest = head.decode("latin-1").partition("\r\n")
            parts = request_line.split(" ")
            path = parts[1].partition("?")[0] if len(parts) == 3 else ""
            keep_alive = "connection: close" not in rest.lower()
            stats.requests += 1
            if path == "/__stats":
                body = json.dumps(vars(stats)).encode()
                writer.write(_response("200 OK", body, keep_alive))
            elif path.endswith("/models"):
                writer.write(_response("200 OK", _MODELS, keep_alive))
            else:
                writer.write(_response("404 Not Found", b"{}", keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    finally:
        stats.open -= 1
        writer.close()


async def _main() -> None:
    stats = _Stats()
    server = await asyncio.start_server(
        lambda r, w: _serve(stats, r, w), "127.0.0.1", 0, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin (or goes away).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(_main())
