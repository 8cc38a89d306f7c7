"""The shared record format: Redis key names and one deployment's breaker as Redis holds it.

Pure: no Redis client, no breaker, so ``status`` reads records with this module
alone. Records are ``{namespace}:breaker:ID`` hashes (the braces are Redis Cluster's
hash tag: one slot per namespace), listed in an index sorted
set scored by expiry; the scripts in :mod:`._redis_scripts` hand them out as JSON.
A record this version cannot read is a :class:`BadRecord`: skipped and counted by the
adapter, shown as a row by ``status``, never an error for the others.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from ._config import DEFAULT_NAMESPACE
from ._state import BreakerState

__all__ = ["BadRecord", "SharedKeys", "SharedRecord", "parse_record", "read_record"]


@dataclass(frozen=True, slots=True)
class SharedKeys:
    """Every Redis name the adapter uses, under one namespace.

    Every key starts with the namespace as a hash tag (``{namespace}:...``), so on
    Redis Cluster (and managed clusters, Valkey) they all live in one hash slot and
    each script may touch the index and the records together. The pub/sub channel is
    no key (cluster pub/sub reaches every node) and keeps its plain name.
    """

    namespace: str = DEFAULT_NAMESPACE

    @property
    def tag(self) -> str:
        """The hash tag every key starts with."""
        return "{" + self.namespace + "}"

    @property
    def index(self) -> str:
        """Sorted set of live record ids, scored by expiry."""
        return f"{self.tag}:breakers"

    @property
    def channel(self) -> str:
        """Pub/sub channel carrying every written record."""
        return f"{self.namespace}:transitions"

    @property
    def record_prefix(self) -> str:
        return f"{self.tag}:breaker:"

    def record(self, deployment: str) -> str:
        """The hash holding one deployment's shared breaker."""
        return self.record_prefix + deployment

    def probe_lease(self, probe_key: str) -> str:
        """The lease naming the replica that probes one endpoint (hashed: no URL in Redis)."""
        return f"{self.tag}:probe:{hashlib.sha256(probe_key.encode()).hexdigest()[:20]}"


@dataclass(frozen=True, slots=True)
class SharedRecord:
    """One deployment's breaker as Redis holds it; safe to print."""

    deployment: str
    model_group: str | None
    state: BreakerState
    retry_in: float
    """Seconds until a trial is allowed: 0 unless open, ``math.inf`` while held open."""
    consecutive_failures: int
    last_error: str | None
    replica: str
    """The replica that made the last change."""
    owner: str
    """The process token of that change's writer (tells a replica its own echo)."""
    version: int
    changed_ago: float
    """Seconds since that change, by Redis's clock."""
    model: str | None = None
    """The deployment's ``litellm_params.model``, when the writer knew it (records of
    earlier versions have none)."""
    host: str | None = None
    """``host[:port]`` it is served from, when the writer knew it."""

    @classmethod
    def from_json(cls, raw: str | bytes) -> SharedRecord:
        """Parse a record written by the transition script (ValueError if it is not one)."""
        data = json.loads(raw, parse_constant=_no_constant)
        now = _integer("now", data["now"], 0, MAX_MS)
        latest = min(MAX_MS, now + 2 * YEAR_MS)  # a time more than two years ahead is damage
        until = _integer("open_until", data["open_until"], -1, latest)
        if -1 < until < 0:
            raise ValueError(f"open_until {until!r} is neither -1 (held) nor a time")
        state = BreakerState(data["state"])
        if state is not BreakerState.OPEN:
            retry_in = 0.0
        elif until < 0:
            retry_in = math.inf
        else:
            retry_in = max(0.0, (until - now) / 1000)
            if retry_in == 0.0:
                state = BreakerState.HALF_OPEN  # the window ran out: what every replica sees
        return cls(
            deployment=str(data["id"]),
            model_group=str(data["group"]) or None,
            state=state,
            retry_in=retry_in,
            consecutive_failures=int(_integer("failures", data["failures"], 0, MAX_FAILURES)),
            last_error=str(data["reason"]) or None,
            replica=str(data["replica"]),
            owner=str(data.get("owner", "")),
            version=int(_integer("version", data["version"], 0, latest)),
            changed_ago=max(0.0, (now - _integer("changed", data["changed"], 0, latest)) / 1000),
            model=str(data.get("model") or "") or None,
            host=str(data.get("host") or "") or None,
        )


@dataclass(frozen=True, slots=True)
class BadRecord:
    """Something under the namespace this version cannot read, and why; safe to print."""

    deployment: str
    """The id it is filed under (the key name when even that is unknown)."""
    problem: str


PROBLEM_CHARS = 200
MAX_MS = 1e14
"""Versions and times (milliseconds of Redis's clock) stay below it: past it ``cjson``
rounds them (14 significant digits), so a version plus one would be the same version."""
YEAR_MS = 365 * 86_400_000
MAX_FAILURES = 1e9


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a record may hold")


def _integer(field: str, value: object, low: float, high: float) -> float:
    """``value`` if it is a whole number in ``[low, high)``: the ranges the scripts keep."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{field} {str(value)[:40]!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.nan
    if not (math.isfinite(number) and number.is_integer() and low <= number < high):
        raise ValueError(f"{field} {str(value)[:40]!r} is no whole number in its range")
    return number


def read_record(raw: object) -> SharedRecord | BadRecord:
    """A record, or what is wrong with it (another version, a stray message, a damaged key)."""
    if not isinstance(raw, str | bytes):
        return BadRecord("?", f"not a string: {type(raw).__name__}")
    try:
        return SharedRecord.from_json(raw)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
        deployment = "?"
        try:
            data = json.loads(raw, parse_constant=_no_constant)
        except ValueError:
            data = None
        if isinstance(data, dict):
            deployment = str(data.get("id") or "?")
            if data.get("bad"):  # the scripts' own verdict: "WRONGTYPE ...", "field ..."
                problem = str(data.get("problem") or "unreadable")
        return BadRecord(deployment, problem[:PROBLEM_CHARS])


def parse_record(raw: object) -> SharedRecord | None:
    """A record, or None when it is not one of ours (another version, a stray message)."""
    record = read_record(raw)
    return record if isinstance(record, SharedRecord) else None
