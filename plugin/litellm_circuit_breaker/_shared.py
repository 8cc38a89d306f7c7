"""Breaker state shared by every process pointing at one Redis: the Redis adapter.

Requests never wait for Redis: every decision reads the local cache. This
adapter is a cache listener plus one background task per process:

* a local transition marks its deployment dirty; the writer pushes the local
  state through one Lua script that applies it atomically (an opening wins over
  a shorter window; a close or half-open based on a stale version loses to a
  newer opening) and publishes the record it kept;
* a subscriber adopts what other replicas publish, within milliseconds;
* a reconcile every ``reconcile_sec``, and after every reconnect, reads every
  shared record, so a lost message or a Redis restart heals by itself;
* probes are claimed per endpoint with a lease, so one replica probes each
  endpoint and the others learn its verdict through the transitions.

An operator's ``open``/``close`` from the shell (:func:`operate`) goes through the
same transition script and channel, so replicas follow it as they follow each other.

Redis down: the task logs one warning, retries with back-off, and when Redis
answers again pushes what changed here and adopts what changed elsewhere.

Records (``{namespace}:breaker:{id}`` hashes) and probe leases carry TTLs; an
index sorted set lists live records for ``status`` and reconciles. Times in
records are Redis's own clock (``TIME``), so replicas' clocks may disagree.
The record format is in :mod:`._records`, the scripts in :mod:`._redis_scripts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._cache import PROBE_PASSED, ProviderHealthCache
from ._config import (
    DEFAULT_NAMESPACE,
    DEFAULT_RECONCILE_SEC,
    DEFAULT_STATE_TTL_SEC,
    INSTALL_REDIS_HINT,
    MAX_WINDOW_SEC,
    check_namespace,
    check_url,
)
from ._records import BadRecord, SharedKeys, SharedRecord, parse_record, read_record
from ._redact import MAX_REASON_CHARS, public_url
from ._redis_scripts import CLAIM_LUA as _CLAIM_LUA
from ._redis_scripts import SNAPSHOT_LUA as _SNAPSHOT_LUA
from ._redis_scripts import TRANSITION_LUA as _TRANSITION_LUA
from ._state import BreakerState, StateChange
from ._tasks import raise_if_cancelled

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

    Client = Redis | RedisCluster

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_RECONCILE_SEC",
    "DEFAULT_STATE_TTL_SEC",
    "OPERATOR_HOLD_TTL_SEC",
    "BadRecord",
    "Operation",
    "RedisShare",
    "ShareCounters",
    "SharedKeys",
    "SharedRecord",
    "Snapshot",
    "UnknownDeploymentError",
    "UnreadableRecordError",
    "check_namespace",
    "check_url",
    "fetch_records",
    "fetch_snapshot",
    "operate",
    "parse_record",
]

CONNECT_TIMEOUT_SEC = 1.0
MIN_RECONNECT_SEC = 0.1
MAX_RECONNECT_SEC = 10.0
STABLE_SESSION_SEC = 1.0
"""Sessions that keep ending sooner than this after they came up back off as an outage
does (0.1, 0.2, 0.4 s...): a fault that strikes right after each connect (a refused
command, a killed connection) must not reconnect 10 times a second. One such session
after a stable one (a blip right after an outage) waits 0.1 s, as any new outage."""
SUBSCRIBE_CONFIRM_SEC = 2 * CONNECT_TIMEOUT_SEC
"""How long Redis has to confirm the channel subscription before the session fails."""
REARM_SHARE_SEC = 1.0
"""A window re-armed by less than this beyond the shared one is not shared again."""
RECONCILE_BATCH = 500
"""Records parsed and adopted between turns of the event loop in a reconcile."""
SCAN_PAGE = 1000
"""Index entries one snapshot script call looks at: a few milliseconds of Redis's time,
well inside the client's read timeout, at any namespace size."""
ADOPTED_TEXT_SCAN = 1000
"""How much of a reason or replica name read from Redis is looked at before it is cut to
one redacted line: ours are at most 200 characters, and redacting a megabyte would hold
the event loop up for most of a second."""

logger = logging.getLogger("litellm_circuit_breaker")

_INSTALL_HINT = INSTALL_REDIS_HINT


def _load_redis() -> Any:
    try:
        import redis.asyncio  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError:
        raise ImportError(f"sharing state through Redis needs redis-py: {_INSTALL_HINT}") from None
    return redis.asyncio


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError  # noqa: PLC0415 - optional extra

    return (RedisError, OSError, TimeoutError)


