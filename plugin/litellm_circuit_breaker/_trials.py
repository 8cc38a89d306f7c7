"""Trial completions: one tiny real call, so no user's call is spent as a trial.

A token-free probe that passes while a breaker is open says "maybe up"; the
trial that settles it used to be the next user's call. A deployment whose list
endpoint answers while its chat fails cannot be judged by that probe at all:
every such trial failed, and the healed deployment waited out the window.

So a passing probe only asks for a *ping* (``ProviderHealthCache.want_ping``):
:class:`TrialProber` sends one completion of one output token (the prompt
``"ping"``) to the deployment with the operator's own ``litellm_params``
(never anything from a request), through ``litellm.acompletion`` tagged as a
health check so the breaker's own hooks skip it. If it answers, the breaker
closes; if it fails, the probe is proven blind (``mark_ping_failed``: nothing
re-armed) and a ping goes every ``interval`` seconds while the breaker stays
open. When the window ends, one real call is the trial as always, so a ping can
neither hold a breaker open nor flap one. A deployment that refuses the ping
itself (a 4xx other than 401/403/408/429: a model that will not take
``max_tokens``, say) gets no more pings until its breaker closes (one WARNING)
and the probe's pass grants a real call as the trial instead. Cost: at most one
~10-token call per interval per open deployment whose probe passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ._counters import CounterName
from ._litellm_kwargs import HEALTH_CHECK_TAG, Deployment
from ._probe import describe_error

__all__ = ["TRIAL_MESSAGES", "TrialProber"]

logger = logging.getLogger("litellm_circuit_breaker")

TRIAL_MESSAGES = ({"role": "user", "content": "ping"},)
"""The whole prompt of a trial completion."""

# Router-level settings a deployment's litellm_params may hold that are no
# argument of one completion (LiteLLM's Router strips them the same way).
_NOT_CALL_ARGUMENTS = frozenset(
    {
        "rpm",
        "tpm",
        "order",
        "weight",
        "timeout",
        "stream_timeout",
        "max_retries",
        "num_retries",
        "max_parallel_requests",
        "tags",
        "model_info",
        "mock_response",
        "input_cost_per_token",
        "output_cost_per_token",
        "input_cost_per_second",
        "output_cost_per_second",
        "use_in_pass_through",
        # What one ping overrides: its own prompt, length, mode and tag.
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "n",
    }
)
# Answers that say "this call cannot be made here", not "the deployment is down".
_REFUSED_STATUSES = frozenset(range(400, 500)) - {401, 403, 408, 429}

Complete = Callable[..., Awaitable[object]]
Sleep = Callable[[float], Awaitable[object]]


class TrialProber:
    """Every ``interval`` seconds, one trial completion per open breaker that wants one.

    ``wanted()`` lists the breaker ids that want one now (open, not held, a
    probe passed or proved blind); ``deployment_of(id)`` gives the configured
    deployment (None: not configured, never called); ``on_pass(id)`` half-opens
    the breaker; ``on_fail(id, reason)`` records a failed ping; ``on_refused(id)``
    grants the real trial a refused ping stood in for;
    ``count(name)`` bumps a counter; ``on_error(kind, exc)`` reports an internal
    error; ``redact`` strips secrets from what is logged. ``complete`` defaults to
    ``litellm.acompletion``, looked up at each call.
    """

    def __init__(
        self,
        interval: float,
        timeout: float,
        *,
        wanted: Callable[[], list[str]],
        deployment_of: Callable[[str], Deployment | None],
        on_pass: Callable[[str], None],
        on_fail: Callable[[str, str], None],
        on_refused: Callable[[str], None],
        count: Callable[[CounterName], None],
        on_error: Callable[[str, BaseException], None],
        redact: Callable[[str], str],
        complete: Complete | None = None,
        sleep: Sleep = asyncio.sleep,
        concurrency: int = 16,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.sleep = sleep
        """The loop's pause; injected (tests replace it before the loop starts)."""
        self._wanted = wanted
        self._deployment_of = deployment_of
        self._on_pass = on_pass
        self._on_fail = on_fail
        self._on_refused = on_refused
        self._count = count
        self._on_error = on_error
        self._redact = redact
        self._complete = complete
        self._concurrency = concurrency
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        """At most this many pings in flight, like the probes."""
        self._refused: set[str] = set()
        """Deployments that refused a trial completion, until their breaker closes."""

    def can_ping(self, breaker_id: str) -> bool:
        """Whether a trial completion can be sent to this deployment (configured, not refused)."""
        deployment = self._deployment_of(breaker_id)
        return (
            deployment is not None
            and deployment.params is not None
            and breaker_id not in self._refused
        )

    def wake(self) -> None:
        """A ping is wanted now: the loop's next turn starts at once (event loop only)."""
        self._bind()
        self._wake.set()

    def _bind(self) -> None:
        """Fresh primitives for this event loop (``asyncio.run`` per call makes many)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._wake = asyncio.Event()
            self._slots = asyncio.Semaphore(self._concurrency)

    def forget_refusal(self, breaker_id: str) -> None:
        """Its breaker closed: the next outage may try trial completions again."""
        self._refused.discard(breaker_id)

    async def run(self) -> None:
        """Trial completions every ``interval`` seconds until cancelled."""
        while True:
            await self._pause()
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - the loop outlives its own bugs
                self._on_error("trial_probe", exc)

    async def _pause(self) -> None:
        """``sleep(interval)``, cut short by :meth:`wake`."""
        self._bind()
        pause = asyncio.ensure_future(self.sleep(self.interval))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            done, _ = await asyncio.wait((pause, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pause, woken):
                if not task.done():
                    task.cancel()
                    await asyncio.wait((task,))
            self._wake.clear()
        if pause in done:
            pause.result()  # the sleep's own error (or cancellation) ends the loop

    async def tick(self) -> dict[str, bool]:
        """One trial completion for each breaker that wants one; passed or not, by id."""
        self._bind()
        jobs: dict[str, Mapping[str, Any]] = {}
        for breaker_id in self._wanted():
            deployment = self._deployment_of(breaker_id)
            if deployment is None or deployment.params is None or breaker_id in self._refused:
                continue
            jobs[breaker_id] = deployment.params
        if not jobs:
            return {}
        results = await asyncio.gather(*(self._trial(i, p) for i, p in jobs.items()))
        return dict(zip(jobs, results, strict=True))

    async def _trial(self, breaker_id: str, params: Mapping[str, Any]) -> bool:
        self._count("trial_probes")
        complete = self._complete
        if complete is None:
            import litellm  # noqa: PLC0415 - only when a trial is due

            complete = litellm.acompletion
        # The deployment's own arguments (its key, or its litellm_credential_name,
        # which LiteLLM resolves), with this ping's own over them.
        arguments = {k: v for k, v in params.items() if k not in _NOT_CALL_ARGUMENTS}
        metadata = dict(arguments.pop("metadata", None) or {})
        metadata["tags"] = [*(metadata.get("tags") or []), HEALTH_CHECK_TAG]
        arguments.update(
            messages=[dict(m) for m in TRIAL_MESSAGES],
            max_tokens=1,
            stream=False,
            timeout=self.timeout,
            num_retries=0,
            metadata=metadata,
        )
        try:
            async with self._slots:
                await asyncio.wait_for(complete(**arguments), timeout=self.timeout + 1.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is only "not yet"
            if not hasattr(exc, "status_code") and not isinstance(exc, TimeoutError):
                # Not the provider's answer: ours, or LiteLLM refusing the arguments.
                self._on_error("trial_probe", exc)
            reason = self._redact(describe_error(exc))
            status = getattr(exc, "status_code", None)
            if status in _REFUSED_STATUSES:
                self._refused.add(breaker_id)
                known = self._deployment_of(breaker_id)
                logger.warning(
                    "deployment %s refused a trial completion (%s): no more until its "
                    "breaker closes; real calls are its trials",
                    f"{breaker_id} ({known.name})" if known is not None else breaker_id,
                    reason,
                )
                self._on_refused(breaker_id)  # what the probe's pass would have given
            else:
                self._on_fail(breaker_id, f"trial completion: {reason}")
            return False
        self._count("trial_probes_passed")
        self._on_pass(breaker_id)
        return True
