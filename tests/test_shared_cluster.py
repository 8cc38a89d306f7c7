"""Breaker state shared through a real local Redis Cluster, through a failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from litellm_circuit_breaker._records import SharedKeys, read_record
from litellm_circuit_breaker._shared import (
    close_client,
    cluster_nodes,
    fetch_records,
    open_client,
    scan_pages,
)
from tests.redis_harness import RedisCluster
from tests.test_shared import eventually, plant_open_records, replica, replicas, trip

FAILOVER_SEC = 30.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """Three primaries and three replicas on loopback, made with ``redis-cli --cluster``."""
    made = RedisCluster(tmp_path)
    try:
        made.start()
        yield made
    finally:
        made.stop()


@pytest.mark.asyncio
async def test_replicas_share_through_a_redis_cluster_and_through_a_failover(
    cluster: RedisCluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every key of a namespace in one slot, so the scripts run on a cluster; the primary
    holding it is killed: decisions stay local meanwhile, sharing resumes on the promoted
    replica, and what was shared before the failover is still there."""
    keys = SharedKeys(namespace)
    holder = cluster.primary_of(keys.index)
    entry = next(n for n in cluster.nodes if n is not holder)  # the URL outlives the kill
    url = entry.url
    a = replica("A", url, namespace, redis_reconcile_sec=0.2)
    b = replica("B", url, namespace, redis_reconcile_sec=0.2)
    async with replicas(a, b):
        share_a, share_b = a.shared, b.shared
        assert share_a is not None
        assert share_b is not None
        await eventually(lambda: share_a.connected and share_b.connected, "both on the cluster")
        trip(a, "d1")
        a.cache.force_open("held", reason="maintenance")
        await eventually(lambda: not b.cache.is_healthy("d1"), "an opening reaches B")
        await eventually(lambda: b.cache.is_held("held"), "a hold reaches B")
        shared = {r.deployment for r in await fetch_records(url, namespace)}
        assert shared == {"d1", "held"}  # status reads a cluster too
        slots = {cluster.command(holder, "CLUSTER", "KEYSLOT", key).strip()
                 for key in (keys.index, keys.record("d1"), keys.probe_lease("x"))}  # fmt: skip
        assert len(slots) == 1

        await asyncio.sleep(0.2)  # let the primary's replica catch up, as it does in ms
        killed = time.monotonic()
        holder.stop()  # SIGKILL: the cluster fails over after the node timeout
        trip(a, "during")  # decided here, whatever Redis is doing
        assert not a.cache.is_healthy("during")
        promoted = await asyncio.to_thread(cluster.wait_promoted, keys.index, FAILOVER_SEC)
        failed_over = time.monotonic() - killed
        assert promoted is not holder
        await eventually(lambda: not b.cache.is_healthy("during"), "shared after the failover",
                         within=FAILOVER_SEC)  # fmt: skip
        shared_again = time.monotonic() - killed
        trip(b, "after")
        await eventually(lambda: not a.cache.is_healthy("after"), "and the other way",
                         within=FAILOVER_SEC)  # fmt: skip
        shared = {r.deployment for r in await fetch_records(url, namespace)}
        assert {"d1", "held", "during", "after"} <= shared
        client = aioredis.Redis(port=promoted.port, decode_responses=True)
        try:
            assert await client.hget(keys.record("held"), "open_until") == "-1"
        finally:
            await client.aclose()
        late = replica("late", url, namespace)
        async with late:
            assert not late.cache.is_healthy("d1")
            assert late.cache.is_held("held")
    assert a.internal_errors == {}
    assert b.internal_errors == {}
    with capsys.disabled():
        print(f"\ncluster failover (s): promoted {failed_over:.2f} after the kill, "
              f"an opening made meanwhile shared {shared_again:.2f} after it")  # fmt: skip


@pytest.mark.asyncio
async def test_a_manual_failover_in_the_middle_of_a_paged_read_loses_no_record(
    cluster: RedisCluster, namespace: str
) -> None:
    """``CLUSTER FAILOVER`` between two pages: redis-py follows MOVED to the new primary
    with a ZSCAN cursor that means nothing there; the read returned 17,462 of 20,000
    records, silently. It starts over on the new server and returns every one."""
    count = 20_000
    keys = SharedKeys(namespace)
    url = cluster.nodes[0].url
    await plant_open_records(url, namespace, count)
    client = await open_client(url)
    seen: set[str] = set()
    pages = 0
    try:
        async for page in scan_pages(client, keys):
            pages += 1
            seen.update(record.deployment for record in map(read_record, page))
            if pages == 3:
                holder = cluster.primary_of(keys.index)
                standby = next(
                    n for n in cluster.nodes
                    if n.process is not None and n is not holder
                    and f"master_port:{holder.port}" in cluster.command(n, "INFO", "replication")
                )  # fmt: skip
                assert cluster.command(standby, "CLUSTER", "FAILOVER").strip() == "OK"
                started = time.monotonic()
                while "role:master" not in cluster.command(standby, "INFO", "replication"):
                    assert time.monotonic() - started < FAILOVER_SEC, "no failover"
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(cluster.wait_ok)
    finally:
        await close_client(client, cluster_nodes(client))
    assert cluster.primary_of(keys.index) is not holder  # it did fail over mid-read
    assert len(seen) == count
