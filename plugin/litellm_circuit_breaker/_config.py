"""The breaker's settings as one frozen, validated value.

:class:`BreakerConfig` is built once, checked once (every error names the
public setting and the bad value), and handed to the parts that need it: the
breakers, the probe loop, Redis sharing, the LiteLLM hooks. ``from_env()``
reads the ``CIRCUIT_BREAKER_*`` variables the proxy is configured with, and
reports an error under the variable's name. In the manner of resilience4j's
``CircuitBreakerConfig`` and httpx's ``_config.py`` objects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Self
from urllib.parse import quote

from ._errors import ConfigurationError
from ._redact import public_url

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_FIRST_TOKEN_TIMEOUT",
    "DEFAULT_MAX_BACKOFF_SEC",
    "DEFAULT_MAX_SDK_BREAKERS",
    "DEFAULT_NAMESPACE",
    "DEFAULT_PROBE_CONCURRENCY",
    "DEFAULT_PROBE_INTERVAL_SEC",
    "DEFAULT_PROBE_TIMEOUT_SEC",
    "DEFAULT_RECONCILE_SEC",
    "DEFAULT_STALL_AFTER_SEC",
    "DEFAULT_STATE_TTL_SEC",
    "DEFAULT_TRIAL_LEASE_SEC",
    "DEFAULT_TRIAL_PROBE_INTERVAL_SEC",
    "DEFAULT_UNHEALTHY_BACKOFF_SEC",
    "ENV_VARS",
    "INSTALL_REDIS_HINT",
    "MAX_BACKOFF_MULTIPLIER",
    "MAX_WINDOW_SEC",
    "REUSE_LITELLM_REDIS",
    "BreakerConfig",
    "WhenAllOpen",
    "check_namespace",
    "check_number",
    "check_url",
    "litellm_redis_url",
]

WhenAllOpen = Literal["fail_open", "fail_fast"]

DEFAULT_FAILURE_THRESHOLD = 2
DEFAULT_UNHEALTHY_BACKOFF_SEC = 60.0
DEFAULT_TRIAL_LEASE_SEC = 30.0
DEFAULT_MAX_BACKOFF_SEC = 3600.0
"""Where a growing window stops when no ``max_backoff_sec`` is given (or at the base
window, if that is longer)."""
MAX_WINDOW_SEC = 365 * 86_400.0
"""The longest window, TTL or timed hold any setting or ``force_open`` may ask for: a
year. Past it a value is a mistake, and in milliseconds it would soon no longer fit
what Redis's ``PEXPIRE`` takes from a script."""
MAX_BACKOFF_MULTIPLIER = 100.0
DEFAULT_PROBE_INTERVAL_SEC = 30.0
DEFAULT_PROBE_TIMEOUT_SEC = 3.0
# Measured (bench/probe_scale.py): at 64 in flight one event loop fell behind on
# 1,000 loopback endpoints and healthy endpoints missed the 3 s timeout (false
# evidence); at 16 none did, and the rounds were faster.
DEFAULT_PROBE_CONCURRENCY = 16
DEFAULT_STALL_AFTER_SEC = 0.5
# A trial completion (one output token) at most this often per open deployment
# whose free probe is blind: back within this long of a heal, ~10 tokens each.
DEFAULT_TRIAL_PROBE_INTERVAL_SEC = 5.0
# Off by default: the deadline is the attempt's read timeout, so it also ends a stream
# silent that long *between* chunks (a reasoning model thinking after its first chunk).
DEFAULT_FIRST_TOKEN_TIMEOUT: float | Literal["auto"] | None = None
MAX_FIRST_TOKEN_TIMEOUT_SEC = 3600.0
DEFAULT_NAMESPACE = "litellm_circuit_breaker"
DEFAULT_STATE_TTL_SEC = 86_400.0
DEFAULT_RECONCILE_SEC = 5.0
# Direct SDK calls may name any model at any api_base: their breakers are bounded.
DEFAULT_MAX_SDK_BREAKERS = 1000
INSTALL_REDIS_HINT = "pip install 'litellm-circuit-breaker[redis]'"


