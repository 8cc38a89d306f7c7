"""The attempt ledger: which report of an attempt counts, and which request holds a trial.

Pure and thread-safe: no LiteLLM, no I/O, one lock held for a few dict
operations. LiteLLM reports one attempt up to twice, inline (the deployment
hooks, once per attempt) and queued (the log events, best effort, possibly
late or repeated); the proxy even shares one call id across a request's
retries. The ledger answers "does this report count?" so that each attempt
counts once, preferring the inline report, and remembers the half-open trial
permit each deployment has handed out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TypeVar

__all__ = ["DEFAULT_MEMORY", "AttemptLedger"]

DEFAULT_MEMORY = 8192
"""Call ids remembered per kind of report: far more than are ever in flight at once."""

_K = TypeVar("_K")


class AttemptLedger:
    """Each attempt counts once; each deployment's trial permit has one holder."""

    def __init__(self, memory: int = DEFAULT_MEMORY) -> None:
        self._memory = memory
        self._lock = threading.Lock()
        # (call id, breaker id) reported by the inline hooks, and by the queued
        # log events: inline reports are never de-duplicated against each other.
        self._inline_seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._logged_seen: OrderedDict[tuple[str, str, bool], None] = OrderedDict()
        """(call id, breaker id, success) of the queued reports counted."""
        self._inline_ok: OrderedDict[str, str] = OrderedDict()
        """Call id -> breaker id of the attempts whose success the inline hook reported:
        a call succeeds once, so the queued success event for one of them is a copy."""
        self._trials: dict[str, str | None] = {}
        """Deployment id -> trace id of the request holding its half-open trial permit."""
        self._wrappers: OrderedDict[str, None] = OrderedDict()
        """Call ids of direct SDK calls made with ``fallbacks=``: the outer call, whose
        queued events (even copies of an inner attempt's failure) are never evidence."""

    def counts(
        self, call_id: str | None, breaker_id: str, *, inline: bool, success: bool = False
    ) -> bool:
        """Does this report of an attempt count?

        Inline reports always count. A queued report counts only for an attempt
        no inline hook reported the same way (streams, sync calls), and only once
        however many copies arrive: a queued success is matched against
        successes, a queued failure against failures, so a retry that shares its
        call id with a failed attempt (the proxy's) still has its success
        counted. Without a call id nothing can be matched: it counts.
        """
        if call_id is None:
            return True
        key = (call_id, breaker_id)
        with self._lock:
            if call_id in self._wrappers:
                return False
            if inline:
                if success:
                    self._remember_success(call_id, breaker_id)
                else:
                    self._remember(self._inline_seen, key)
                return True
            if success:
                reported = self._inline_ok.get(call_id) == breaker_id
            else:
                reported = key in self._inline_seen
            logged = (call_id, breaker_id, success)
            if reported or logged in self._logged_seen:
                return False
            self._remember(self._logged_seen, logged)
            return True

    def mark_wrapper(self, call_id: str | None) -> None:
        """``call_id`` is the outer call of an SDK ``fallbacks=`` loop: no report of it counts."""
        if call_id is not None:
            with self._lock:
                self._remember(self._wrappers, call_id)

    def succeeded_inline(self, call_id: object) -> bool:
        """True if the inline hook already reported this call's success (no lock: a hint)."""
        return isinstance(call_id, str) and call_id in self._inline_ok

    def reported_inline(self, call_id: str, breaker_id: str) -> bool:
        """True if an inline hook reported this attempt."""
        with self._lock:
            return self._seen_inline(call_id, breaker_id)

    def hold_trial(self, deployment_id: str, trace_id: str | None) -> None:
        """The request ``trace_id`` holds ``deployment_id``'s trial permit."""
        with self._lock:
            self._trials[deployment_id] = trace_id

    def end_trial(
        self, deployment_id: str, trace_id: str | None = None, *, any_trace: bool
    ) -> bool:
        """Forget the trial held on a deployment; True if one was held (by that trace)."""
        with self._lock:
            if deployment_id not in self._trials:
                return False
            holder = self._trials[deployment_id]
            if not any_trace and holder not in (None, trace_id):
                return False
            del self._trials[deployment_id]
            return True

    def _seen_inline(self, call_id: str, breaker_id: str) -> bool:
        return (call_id, breaker_id) in self._inline_seen or (
            self._inline_ok.get(call_id) == breaker_id
        )

    def _remember_success(self, call_id: str, breaker_id: str) -> None:
        # A call id succeeds once: no reordering needed, the newest is already last.
        self._inline_ok[call_id] = breaker_id
        if len(self._inline_ok) > self._memory:
            self._inline_ok.popitem(last=False)

    def _remember(self, seen: OrderedDict[_K, None], key: _K) -> None:
        seen[key] = None
        seen.move_to_end(key)
        if len(seen) > self._memory:
            seen.popitem(last=False)
