"""The breakers of direct SDK calls: one per endpoint and model a caller used, bounded.

Router deployments come from configuration and are few; direct SDK calls may
name any model at any ``api_base``, so their breakers are kept in a table of
at most ``max_sdk_breakers``. When a new one would pass the bound, the least
recently used breaker that no longer matters is forgotten: a closed one first,
else a half-open one whose trial is not out. An open breaker (its window still
running, or held by an operator) or one with a trial out is never evicted: if
every breaker matters, the new endpoint goes untracked (its calls pass as if
the plugin were absent) and is counted.

Breakers are made by evidence (a call's success or failure), so that is where
a use is noted; a call's check before it leaves only reads the cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ._cache import ProviderHealthCache
from ._config import DEFAULT_MAX_SDK_BREAKERS
from ._state import BreakerState

__all__ = ["DEFAULT_MAX_SDK_BREAKERS", "SdkBreakers"]

FULL_RETRY_SEC = 1.0
"""After a shared breaker found no room, others wait this long before the table is
searched again: a reconcile may bring thousands, and each search reads every breaker."""


class SdkBreakers:
    """Which SDK breakers exist, in order of last use, with their endpoints for display.

    ``on_evict(breaker_id)`` forgets an evicted breaker (``cache.forget``).
    Thread-safe: sync SDK calls report from LiteLLM's logging thread.
    """

    def __init__(
        self,
        cache: ProviderHealthCache,
        *,
        limit: int = DEFAULT_MAX_SDK_BREAKERS,
        on_evict: Callable[[str], object],
    ) -> None:
        self.limit = limit
        self._cache = cache
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, str | None] = OrderedDict()
        self.evicted = 0
        """Breakers forgotten to stay within the bound."""
        self.untracked = 0
        """Attempts whose result was not counted: no room, every tracked breaker mattered."""
        self._full_since: float | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, breaker_id: object) -> bool:
        with self._lock:
            return breaker_id in self._entries

    def endpoint(self, breaker_id: str) -> str | None:
        """The endpoint behind an SDK breaker id, without secrets; None if not tracked."""
        with self._lock:
            return self._entries.get(breaker_id)

    def admit(self, breaker_id: str, endpoint: str | None) -> bool:
        """Note a use of ``breaker_id``; False when it cannot be tracked (see the module)."""
        with self._lock:
            if breaker_id in self._entries:
                self._entries.move_to_end(breaker_id)
                if endpoint is not None:
                    self._entries[breaker_id] = endpoint  # adopted first, used here since
                return True
            if len(self._entries) < self.limit:
                self._entries[breaker_id] = endpoint
                return True
            candidates = list(self._entries)  # oldest first
        victim, passed = self._victim(candidates)
        with self._lock:
            # Those it had to pass (open, held, on trial) go to the back: the next search
            # does not walk them again. Else with many open at the front, each admission
            # walked them all (10,000 shared records, 10 % open: a first sync of 11 s).
            for skipped in passed:
                if skipped in self._entries:
                    self._entries.move_to_end(skipped)
            if victim is None or victim not in self._entries:
                if len(self._entries) < self.limit:  # room was made meanwhile
                    self._entries[breaker_id] = endpoint
                    return True
                self.untracked += 1
                return False
            del self._entries[victim]
            self._entries[breaker_id] = endpoint
            self.evicted += 1
        self._on_evict(victim)
        return True

    def admit_shared(self, breaker_id: str) -> bool:
        """Whether a breaker another replica shared (an id not configured here) may be
        adopted: within the bound, as a call's would be, never evicting an open one."""
        with self._lock:
            if breaker_id in self._entries:
                return True
            full = len(self._entries) >= self.limit
            recent = (
                self._full_since is not None
                and time.monotonic() - self._full_since < FULL_RETRY_SEC
            )
            if full and recent:
                self.untracked += 1
                return False
        if breaker_id in self._cache:
            return True  # made here by hand (force_open of any id): no SDK breaker of its own
        admitted = self.admit(breaker_id, None)
        with self._lock:
            self._full_since = None if admitted else time.monotonic()
        return admitted

    def _victim(self, oldest_first: list[str]) -> tuple[str | None, list[str]]:
        """The least recently used closed breaker, else a half-open one with no trial out;
        and the ids passed over before it (none of them can go)."""
        spare: str | None = None
        passed: list[str] = []
        for breaker_id in oldest_first:
            view = self._cache.view(breaker_id)
            if view is None or (view.state is BreakerState.CLOSED and not view.held):
                return breaker_id, passed
            if (
                spare is None
                and view.state is BreakerState.HALF_OPEN
                and view.retry_in <= 0
                and not view.held
            ):
                spare = breaker_id
            else:
                passed.append(breaker_id)
        return spare, passed

    def forget(self, breaker_id: str) -> None:
        """Stop tracking ``breaker_id`` (its breaker was forgotten by hand)."""
        with self._lock:
            self._entries.pop(breaker_id, None)