def _refusals() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ResponseError  # noqa: PLC0415 - optional extra

    return (ResponseError,)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """An error's message, one line and bounded, for a log line."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else ""


def connect(url: str, *, timeout: float = CONNECT_TIMEOUT_SEC) -> Redis:
    """An async client that fails fast: no hidden retries, short timeouts."""
    module = _load_redis()
    from redis.asyncio.retry import Retry  # noqa: PLC0415 - optional extra
    from redis.backoff import NoBackoff  # noqa: PLC0415

    client: Redis = module.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        # A record holding bytes that are no UTF-8 must not make the whole reply unreadable.
        encoding_errors="replace",
    )
    return client


def connect_cluster(url: str, *, timeout: float = CONNECT_TIMEOUT_SEC) -> RedisCluster:
    """A Redis Cluster client with the same habits: no hidden retries, short timeouts.

    After a failover its first command may meet the old topology and fail; the
    sharing task then starts over with a new client, which reads the new one.
    """
    module = _load_redis()
    from redis.asyncio.retry import Retry  # noqa: PLC0415 - optional extra
    from redis.backoff import NoBackoff  # noqa: PLC0415

    client: RedisCluster = module.RedisCluster.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        encoding_errors="replace",
    )
    return client


def connect_node(url: str, host: str, port: int, *, timeout: float = CONNECT_TIMEOUT_SEC) -> Redis:
    """A plain client to one node of the cluster ``url`` names, with its credentials."""
    module = _load_redis()
    from redis.asyncio.connection import parse_url  # noqa: PLC0415 - optional extra
    from redis.asyncio.retry import Retry  # noqa: PLC0415
    from redis.backoff import NoBackoff  # noqa: PLC0415

    settings = {**parse_url(url), "host": host, "port": port}
    pool = module.ConnectionPool(
        **settings,
        decode_responses=True,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        encoding_errors="replace",
    )
    client: Redis = module.Redis.from_pool(pool)  # the client owns (and closes) the pool
    return client


async def open_client(url: str, *, connect_timeout: float = CONNECT_TIMEOUT_SEC) -> Client:
    """A client for ``url``: a cluster client when the server is a Redis Cluster node.

    Nothing to configure: the node says so itself (``INFO cluster``). Every key of a
    namespace shares one hash slot (see :class:`SharedKeys`), so the scripts run
    unchanged on a cluster.
    """
    from redis.exceptions import ResponseError  # noqa: PLC0415 - optional extra

    client = connect(url, timeout=connect_timeout)
    try:
        info = await client.info("cluster")
    except ResponseError:  # INFO refused (an ACL): a single server, as far as we can tell
        info = {}
    except BaseException:
        with contextlib.suppress(Exception):
            await client.aclose()
        raise
    if not info.get("cluster_enabled"):
        return client
    with contextlib.suppress(Exception):
        await client.aclose()
    cluster = connect_cluster(url, timeout=connect_timeout)
    try:
        await cluster.initialize()
    except BaseException:
        await close_client(cluster, cluster_nodes(cluster))
        raise
    return cluster


async def close_client(client: Client, nodes: Iterable[Any] = ()) -> None:
    """Close a client; for a cluster, also every node it knew when opened.

    redis-py drops a failed node from the topology without closing its
    connections; ``nodes`` (from :func:`cluster_nodes`) closes those too.
    """
    for node in [*nodes, *cluster_nodes(client)]:
        with contextlib.suppress(Exception):
            await node.disconnect()
    with contextlib.suppress(Exception):
        await client.aclose()


def cluster_nodes(client: Client) -> list[Any]:
    """The nodes a cluster client knows now, its startup nodes too (none for a single server)."""
    if not isinstance(client, _load_redis().RedisCluster):
        return []
    startup = getattr(client.nodes_manager, "startup_nodes", {})
    return [*client.get_nodes(), *startup.values()]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every live shared record at one instant, and what could not be read beside them."""

    records: list[SharedRecord]
    """Sorted by group and id."""
    bad: list[BadRecord]
    """Sorted by id."""


async def fetch_snapshot(
    url: str,
    namespace: str = DEFAULT_NAMESPACE,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_SEC,
    page_timeout: float | None = None,
) -> Snapshot:
    """Every live shared record, and the unreadable ones (for ``status``).

    ``page_timeout`` bounds the connect and each page's read, not the whole read, which
    grows with the namespace (about 3 s at 100,000 records): Redis answering slowly is
    told apart from a big namespace. Raises ``TimeoutError`` past it."""
    keys = SharedKeys(namespace)
    async with asyncio.timeout(page_timeout):
        client = await open_client(url, connect_timeout=connect_timeout)
    nodes = cluster_nodes(client)
    records: dict[str, SharedRecord] = {}
    bad: dict[str, BadRecord] = {}
    try:
        async for page in scan_pages(client, keys, page_timeout=page_timeout):
            for item in map(read_record, page):
                if isinstance(item, BadRecord):
                    bad[item.deployment] = item
                else:  # a record met twice: the newer one
                    seen = records.get(item.deployment)
                    if seen is None or seen.version < item.version:
                        records[item.deployment] = item
    finally:
        await close_client(client, nodes)
    for deployment in records:
        bad.pop(deployment, None)  # readable on another page: it was rewritten meanwhile
    return Snapshot(
        sorted(records.values(), key=lambda r: (r.model_group or "", r.deployment)),
        sorted(bad.values(), key=lambda r: r.deployment),
    )


class ServerChangedError(OSError):
    """The server answering a paged read kept changing (failovers): read again later."""


SCAN_RESTARTS = 3
"""How many times a paged read starts over on a new server before it gives up."""