def check_number(
    field: str,
    value: object,
    *,
    minimum: float,
    inclusive: bool = True,
    maximum: float | None = None,
) -> float:
    """``value`` as a float if it is a finite number past ``minimum`` (and at most
    ``maximum``), else a named error."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        # An int past a float's range (10**400) is no number a setting may hold.
        number = float(value) if ok else math.nan  # type: ignore[arg-type]  # checked
    except OverflowError:
        number = math.nan
    ok = ok and math.isfinite(number)
    if ok:
        ok = number >= minimum if inclusive else number > minimum
        ok = ok and (maximum is None or number <= maximum)
    if not ok:
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        if maximum is not None:
            bound += f" and <= {maximum:.15g}"
        raise ConfigurationError(field, value, f"a finite number {bound}")
    return number


def check_url(url: object, field: str = "redis_url") -> str:
    """A Redis URL redis-py accepts; otherwise a ConfigurationError without its password."""
    try:
        shown = public_url(url) if isinstance(url, str) else url
    except ValueError:  # not even a URL (e.g. "http://[::1"): show none of it
        shown = "***"
    expected = "a redis://, rediss:// or unix:// URL"
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(field, shown, expected)
    try:
        from redis.asyncio.connection import parse_url  # noqa: PLC0415 - optional extra
    except ImportError:
        raise ConfigurationError(field, shown, f"the redis extra: {INSTALL_REDIS_HINT}") from None
    try:
        parse_url(url.strip())
    except ValueError:
        raise ConfigurationError(field, shown, expected) from None
    return url.strip()


NAMESPACE_EXPECTED = "a non-empty name, no spaces, no braces"


def check_namespace(namespace: object, field: str = "redis_namespace") -> str:
    """A key prefix: non-empty, no whitespace, no brace. The keys wrap it in braces, Redis
    Cluster's hash tag: a brace of its own would end the tag early (``}x``: an empty tag),
    and the keys of one namespace would land in several slots, where no script can reach
    them together."""
    if (
        not isinstance(namespace, str)
        or not namespace
        or any(c.isspace() or c in "{}" for c in namespace)
    ):
        raise ConfigurationError(field, namespace, NAMESPACE_EXPECTED)
    return namespace


def _check_count(field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(field, value, "an integer >= 1")
    return value


def _check_name(field: str, value: object, *, spaces: bool) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            field, value, "a non-empty name" + ("" if spaces else ", no spaces")
        )
    if not spaces and any(c.isspace() for c in value):
        raise ConfigurationError(field, value, "a non-empty name, no spaces")


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Every setting of a :class:`CircuitBreaker`, by its public name; checked at construction.

    ``probe_interval=None`` disables the probe loop (and with it hang
    detection and trial completions); ``stall_after_sec=None`` disables hang
    detection alone; ``trial_probe_interval=None`` trial completions alone;
    ``first_token_timeout=None`` first-token deadlines (``"auto"``: learned);
    ``redis_url=None`` keeps state local to the process.
    """

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    unhealthy_backoff_sec: float = DEFAULT_UNHEALTHY_BACKOFF_SEC
    probe_interval: float | None = DEFAULT_PROBE_INTERVAL_SEC
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT_SEC
    when_all_open: WhenAllOpen = "fail_open"
    probe_concurrency: int = DEFAULT_PROBE_CONCURRENCY
    probe_jitter: float = 0.0
    backoff_multiplier: float = 1.0
    max_backoff_sec: float | None = None
    trial_lease_sec: float = DEFAULT_TRIAL_LEASE_SEC
    learn_from_traffic: bool = True
    stall_after_sec: float | None = DEFAULT_STALL_AFTER_SEC
    trial_probe_interval: float | None = DEFAULT_TRIAL_PROBE_INTERVAL_SEC
    first_token_timeout: float | Literal["auto"] | None = DEFAULT_FIRST_TOKEN_TIMEOUT
    """Seconds a stream may wait for its first chunk; ``"auto"`` learns it per deployment."""
    slow_call_detection: bool = True
    """Open a breaker whose deployment became far slower than its own usual time."""
    redis_url: str | None = field(default=None, repr=False)
    """May carry a password: kept out of repr."""
    redis_namespace: str = DEFAULT_NAMESPACE
    replica_name: str | None = None
    redis_state_ttl_sec: float = DEFAULT_STATE_TTL_SEC
    redis_reconcile_sec: float = DEFAULT_RECONCILE_SEC
    max_sdk_breakers: int = DEFAULT_MAX_SDK_BREAKERS
    """Breakers kept for direct SDK calls (one per endpoint and model); closed ones go first."""

    def __post_init__(self) -> None:
        _check_count("failure_threshold", self.failure_threshold)
        backoff = check_number(
            "unhealthy_backoff_sec",
            self.unhealthy_backoff_sec,
            minimum=0.0,
            maximum=MAX_WINDOW_SEC,
        )
        if self.probe_interval is not None:
            check_number("probe_interval", self.probe_interval, minimum=0.0, inclusive=False)
        check_number("probe_timeout", self.probe_timeout, minimum=0.0, inclusive=False)
        if self.when_all_open not in ("fail_open", "fail_fast"):
            raise ConfigurationError(
                "when_all_open", self.when_all_open, "'fail_open' or 'fail_fast'"
            )
        _check_count("probe_concurrency", self.probe_concurrency)
        check_number("probe_jitter", self.probe_jitter, minimum=0.0)
        check_number(
            "backoff_multiplier",
            self.backoff_multiplier,
            minimum=1.0,
            maximum=MAX_BACKOFF_MULTIPLIER,
        )
        if self.max_backoff_sec is not None:
            check_number(
                "max_backoff_sec", self.max_backoff_sec, minimum=backoff, maximum=MAX_WINDOW_SEC
            )
        check_number("trial_lease_sec", self.trial_lease_sec, minimum=0.0, inclusive=False)
        if not isinstance(self.learn_from_traffic, bool):
            raise ConfigurationError("learn_from_traffic", self.learn_from_traffic, "True or False")
        if not isinstance(self.slow_call_detection, bool):
            raise ConfigurationError(
                "slow_call_detection", self.slow_call_detection, "True or False"
            )
        if self.stall_after_sec is not None:
            check_number("stall_after_sec", self.stall_after_sec, minimum=0.0, inclusive=False)
        if self.trial_probe_interval is not None:
            check_number(
                "trial_probe_interval", self.trial_probe_interval, minimum=0.0, inclusive=False
            )
        deadline: object = self.first_token_timeout  # any value may come in
        if deadline is not None and deadline != "auto":
            if isinstance(deadline, str):
                raise ConfigurationError(
                    "first_token_timeout", deadline, "'auto', seconds > 0, or None"
                )
            check_number(
                "first_token_timeout",
                deadline,
                minimum=0.0,
                inclusive=False,
                maximum=MAX_FIRST_TOKEN_TIMEOUT_SEC,
            )
        if self.redis_url is not None:
            check_url(self.redis_url)
        check_namespace(self.redis_namespace)
        if self.replica_name is not None:
            _check_name("replica_name", self.replica_name, spaces=True)
        check_number(
            "redis_state_ttl_sec", self.redis_state_ttl_sec, minimum=1.0, maximum=MAX_WINDOW_SEC
        )
        check_number("redis_reconcile_sec", self.redis_reconcile_sec, minimum=0.0, inclusive=False)
        _check_count("max_sdk_breakers", self.max_sdk_breakers)

    def as_kwargs(self) -> dict[str, Any]:
        """Every setting by name: ``CircuitBreaker(**config.as_kwargs())``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **changes: Any) -> Self:
        """A copy with some settings changed, checked again."""
        return replace(self, **changes)

    @property
    def stall_detection(self) -> float | None:
        """Seconds before an unanswered call is probed; None when off (or probes are off)."""
        return self.stall_after_sec if self.probe_interval is not None else None

    @property
    def trial_probing(self) -> float | None:
        """Seconds between trial completions; None when off (or the probe loop is off:
        they run in it, and a probe pass with nobody to confirm it grants a trial)."""
        return self.trial_probe_interval if self.probe_interval is not None else None

    def differences(self) -> dict[str, object]:
        """The settings that differ from the defaults, secrets shown without them."""
        default = BreakerConfig()
        changed: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                changed[f.name] = public_url(value) if f.name == "redis_url" else value
        return changed

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> BreakerConfig:
        """The settings the ``CIRCUIT_BREAKER_*`` variables give; errors name variable and value.

        Values that may carry a secret (the Redis URL) are shown without it.
        ``overrides`` are settings no variable sets (e.g. ``learn_from_traffic``).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for variable, (setting, parse, expected) in ENV_VARS.items():
            raw = env.get(variable)
            if raw is None or not raw.strip():
                continue
            try:
                values[setting] = parse(raw)
            except ValueError:
                raise ConfigurationError(variable, _shown(variable, raw), expected) from None
        reuse = env.get(REUSE_LITELLM_REDIS, "").strip()
        try:
            reuse_litellm = bool(reuse) and _flag(reuse)
        except ValueError:
            raise ConfigurationError(REUSE_LITELLM_REDIS, reuse, "true or false") from None
        if reuse_litellm:
            if "redis_url" in values:
                raise ConfigurationError(
                    REUSE_LITELLM_REDIS, reuse, "unset while CIRCUIT_BREAKER_REDIS_URL is set"
                )
            values["redis_url"] = litellm_redis_url(env)
        try:
            return cls(**{**values, **overrides})
        except ConfigurationError as exc:
            found = _VARIABLE_OF.get(exc.field)
            if found is None or exc.field in overrides or exc.field not in values:
                raise
            variable = found
            if variable in _SECRET_VARIABLES:  # never echo the value: it may hold a password
                named = REUSE_LITELLM_REDIS if reuse_litellm else variable
                raise ConfigurationError(named, exc.value, exc.expected) from None
            raise ConfigurationError(
                variable, env.get(variable, exc.value), ENV_VARS[variable][2]
            ) from None


