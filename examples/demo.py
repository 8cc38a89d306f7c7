"""A scripted outage against the breaker core, in simulated time.

A fake "gpu-box" deployment serves a request every 2 s, dies for 90 s, then
heals. The breaker and a probe loop watch it; the script prints every state
change and what each request did, then a short summary. Simulated time (a
fake clock) lets a three-minute outage play out in well under a second.
"""

from __future__ import annotations

import asyncio

from litellm_circuit_breaker import HealthProbe, ProviderHealthCache, StateChange
from litellm_circuit_breaker.testing import FakeClock

DEPLOYMENT = "gpu-box"
DIES_AT, HEALS_AT, ENDS_AT = 20.0, 110.0, 180.0


async def main() -> int:
    clock = FakeClock(start=0.0)
    cache = ProviderHealthCache(clock=clock)
    alive = True

    def on_change(event: StateChange) -> None:
        print(f"  t={event.at:6.1f}s  breaker {event.old} -> {event.new}  ({event.reason})")

    cache.add_listener(on_change)

    async def probe() -> bool:
        return alive

    prober = HealthProbe(cache, {DEPLOYMENT: probe}, interval=30, on_ok="half_open")
    sent_while_dead = refused = served = 0
    first_call_after_heal: float | None = None
    print(f"gpu-box dies at t={DIES_AT:.0f}s and heals at t={HEALS_AT:.0f}s; one request every 2s")
    next_probe = 0.0
    while clock() < ENDS_AT:
        now = clock()
        alive = not (DIES_AT <= now < HEALS_AT)
        if now >= next_probe:
            await prober.tick_once()
            next_probe += prober.interval
        if not cache.try_acquire(DEPLOYMENT):
            refused += 1  # a router would send this request to a fallback at once
        elif alive:
            served += 1
            cache.mark_healthy(DEPLOYMENT)
            if now >= HEALS_AT and first_call_after_heal is None:
                first_call_after_heal = now
        else:
            sent_while_dead += 1
            cache.mark_unhealthy(DEPLOYMENT, "HTTP 503")
        clock.advance(2.0)
    print()
    print(f"requests served by gpu-box:          {served}")
    print(f"requests sent to it while dead:      {sent_while_dead} (threshold is 2)")
    print(f"requests kept away while open:       {refused}")
    healed_after = None if first_call_after_heal is None else first_call_after_heal - HEALS_AT
    print(f"seconds from heal to first success:  {healed_after}")
    ok = sent_while_dead <= cache.failure_threshold and healed_after is not None
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