async def scan_pages(
    client: Client, keys: SharedKeys, *, page_timeout: float | None = None
) -> AsyncIterator[list[Any]]:
    """The namespace's live records as raw JSON, one snapshot script call (a page of
    :data:`SCAN_PAGE` index entries) at a time. As with ``ZSCAN``, a record present
    throughout comes at least once, perhaps more often.

    A ``ZSCAN`` cursor means something only to the server that made it: when another
    answers (a cluster failover between pages, which redis-py follows by itself), the
    read starts over from the first page there, rather than silently skipping records
    (a manual failover mid-read returned 17,462 of 20,000). Raises
    :class:`ServerChangedError` after :data:`SCAN_RESTARTS` such changes."""
    cursor, server, restarts = "0", None, 0
    while True:
        async with asyncio.timeout(page_timeout):  # None: the client's own read timeout
            raw = await client.eval(
                _SNAPSHOT_LUA, 1, keys.index, keys.record_prefix, cursor, SCAN_PAGE
            )
        raise_if_cancelled()
        answered = str(raw[1])
        yield list(raw[2:])  # records all, whatever the cursor meant where it landed
        if server is not None and answered != server:
            restarts += 1
            if restarts > SCAN_RESTARTS:
                raise ServerChangedError(f"the server changed {restarts} times during one read")
            cursor, server = "0", answered
            continue
        server, cursor = answered, str(raw[0])
        if cursor == "0":
            return


async def fetch_records(
    url: str, namespace: str = DEFAULT_NAMESPACE, *, connect_timeout: float = CONNECT_TIMEOUT_SEC
) -> list[SharedRecord]:
    """Every live shared record, sorted by group and id; unreadable ones are left out."""
    return (await fetch_snapshot(url, namespace, connect_timeout=connect_timeout)).records


OPERATOR_HOLD_TTL_SEC = MAX_WINDOW_SEC
"""How long a hold written by :func:`operate` lives in Redis: a year, standing for "until
closed". A replica's own hold may expire after ``redis_state_ttl_sec`` because that
replica writes it again; no process writes an operator's hold again, and one that
expired would be missed by every replica started afterwards."""


class UnreadableRecordError(Exception):
    """The deployment's record is one this version cannot read; the message says why."""


class UnknownDeploymentError(LookupError):
    """The namespace holds no record for this id (:func:`operate` without ``create``)."""

    def __init__(self, deployment: str, known: list[str]) -> None:
        super().__init__(deployment)
        self.deployment = deployment
        self.known = known
        """The ids the namespace does hold, sorted."""


@dataclass(frozen=True, slots=True)
class Operation:
    """What an operator's open or close did to one shared record."""

    record: SharedRecord
    """The record Redis holds now."""
    written: bool
    """False when the script kept what Redis had: the same state already, a longer
    opening or a hold in force, or (for a close) a change newer than the one read."""
    created: bool
    """No record existed for the id before."""
    followers: int | None
    """Processes subscribed to the namespace's channel when it was written: each
    sharing replica process (every proxy worker) is one, and each follows at once.
    None when Redis refused to count them (an ACL without ``PUBSUB``)."""


async def operate(
    url: str,
    namespace: str,
    deployment: str,
    state: BreakerState,
    *,
    replica: str,
    window_sec: float | None = None,
    reason: str = "",
    create: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT_SEC,
) -> Operation:
    """Open (``window_sec=None``: hold until closed) or close one deployment's shared
    breaker, for every replica following the namespace.

    The same transition script as a replica's own change, so the same rules hold: an
    opening never shortens a longer one or a hold; a close ends the opening read just
    before (a newer one, made meanwhile, wins). Replicas adopt the record as they adopt
    each other's: a hold as ``force_open()``, a timed opening as an opening of that
    window, a close as ``force_close()``. Raises :class:`UnknownDeploymentError` when
    the namespace holds no record for ``deployment`` and ``create`` is false,
    :class:`UnreadableRecordError` when its record cannot be read, and the Redis
    client's error when Redis fails.
    """
    if state not in (BreakerState.OPEN, BreakerState.CLOSED):
        raise ValueError(f"an operator opens or closes, not {state.value!r}")
    keys = SharedKeys(namespace)
    client = await open_client(url, connect_timeout=connect_timeout)
    nodes = cluster_nodes(client)
    try:
        before: SharedRecord | None = None
        listed = False
        known: set[str] = set()
        async for page in scan_pages(client, keys):
            for item in map(read_record, page):
                known.add(item.deployment)
                if item.deployment == deployment:
                    listed = True
                    if isinstance(item, SharedRecord) and (
                        before is None or before.version < item.version
                    ):
                        before = item
        if not listed and not create:
            raise UnknownDeploymentError(deployment, sorted(known - {"?"}))
        if state is BreakerState.CLOSED:
            window, ttl = 0, DEFAULT_STATE_TTL_SEC
        elif window_sec is None:
            window, ttl = -1, OPERATOR_HOLD_TTL_SEC
        else:
            window, ttl = int(min(window_sec, MAX_WINDOW_SEC) * 1000), DEFAULT_STATE_TTL_SEC
        opening = state is BreakerState.OPEN
        written, out, _ = await client.eval(
            _TRANSITION_LUA,
            2,
            keys.record(deployment),
            keys.index,
            deployment,
            state.value,
            window,
            before.consecutive_failures if before is not None and opening else 0,
            reason if opening else "",
            replica,
            before.version if before is not None else 0,  # a close ends what was read
            int(ttl * 1000),
            keys.channel,
            (before.model_group if before is not None else None) or "",
            secrets.token_hex(8),
            (before.model if before is not None else None) or "",
            (before.host if before is not None else None) or "",
        )
        followers: int | None
        try:
            followers = await _subscribers(client, url, keys)
        except _refusals():
            # The change is made: a user without PUBSUB rights must not be told it failed.
            followers = None
    finally:
        await close_client(client, nodes)
    record = read_record(out)
    if isinstance(record, BadRecord):
        raise UnreadableRecordError(f"the record of {deployment!r} is unreadable: {record.problem}")
    return Operation(record, bool(written), not listed, followers)


