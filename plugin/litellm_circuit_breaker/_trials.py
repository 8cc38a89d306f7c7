"""Trial completions: when the free probe is blind to a fault, one tiny real call decides.

A deployment whose list endpoint answers while its chat fails cannot be judged
by the token-free probe: once a trial that probe granted has failed, the cache
ignores its passes (``ProviderHealthCache.mark_probe_passed``) and only the end
of each window admits a user's request as the next trial. Without more, the
healed deployment waits out the window (up to a minute) where LiteLLM alone,
retrying it on every request, would be back at once.

So while such a breaker is open, :class:`TrialProber` sends one completion of
one output token (the prompt ``"ping"``) to it every ``interval`` seconds, with
the operator's own ``litellm_params`` (never anything from a request), through
``litellm.acompletion`` tagged as a health check so the breaker's own hooks
skip it. If it answers, the breaker closes and traffic returns at once; if not,
nothing changes: the window ends as it would have, so a trial completion can
neither hold a breaker open nor flap one. A deployment that refuses the call
itself (a 4xx other than 401/403/408/429: a model that will not take
``max_tokens``, say) gets no more trial completions until its breaker closes
(one WARNING). Cost: at most one ~10-token call per interval per deployment,
and only while it is open with a blind probe.
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
        "litellm_credential_name",
    }
)
# Answers that say "this call cannot be made here", not "the deployment is down".
_REFUSED_STATUSES = frozenset(range(400, 500)) - {401, 403, 408, 429}

Complete = Callable[..., Awaitable[object]]
Sleep = Callable[[float], Awaitable[object]]


class TrialProber:
    """Every ``interval`` seconds, one trial completion per open breaker with a blind probe.

    ``wanted()`` lists the breaker ids that want one now (open, not held, probe
    proven blind); ``deployment_of(id)`` gives the configured deployment (None:
    not configured, never called); ``on_pass(id)`` closes the breaker;
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
        count: Callable[[CounterName], None],
        on_error: Callable[[str, BaseException], None],
        redact: Callable[[str], str],
        complete: Complete | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.sleep = sleep
        """The loop's pause; injected (tests replace it before the loop starts)."""
        self._wanted = wanted
        self._deployment_of = deployment_of
        self._on_pass = on_pass
        self._count = count
        self._on_error = on_error
        self._redact = redact
        self._complete = complete
        self._refused: set[str] = set()
        """Deployments that refused a trial completion, until their breaker closes."""

    def forget_refusal(self, breaker_id: str) -> None:
        """Its breaker closed: the next outage may try trial completions again."""
        self._refused.discard(breaker_id)

    async def run(self) -> None:
        """Trial completions every ``interval`` seconds until cancelled."""
        while True:
            await self.sleep(self.interval)
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - the loop outlives its own bugs
                self._on_error("trial_probe", exc)

    async def tick(self) -> dict[str, bool]:
        """One trial completion for each breaker that wants one; passed or not, by id."""
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
        arguments = {k: v for k, v in params.items() if k not in _NOT_CALL_ARGUMENTS}
        try:
            await asyncio.wait_for(
                complete(
                    **arguments,
                    messages=[dict(m) for m in TRIAL_MESSAGES],
                    max_tokens=1,
                    stream=False,
                    timeout=self.timeout,
                    num_retries=0,
                    metadata={"tags": [HEALTH_CHECK_TAG]},
                ),
                timeout=self.timeout + 1.0,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is only "not yet"
            status = getattr(exc, "status_code", None)
            if status in _REFUSED_STATUSES:
                self._refused.add(breaker_id)
                logger.warning(
                    "deployment %s refused a trial completion (%s): no more until its "
                    "breaker closes; the backoff window decides",
                    breaker_id,
                    self._redact(describe_error(exc)),
                )
            return False
        self._count("trial_probes_passed")
        self._on_pass(breaker_id)
        return True