def _integer(raw: str) -> int:
    return int(raw.strip())


def _number(raw: str) -> float:
    return float(raw.strip())


def _number_or_off(raw: str) -> float | None:
    return None if raw.strip().lower() in ("off", "none", "disabled") else float(raw.strip())


def _auto_number_or_off(raw: str) -> float | str | None:
    value = raw.strip().lower()
    return "auto" if value == "auto" else _number_or_off(value)


def _choice(raw: str) -> str:
    return raw.strip().lower()


def _text(raw: str) -> str:
    return raw.strip()


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# variable -> (setting, parser, what the documentation promises)
ENV_VARS: dict[str, tuple[str, Callable[[str], object], str]] = {
    "CIRCUIT_BREAKER_FAILURE_THRESHOLD": ("failure_threshold", _integer, "an integer >= 1"),
    "CIRCUIT_BREAKER_BACKOFF_SEC": ("unhealthy_backoff_sec", _number, "seconds from 0 to 31536000"),
    "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": ("probe_interval", _number_or_off, "seconds > 0, or off"),
    "CIRCUIT_BREAKER_PROBE_TIMEOUT_SEC": ("probe_timeout", _number, "seconds > 0"),
    "CIRCUIT_BREAKER_WHEN_ALL_OPEN": ("when_all_open", _choice, "fail_open or fail_fast"),
    "CIRCUIT_BREAKER_TRIAL_LEASE_SEC": ("trial_lease_sec", _number, "seconds > 0"),
    "CIRCUIT_BREAKER_BACKOFF_MULTIPLIER": (
        "backoff_multiplier",
        _number,
        "a number from 1 to 100",
    ),
    "CIRCUIT_BREAKER_MAX_BACKOFF_SEC": (
        "max_backoff_sec",
        _number,
        "seconds from the backoff to 31536000",
    ),
    "CIRCUIT_BREAKER_PROBE_CONCURRENCY": ("probe_concurrency", _integer, "an integer >= 1"),
    "CIRCUIT_BREAKER_STALL_AFTER_SEC": ("stall_after_sec", _number_or_off, "seconds > 0, or off"),
    "CIRCUIT_BREAKER_TRIAL_PROBE_INTERVAL_SEC": (
        "trial_probe_interval",
        _number_or_off,
        "seconds > 0, or off",
    ),
    "CIRCUIT_BREAKER_FIRST_TOKEN_TIMEOUT_SEC": (
        "first_token_timeout",
        _auto_number_or_off,
        "auto, seconds from 0 to 3600, or off",
    ),
    "CIRCUIT_BREAKER_SLOW_CALLS": ("slow_call_detection", _flag, "true or false"),
    "CIRCUIT_BREAKER_REDIS_URL": ("redis_url", _text, "a redis://, rediss:// or unix:// URL"),
    "CIRCUIT_BREAKER_REDIS_NAMESPACE": (
        "redis_namespace",
        _text,
        "a name without spaces or braces",
    ),
    "CIRCUIT_BREAKER_REPLICA_NAME": ("replica_name", _text, "a non-empty name"),
    "CIRCUIT_BREAKER_REDIS_STATE_TTL_SEC": (
        "redis_state_ttl_sec",
        _number,
        "seconds from 1 to 31536000",
    ),
    "CIRCUIT_BREAKER_REDIS_RECONCILE_SEC": ("redis_reconcile_sec", _number, "seconds > 0"),
    "CIRCUIT_BREAKER_MAX_SDK_BREAKERS": ("max_sdk_breakers", _integer, "an integer >= 1"),
}
REUSE_LITELLM_REDIS = "CIRCUIT_BREAKER_REDIS_FROM_LITELLM"
"""Set to true to share state through the Redis LiteLLM itself is given (REDIS_URL or
REDIS_HOST/REDIS_PORT/REDIS_PASSWORD)."""
_SECRET_VARIABLES = frozenset({"CIRCUIT_BREAKER_REDIS_URL"})
# The setting a ConfigurationError names -> the variable that set it.
_VARIABLE_OF = {setting: variable for variable, (setting, _, _) in ENV_VARS.items()}


def _shown(variable: str, raw: str) -> str:
    return public_url(raw) if variable in _SECRET_VARIABLES else raw


def litellm_redis_url(environ: Mapping[str, str]) -> str:
    """The Redis LiteLLM is configured with: ``REDIS_URL``, else ``REDIS_HOST`` and friends."""
    url = environ.get("REDIS_URL", "").strip()
    if url:
        return url
    host = environ.get("REDIS_HOST", "").strip()
    if not host:
        raise ConfigurationError(
            REUSE_LITELLM_REDIS, "true", "REDIS_URL or REDIS_HOST set for LiteLLM as well"
        )
    port = environ.get("REDIS_PORT", "").strip() or "6379"
    user = quote(environ.get("REDIS_USERNAME", "").strip(), safe="")
    password = quote(environ.get("REDIS_PASSWORD", "").strip(), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    scheme = "rediss" if environ.get("REDIS_SSL", "").strip().lower() == "true" else "redis"
    return f"{scheme}://{auth}{host}:{port}"