async def _subscribers(client: Client, url: str, keys: SharedKeys) -> int:
    """Processes subscribed to the namespace's channel. On a cluster, counted on the
    primary serving the namespace's slot, where every replica subscribes (see
    ``RedisShare._session``): redis-py would ask one node of its choosing."""
    if not isinstance(client, _load_redis().RedisCluster):
        counts = await client.pubsub_numsub(keys.channel)
    else:
        node = client.get_node_from_key(keys.index)
        listener = connect_node(url, node.host, node.port)
        try:
            counts = await listener.pubsub_numsub(keys.channel)
        finally:
            await close_client(listener)
    return sum(int(n) for _, n in counts)


@dataclass(slots=True)
class ShareCounters:
    """What one :class:`RedisShare` did since it was built: plain counts, read at any time.

    Written only by the adapter's tasks, on its event loop; read from anywhere.
    """

    pushed: int = 0
    """Local changes written to Redis."""
    adopted: int = 0
    """Records from other replicas taken into the local cache."""
    errors: int = 0
    """Redis operations that failed (connects included); the first of each outage is logged."""
    bad_records: int = 0
    """Records or messages that were not ours to parse; skipped, the first one logged."""
    unpublished: int = 0
    """Changes written whose message Redis refused to publish (an ACL without PUBLISH or
    the channel): other replicas take them at their reconciles; the first one logged."""


