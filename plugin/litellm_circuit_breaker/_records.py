"""The shared record format: Redis key names and one deployment's breaker as Redis holds it.

Pure: no Redis client, no breaker, so ``status`` reads records with this module
alone. Records are ``{namespace}:breaker:{id}`` hashes, listed in an index sorted
set scored by expiry; the scripts in :mod:`._redis_scripts` hand them out as JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from ._config import DEFAULT_NAMESPACE
from ._state import BreakerState

__all__ = ["SharedKeys", "SharedRecord", "parse_record"]


@dataclass(frozen=True, slots=True)
class SharedKeys:
    """Every Redis name the adapter uses, under one namespace."""

    namespace: str = DEFAULT_NAMESPACE

    @property
    def index(self) -> str:
        """Sorted set of live record ids, scored by expiry."""
        return f"{self.namespace}:breakers"

    @property
    def channel(self) -> str:
        """Pub/sub channel carrying every written record."""
        return f"{self.namespace}:transitions"

    @property
    def record_prefix(self) -> str:
        return f"{self.namespace}:breaker:"

    def record(self, deployment: str) -> str:
        """The hash holding one deployment's shared breaker."""
        return self.record_prefix + deployment

    def probe_lease(self, probe_key: str) -> str:
        """The lease naming the replica that probes one endpoint (hashed: no URL in Redis)."""
        return f"{self.namespace}:probe:{hashlib.sha256(probe_key.encode()).hexdigest()[:20]}"


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

    @classmethod
    def from_json(cls, raw: str | bytes) -> SharedRecord:
        """Parse a record written by the transition script."""
        data = json.loads(raw)
        now, until = float(data["now"]), float(data["open_until"])
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
            consecutive_failures=int(data["failures"]),
            last_error=str(data["reason"]) or None,
            replica=str(data["replica"]),
            owner=str(data.get("owner", "")),
            version=int(data["version"]),
            changed_ago=max(0.0, (now - float(data["changed"])) / 1000),
        )


def parse_record(raw: object) -> SharedRecord | None:
    """A record, or None when it is not one of ours (another version, a stray message)."""
    if not isinstance(raw, str | bytes):
        return None
    try:
        return SharedRecord.from_json(raw)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
