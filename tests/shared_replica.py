"""A replica in its own process, driven line by line over stdin, for the Redis tests.

``python -m tests.shared_replica '{"redis_url": ..., "namespace": ..., ...}'``
builds a CircuitBreaker with those settings, starts it and prints ``ready``.
Commands (one per line), each answered by one line:

* ``trip ID``: enough failures to open ID here; answers ``ok``.
* ``wait ID STATE``: answers ``waiting`` at once, then ``seen`` when ID's
  local breaker is in STATE.
* ``state ID``: answers the local state.
* ``probed``: answers how many probe results this replica produced itself.
* ``quit``: stops the breaker and exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_circuit_breaker import BreakerState, CircuitBreaker


async def _wait_for(cb: CircuitBreaker, deployment: str, state: BreakerState) -> None:
    while cb.cache.breaker_state(deployment) is not state:
        await asyncio.sleep(0.001)
    print("seen", flush=True)


async def main(settings: dict[str, object]) -> None:
    cb = CircuitBreaker(**settings)  # type: ignore[arg-type]
    probed = 0

    def count(_result: object) -> None:
        nonlocal probed
        probed += 1

    cb.probe_listeners.append(count)
    waiters: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with cb:
        print("ready", flush=True)
        while line := (await reader.readline()).decode().split():
            command, args = line[0], line[1:]
            if command == "trip":
                for _ in range(cb.cache.failure_threshold):
                    cb.cache.mark_unhealthy(args[0], "HTTP 503 from the replica script")
                print("ok", flush=True)
            elif command == "wait":
                waiters.append(asyncio.create_task(_wait_for(cb, args[0], BreakerState(args[1]))))
                print("waiting", flush=True)
            elif command == "state":
                print(cb.cache.breaker_state(args[0]).value, flush=True)
            elif command == "probed":
                print(probed, flush=True)
            elif command == "quit":
                break
    for waiter in waiters:
        waiter.cancel()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