class RedisShare:
    """Shares one cache's transitions with every replica on the same Redis.

    Register it as a listener (done here) and run :meth:`run` in a task owned
    by the breaker. ``group_of`` names a deployment's model group and
    ``model_of`` its model and host ("" when unknown) for the shared record;
    ``redact`` cleans error lines before they leave the process; ``sleep`` is
    injectable for the reconnect back-off; ``admit`` says whether another replica's
    breaker may be adopted here (a record it refuses is skipped, and tried again at the
    next reconcile).

    Consistency: Redis is the arbiter. Pushes and adoptions run one at a time
    (one lock per run), and an adoption only lands if the breaker did not
    change here since this replica last synced it (``cache.generation``);
    otherwise the local change is pushed, and the script's answer settles it.

    Memory: one small entry per deployment it has shared or adopted, dropped by
    the reconcile once neither the cache nor Redis holds that deployment.
    """

    def __init__(
        self,
        cache: ProviderHealthCache,
        *,
        url: str,
        replica: str,
        namespace: str = DEFAULT_NAMESPACE,
        state_ttl_sec: float = DEFAULT_STATE_TTL_SEC,
        reconcile_sec: float = DEFAULT_RECONCILE_SEC,
        group_of: Callable[[str], str | None] = lambda _id: None,
        model_of: Callable[[str], tuple[str, str]] = lambda _id: ("", ""),
        redact: Callable[[str | None], str] = lambda text: text or "",
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        admit: Callable[[str], bool] = lambda _id: True,
    ) -> None:
        self._url = check_url(url)
        self.display_url = public_url(self._url)
        check_namespace(namespace)
        self._cache = cache
        self.replica = replica
        """This process's name in records and ``status`` (several may share it)."""
        self.token = secrets.token_hex(8)
        """Who wrote a record, for echoes and probe leases: unique per instance."""
        self.keys = SharedKeys(namespace)
        self._ttl_ms = int(min(state_ttl_sec, MAX_WINDOW_SEC) * 1000)
        self._reconcile_sec = reconcile_sec
        self._group_of = group_of
        self._model_of = model_of
        self._redact = redact
        self._sleep = sleep
        self._admit = admit
        self._lock = threading.Lock()
        """Guards ``_entries``, ``_pending`` and the ``dirty``/``local`` flags (the listener
        runs on any thread); an entry's other fields are only touched by the run's tasks."""
        self._entries: dict[str, _Entry] = {}
        self._pending: list[str] = []
        """The ids whose entry is dirty, in the order they became so: the writer takes
        them without walking every entry."""
        self._run: _Run | None = None
        self._client: Client | None = None
        self._down = False
        self._bad_logged = False
        self._follow_refusal_logged = False
        self._publish_refusal_logged = False
        self._following = False
        self._up_since: float | None = None
        """When the current session came up (monotonic), None while down."""
        self.counters = ShareCounters()
        """What this adapter did since it was built."""
        cache.add_listener(self)

    # -- the listener (any thread) ------------------------------------------

    def __call__(self, event: StateChange) -> None:
        """Mark a local change for the writer; never blocks, never does I/O."""
        if event.replica is not None:
            return  # adopted from another replica: it is in Redis already
        if event.new is BreakerState.HALF_OPEN and event.reason != PROBE_PASSED:
            return  # time passing: every replica sees that on its own
        with self._lock:
            self._mark_dirty(event.deployment).local = True
        self._poke()

    def _entry(self, deployment: str) -> _Entry:
        """The deployment's entry, made on first need; the caller holds ``_lock``."""
        entry = self._entries.get(deployment)
        if entry is None:
            entry = self._entries[deployment] = _Entry()
        return entry

    def _mark_dirty(self, deployment: str) -> _Entry:
        """Queue the deployment for the writer; the caller holds ``_lock``."""
        entry = self._entry(deployment)
        if not entry.dirty:
            entry.dirty = True
            self._pending.append(deployment)
        return entry

    def _poke(self) -> None:
        run = self._run
        if run is None:
            return  # not running yet: the first sync pushes it
        with contextlib.suppress(RuntimeError):  # that loop closed under us
            run.loop.call_soon_threadsafe(run.wake.set)

    @property
    def connected(self) -> bool:
        """True while Redis answers."""
        return self._client is not None

    @property
    def following(self) -> bool:
        """True while subscribed to the namespace's channel: other replicas' changes
        arrive within milliseconds. Connected but not following (the Redis user may
        not use the channel): they arrive at each reconcile."""
        return self._client is not None and self._following

    @property
    def tracked(self) -> frozenset[str]:
        """The deployments this adapter keeps an entry for; each reconcile drops those
        that neither the cache nor Redis holds any more."""
        with self._lock:
            return frozenset(self._entries)

    @property
    def errors(self) -> int:
        """``counters.errors``: Redis operations that failed."""
        return self.counters.errors

    @property
    def bad_records(self) -> int:
        """``counters.bad_records``: records that were not ours to parse."""
        return self.counters.bad_records

    @property
    def pushed(self) -> int:
        """``counters.pushed``: local changes written to Redis."""
        return self.counters.pushed

    @property
    def adopted(self) -> int:
        """``counters.adopted``: records from other replicas taken into the cache."""
        return self.counters.adopted

    # -- the background task ------------------------------------------------

    def arm(self) -> None:
        """Bind a new run to the running loop; the owner calls it before :meth:`run`."""
        run = _Run(asyncio.get_running_loop())
        run.wake.set()  # whatever changed before the loop ran gets pushed
        self._run = run

    async def run(self) -> None:
        """Connect, sync, follow; on any error log once per outage, back off, start over."""
        run = self._run
        if run is None or run.loop is not asyncio.get_running_loop():
            self.arm()
            run = self._run
        assert run is not None  # noqa: S101 - arm() set it
        delay = MIN_RECONNECT_SEC
        quick = 0  # sessions since the last stable one that died within a second
        try:
            while True:
                client: Client | None = None
                nodes: list[Any] = []
                try:
                    client = await open_client(self._url)
                    raise_if_cancelled()
                    nodes = cluster_nodes(client)
                    await self._session(client, run)
                except Exception as exc:  # noqa: BLE001 - nothing may end sharing for good
                    self._went_down(exc)
                finally:
                    up, self._up_since = self._up_since, None
                    if up is not None:  # it came up: a new outage starts its back-off over...
                        quick = 0 if time.monotonic() - up >= STABLE_SESSION_SEC else quick + 1
                        # ...unless sessions keep dying at once: then it goes on growing.
                        delay = min(MIN_RECONNECT_SEC * 2 ** min(max(quick - 1, 0), 10),
                                    MAX_RECONNECT_SEC)  # fmt: skip
                    self._client = None
                    self._following = False
                    if client is not None:
                        await close_client(client, nodes)
                run.synced.set()  # whoever waits for the first sync stops waiting
                raise_if_cancelled()
                await self._sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_SEC)
        finally:
            if self._run is run:
                self._run = None

    async def wait_synced(self) -> None:
        """Wait until the first sync with Redis succeeded or failed (bound it yourself)."""
        run = self._run
        if run is not None:
            await run.synced.wait()

    async def _session(self, client: Client, run: _Run) -> None:
        listener: Redis | None = None
        if isinstance(client, _load_redis().RedisCluster):
            # A client of our own on the primary serving the namespace's slot (cluster
            # pub/sub reaches every node): when it fails over, the subscription breaks
            # and the session starts over on the new topology.
            node = client.get_node_from_key(self.keys.index)
            listener = connect_node(self._url, node.host, node.port)
            pubsub: Any = listener.pubsub()
        else:
            pubsub = client.pubsub()
        tasks: list[asyncio.Task[None]] = []
        try:
            following = await self._subscribe(client if listener is None else listener, pubsub)
            if not following:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            async with run.io:
                await self._reconcile(client, after_connect=True)
            self._client = client
            self._following = following
            self._up_since = time.monotonic()
            if self._down:
                self._down = False
                logger.info(
                    "circuit breaker: Redis at %s answers again and takes writes; state reconciled",
                    self.display_url,
                )
            run.synced.set()
            raise_if_cancelled()
            tasks = [
                asyncio.create_task(self._write(client, run), name="circuit-breaker-redis-write"),
                asyncio.create_task(
                    self._every_while(client, run), name="circuit-breaker-redis-reconcile"
                ),
            ]
            if following:
                tasks.append(
                    asyncio.create_task(
                        self._follow(pubsub, run), name="circuit-breaker-redis-follow"
                    )
                )
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            # Wait for every one, even when we are being cancelled ourselves.
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            if listener is not None:
                await close_client(listener)

    async def _subscribe(self, client: Client, pubsub: Any) -> bool:
        """Subscribe to the namespace's channel and wait until Redis confirms it.

        False when Redis will not take the subscription while it answers the rest: an
        ACL without rights on the channel (Redis 7's default for a new user), SUBSCRIBE
        renamed away, a proxy without pub/sub that refuses it or never answers it. The
        session goes on without it, adopting other replicas' changes at each reconcile,
        and says so once. Before the confirmation was awaited, the refusal ended each
        session right after its first reconcile: 8 reconnects a second, for good.
        """
        from redis.exceptions import ResponseError  # noqa: PLC0415 - optional extra

        try:
            await pubsub.subscribe(self.keys.channel)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SUBSCRIBE_CONFIRM_SEC
            while (left := deadline - loop.time()) > 0:
                message = await pubsub.get_message(timeout=left)
                raise_if_cancelled()
                if message is not None and message.get("type") == "subscribe":
                    return True
        except ResponseError as exc:
            self._cannot_follow(type(exc).__name__, _first_line(exc))
            return False
        # No confirmation: a Redis that does not answer at all is an outage (this
        # raises); one that answers the rest serves without the channel.
        await client.ping()
        self._cannot_follow("TimeoutError", f"no confirmation in {SUBSCRIBE_CONFIRM_SEC:g}s")
        return False

    def _cannot_follow(self, kind: str, detail: str) -> None:
        self.counters.errors += 1
        if self._follow_refusal_logged:
            return
        self._follow_refusal_logged = True
        logger.warning(
            "circuit breaker: Redis at %s did not take the subscription to channel %s "
            "(%s: %s); sharing goes on without it: other replicas' changes arrive at each "
            "reconcile (every %gs), not within milliseconds. If an ACL refused it, grant "
            "the channel (ACL SETUSER <user> &%s) and restart (logged once)",
            self.display_url,
            self.keys.channel,
            kind,
            detail,
            self._reconcile_sec,
            self.keys.channel,
        )

    def _cannot_publish(self, problem: str) -> None:
        self.counters.unpublished += 1
        if self._publish_refusal_logged or not self._following:
            return  # not following: the refused subscription's warning said it already
        self._publish_refusal_logged = True
        logger.warning(
            "circuit breaker: Redis at %s took this replica's write but not its message on "
            "channel %s (%s); other replicas take this replica's changes at their next "
            "reconcile (every %gs), not within milliseconds. If an ACL refused it, allow "
            "PUBLISH and the channel (ACL SETUSER <user> +publish &%s) (logged once)",
            self.display_url,
            self.keys.channel,
            self._redact(problem)[:200],
            self._reconcile_sec,
            self.keys.channel,
        )

    def _went_down(self, exc: BaseException) -> None:
        self.counters.errors += 1
        if self._down:
            return
        self._down = True
        if isinstance(exc, _refusals()):
            # Redis answers but will not take our scripts or writes (maxmemory under
            # noeviction, an ACL without EVAL, a busy script): the same as an outage
            # for this replica, but said as it is, so nobody hunts a network fault.
            logger.warning(
                "circuit breaker: Redis at %s refused a command (%s: %s); deciding on "
                "local state, retrying with back-off until it takes writes again "
                "(logged once per outage)",
                self.display_url,
                type(exc).__name__,
                _first_line(exc),
            )
            return
        ours = not isinstance(exc, _redis_errors())
        logger.warning(
            "circuit breaker: Redis at %s unreachable (%s); deciding on local state, "
            "reconnecting with back-off (logged once per outage)",
            self.display_url,
            type(exc).__name__,
            exc_info=ours,  # not Redis's fault: our bug, show where
        )

    async def _follow(self, pubsub: Any, run: _Run) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            raise_if_cancelled()  # redis-py's read may have swallowed our stop
            if message is None or message.get("type") != "message":
                continue
            record = self._parse(message.get("data"))
            if record is not None:
                async with run.io:
                    self._take_one(record)

    async def _write(self, client: Client, run: _Run) -> None:
        while True:
            await run.wake.wait()
            run.wake.clear()
            async with run.io:
                await self._push_dirty(client)
            raise_if_cancelled()

    async def _every_while(self, client: Client, run: _Run) -> None:
        while True:
            await self._sleep(self._reconcile_sec)
            async with run.io:
                await self._reconcile(client)
            raise_if_cancelled()

    # -- Redis operations (one at a time: the caller holds the run's io lock) --

    def _parse(self, raw: object) -> SharedRecord | None:
        record = read_record(raw)
        if isinstance(record, BadRecord):
            self._count_bad(record.deployment, problem=record.problem)
            return None
        return record

    def _count_bad(self, deployment: str, *, problem: str = "", exc_info: bool = False) -> None:
        self.counters.bad_records += 1
        if self._bad_logged:
            return
        self._bad_logged = True
        logger.warning(
            "circuit breaker: skipped a record in Redis namespace %s that is not ours "
            "to read (another version?): %s %s; counted in bad_records, logged once",
            self.keys.namespace,
            deployment,
            self._redact(problem),
            exc_info=exc_info,  # our own failure to take it: show where
        )

    async def _push_dirty(self, client: Client) -> None:
        with self._lock:
            pending, self._pending = sorted(self._pending), []
            for deployment in pending:
                self._entries[deployment].dirty = False
        try:
            while pending:
                await self._push(client, pending[-1])
                pending.pop()
        finally:
            if pending:  # Redis failed mid-way: keep the rest for the next session
                with self._lock:
                    for deployment in pending:
                        self._mark_dirty(deployment)

    async def _push(self, client: Client, deployment: str) -> None:
        # One locked reading: a later change bumps the generation and re-dirties it.
        view = self._cache.view(deployment)
        if view is None:
            return  # forgotten meanwhile
        state, generation = view.state, view.generation
        window = 0
        if state is BreakerState.OPEN:
            left = view.retry_in
            # Bounded whatever the cache holds: a window past this would not fit PEXPIRE.
            window = -1 if view.held or math.isinf(left) else int(min(left, MAX_WINDOW_SEC) * 1000)
        ends = time.monotonic() + window / 1000 if window > 0 else None
        with self._lock:
            entry = self._entry(deployment)
            refill, entry.refill = entry.refill, False
        # A record Redis lost, unchanged here since: written back with the version it had.
        unchanged = refill and state is BreakerState.OPEN and generation == entry.synced_generation
        refill_version = entry.seen_version if unchanged else 0
        shared = entry.shared_until
        if ends is not None and shared is not None and ends - shared < REARM_SHARE_SEC:
            # Failures while open re-arm the window on every call; sharing each
            # would cost a round trip and a message per failure per replica.
            entry.synced_generation = generation
            return
        base = entry.seen_version
        keys = self.keys
        written, raw, refused = await client.eval(
            _TRANSITION_LUA,
            2,
            keys.record(deployment),
            keys.index,
            deployment,
            state.value,
            window,
            view.consecutive_failures,
            self._redact(view.last_error),
            self.replica,
            base,
            self._ttl_ms,
            keys.channel,
            self._group_of(deployment) or "",
            self.token,
            *self._model_of(deployment),
            refill_version,
        )
        if refused:
            self._cannot_publish(str(refused))
        record = self._parse(raw)
        if record is None:
            return
        if (record.state is BreakerState.OPEN and not written) or record.state is not state:
            # Another replica's state won in Redis: it is the truth, unless this
            # breaker changed again meanwhile (then that change goes out next).
            self._adopt(record, since=generation)
            return
        self.counters.pushed += int(written)
        entry.seen_version = max(base, record.version)
        entry.synced_generation = generation
        _remember_window(entry, record)

    async def _reconcile(self, client: Client, *, after_connect: bool = False) -> None:
        """Push what changed here, adopt what is newer in Redis, re-share what Redis lost."""
        await self._push_dirty(client)
        shared: set[str] = set()
        blind = False
        async for page in scan_pages(client, self.keys):
            for start in range(0, len(page), RECONCILE_BATCH):
                if start:
                    # Give the loop a turn between batches: at 10,000 records parsing
                    # them in one go held requests up for about 100 ms every reconcile.
                    # A record changed meanwhile arrives with a newer version, which
                    # wins as always (and one met twice is seen the second time).
                    await asyncio.sleep(0)
                for item in map(read_record, page[start : start + RECONCILE_BATCH]):
                    if isinstance(item, BadRecord):
                        self._count_bad(item.deployment, problem=item.problem)
                        blind = blind or item.deployment == self.keys.index
                    else:
                        shared.add(item.deployment)
                        self._take_one(item)
        if blind:
            # The index cannot be read (a key of another type): what Redis holds is
            # unknown, not empty. Writing back every opening at every reconcile would
            # only be refused again (500 openings: 2,127 writes in 5 s).
            return
        # Openings Redis does not hold (it restarted empty, a hold outlived its TTL,
        # we opened while it was down) are shared again: those made here, and those
        # adopted from others (an operator's hold, another replica's opening), so a
        # replica started later has them from its first sync.
        absent = self._cache.unhealthy_ids() - shared
        with self._lock:
            known = {d: e.local for d in absent if (e := self._entries.get(d)) is not None}
        # Not under our lock: the cache tells its listeners, this adapter among them.
        missing = [
            d
            for d, local in known.items()
            if self._cache.breaker_state(d) is BreakerState.OPEN or (local and after_connect)
        ]
        if missing:
            with self._lock:
                for deployment in missing:
                    entry = self._mark_dirty(deployment)
                    # Redis no longer holds the window we remember sharing: the
                    # re-arm de-duplication must not drop this write.
                    entry.shared_until = None
                    entry.refill = True
            await self._push_dirty(client)
        self._prune(shared)

    def _prune(self, shared: set[str]) -> None:
        """Drop the entries of deployments that neither the cache nor Redis holds any more.

        Not at ``forget``: while Redis still holds its record, the entry's version
        is what keeps that old record from being adopted back into the cache.
        """
        with self._lock:
            tracked = list(self._entries)
        gone = set(tracked) - shared
        if gone:
            gone.difference_update(self._cache.ids())
        if gone:
            with self._lock:
                for deployment in gone:
                    entry = self._entries.get(deployment)
                    if entry is not None and not entry.dirty:  # dirty: made again meanwhile
                        del self._entries[deployment]

    def _take_one(self, record: SharedRecord) -> None:
        """:meth:`_take`, where one record's failure is that record's alone."""
        try:
            self._take(record)
        except Exception:  # noqa: BLE001 - one record must never stop sharing for the rest
            self._count_bad(record.deployment, exc_info=True)

    def _take(self, record: SharedRecord) -> None:
        """Adopt a record from Redis if it is news to this replica."""
        with self._lock:
            known = record.deployment in self._entries
        if not known and record.owner != self.token and not self._admit(record.deployment):
            # No room (max_sdk_breakers): no entry either, or the adapter's own
            # bookkeeping would grow with the namespace past the bound.
            return
        with self._lock:
            entry = self._entry(record.deployment)
            pending = entry.dirty
        if record.owner == self.token:
            entry.seen_version = max(entry.seen_version, record.version)
            return  # our own write, echoed back
        if record.version <= entry.seen_version:
            return
        # With a change of ours pending, it goes out first and the script
        # settles it; what we have "seen" stays what our state is based on.
        if not pending:
            self._adopt(record, since=entry.synced_generation)
        else:
            entry.shared_until = None  # Redis moved on: the push must go out

    def _adopt(self, record: SharedRecord, *, since: int) -> None:
        """Apply a record unless the breaker changed here since ``since``; then it is seen."""
        if not self._admit(record.deployment):
            return  # no room here (max_sdk_breakers): not seen, so the next reconcile retries
        generation = self._cache.adopt(
            record.deployment,
            record.state,
            retry_in=record.retry_in,
            failures=record.consecutive_failures,
            # Any client of this Redis may have written them, and they are logged.
            reason=self._one_line(record.last_error) or None,
            replica=self._one_line(record.replica) or "?",
            unless_changed_since=since,
        )
        if generation is None:
            return  # changed here meanwhile: that change is on its way
        self.counters.adopted += 1
        with self._lock:
            entry = self._entry(record.deployment)
            entry.local = False
        entry.seen_version = max(entry.seen_version, record.version)
        entry.synced_generation = generation
        _remember_window(entry, record)

    def _one_line(self, text: str | None) -> str:
        """Text read from Redis as it may be logged: its first line, redacted, bounded."""
        lines = (text or "")[:ADOPTED_TEXT_SCAN].strip().splitlines()
        return self._redact(lines[0])[:MAX_REASON_CHARS] if lines else ""

    async def claim_probes(self, probe_keys: Iterable[str], lease_sec: float) -> set[str]:
        """The probe keys this replica should probe this round (all of them when Redis is down)."""
        wanted = list(probe_keys)
        client = self._client
        if client is None or not wanted:
            return set(wanted)
        try:
            held = await client.eval(
                _CLAIM_LUA,
                len(wanted),
                *(self.keys.probe_lease(k) for k in wanted),
                self.token,
                max(1, int(lease_sec * 1000)),
            )
        except _redis_errors():
            raise_if_cancelled()  # redis-py may have turned our stop into an error
            self.counters.errors += 1  # the follow task notices the outage and logs it
            return set(wanted)
        raise_if_cancelled()  # or swallowed it
        taken = set()
        for key, mine in zip(wanted, held, strict=True):
            if mine == 2:  # the script replaced a damaged lease (another type, no expiry)
                self._count_bad(self.keys.probe_lease(key), problem="no lease, replaced")
            if mine:
                taken.add(key)
        return taken


@dataclass(slots=True)
class _Entry:
    """What the adapter keeps of one deployment: made on first need, pruned once forgotten."""

    dirty: bool = False
    """A local change waits for the writer (its id is then in ``_pending``)."""
    local: bool = False
    """The last change was made here: shared again if Redis loses it."""
    seen_version: int = 0
    """The newest record version seen; this replica's state is based on it."""
    synced_generation: int = 0
    """The cache generation when this replica last synced the breaker with Redis."""
    shared_until: float | None = None
    """Where the timed opening Redis holds ends, on our monotonic clock."""
    refill: bool = False
    """Redis lost the record: the next push writes it back with ``seen_version`` if the
    breaker did not change here since (a close based on that version still ends it)."""


def _remember_window(entry: _Entry, record: SharedRecord) -> None:
    """Where the shared window ends, on our monotonic clock (None unless a timed opening)."""
    if record.state is BreakerState.OPEN and not math.isinf(record.retry_in):
        entry.shared_until = time.monotonic() + record.retry_in
    else:
        entry.shared_until = None


@dataclass
class _Run:
    """One run of the sharing task: its loop, its wake-up, its first sync, its io lock."""

    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    io: asyncio.Lock = field(default_factory=asyncio.Lock)
