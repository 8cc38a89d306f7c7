"""The one place that reads LiteLLM's untyped dicts.

Hooks receive ``kwargs``/``request_data`` dicts whose layout differs by hook
and by LiteLLM version; deployments come as ``model_list`` entries. This module
turns them into two typed values, :class:`Deployment` and :class:`Attempt`,
so the rest of the package never digs through nested ``.get()`` chains.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _routers
from ._endpoints import DEFAULT_BASES, ProbeTarget, probe_target, resolve_secret, url_problem
from ._redact import public_url, url_secrets

__all__ = [
    "CALL_ID",
    "ID",
    "LOGGING_OBJ",
    "MODEL_INFO",
    "STREAM",
    "Attempt",
    "Deployment",
    "Routing",
    "attempt_of",
    "began_at",
    "deployment_id_of",
    "deployment_of",
    "exception_of",
    "first_token_after",
    "model_group_of",
    "read_timeout_of",
    "resolved_params",
    "routing_of",
    "sdk_endpoint",
    "sdk_key",
    "seconds_of",
    "secrets_of",
    "started_streaming",
    "str_or_none",
    "timeout_of",
    "trace_id_of",
]

HEALTH_CHECK_TAG = "litellm-internal-health-check"

# Keys the hot-path hooks read inline, where each function call costs about 3 µs
# of a Router request: named here so this module stays the one that knows them.
CALL_ID = "litellm_call_id"
"""One attempt's id, in every hook's dict."""
MODEL_INFO = "model_info"
"""A Router deployment's ``model_info`` (its ``ID`` is the deployment id)."""
ID = "id"
STREAM = "stream"
"""True for a streamed call."""
LOGGING_OBJ = "litellm_logging_obj"
"""The attempt's LiteLLM logging object (it stamps a stream's first chunk)."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment from the operator's configuration."""

    id: str
    model_group: str
    model: str
    provider: str
    display_base: str | None
    """api_base without secrets, for status output."""
    probe: ProbeTarget | None = field(compare=False)
    api_key: str | None = field(default=None, repr=False, compare=False)
    timeout: float | None = None
    """The deployment's own ``litellm_params.timeout`` in seconds, when it sets one."""
    config_error: str | None = None
    """What is wrong with its configuration (e.g. an api_base that is no URL), if anything."""
    params: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    """Its ``litellm_params`` with ``os.environ/`` read (holds the key: never shown);
    what a trial completion is sent with."""
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """Its key and its api_base's password: struck out of everything shown."""

    @property
    def host(self) -> str | None:
        """``host[:port]`` it is served from (its api_base, else its provider's default
        probe host); never user-info, a path or a query. None when neither is known."""
        url = self.display_base or (self.probe.display_url if self.probe else None)
        return public_url(url, host_only=True) or None if url else None

    @property
    def model_at(self) -> str:
        """Its model and host: ``openai/gpt-4o at api.openai.com`` (the model alone when
        no host is known)."""
        host = self.host
        return f"{self.model} at {host}" if host else self.model

    @property
    def name(self) -> str:
        """What a person reads next to its id: ``gpt-4o: openai/gpt-4o at api.openai.com``.

        Model group, model and host only, so it never holds a key; unlike a
        generated id, it stays the same when a key is rotated."""
        return f"{self.model_group}: {self.model_at}"

    @property
    def wildcard(self) -> bool:
        """A wildcard route (``openai/*``): each request names the model it wants."""
        return "*" in self.model or "*" in self.model_group


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a hook call tells us about one attempt at one deployment."""

    breaker_id: str | None
    """``model_info.id`` for Router calls, ``sdk_key`` for direct SDK calls."""
    via_router: bool
    call_id: str | None
    """One attempt: the same in the inline hooks and the queued log events."""
    trace_id: str | None
    """One client request: shared by its retries and fallback hops."""
    model_group: str | None
    is_health_check: bool
    is_fallback_wrapper: bool = False
    """A direct SDK call made with ``fallbacks=``: the outer call that runs the attempts.

    Its events carry the first api_base whichever attempt answered: never evidence."""
    endpoint: str | None = None
    """A direct SDK call's endpoint, without secrets (its id holds only a digest of it)."""


_EMPTY: Mapping[str, Any] = {}


def _dict(value: object) -> Mapping[str, Any]:
    # Hook dicts are plain dicts: the exact-type test spares the ABC check (the hot path).
    if type(value) is dict or isinstance(value, Mapping):
        return value
    return _EMPTY


def str_or_none(value: object) -> str | None:
    """``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


_str = str_or_none


def _id(value: object) -> str | None:
    """A deployment id as the Router keys it: strings as they are, integers as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _str(value)


def deployment_id_of(entry: Mapping[str, Any]) -> str | None:
    """``model_info.id`` of a Router deployment dict (the hot path: no other work)."""
    model_info = entry.get(MODEL_INFO)
    if type(model_info) is dict or isinstance(model_info, Mapping):
        return _id(model_info.get(ID))
    return None


def trace_id_of(request_kwargs: Mapping[str, Any]) -> str | None:
    """The client request's id (shared by its retries and fallback hops), from filter kwargs."""
    return _str(request_kwargs.get("litellm_trace_id"))


def exception_of(kwargs: Mapping[str, Any]) -> BaseException | None:
    """The error of a failure log event, or None if it carries none."""
    value = kwargs.get("exception")
    return value if isinstance(value, BaseException) else None


def model_group_of(entry: Mapping[str, Any]) -> str | None:
    """``model_name`` of a Router deployment dict: the group it serves."""
    return _str(entry.get("model_name"))


@dataclass(frozen=True, slots=True)
class _Provider:
    model: str
    """The model without its provider prefix."""
    name: str
    base: str | None
    env_key: str | None = field(repr=False)
    """The key LiteLLM itself would read from the environment for this provider."""


@functools.lru_cache(maxsize=1024)
def provider_of(
    model: str, api_base: str | None = None, custom_llm_provider: str | None = None
) -> _Provider:
    """LiteLLM's own reading of a model string: provider, default api_base, env key."""
    import litellm  # noqa: PLC0415 - keep importing this module cheap

    try:
        bare, name, env_key, default_base = litellm.get_llm_provider(
            model, custom_llm_provider=custom_llm_provider, api_base=api_base
        )
    except Exception:  # noqa: BLE001 - an unmappable model simply has no probe
        name, _, bare = model.rpartition("/")
        return _Provider(bare, custom_llm_provider or name, api_base, None)
    return _Provider(bare, name, api_base or default_base, _str(env_key))


def resolved_params(litellm_params: Mapping[str, Any]) -> dict[str, Any]:
    """``litellm_params`` with every ``os.environ/NAME`` string read, as the proxy does.

    The proxy resolves every string of a deployment's litellm_params (api_base
    too) before building its Router, so probes and generated ids must see the
    same values. The one place this package does it.
    """
    return {
        k: (resolve_secret(v) if isinstance(v, str) and v.startswith("os.environ/") else v)
        for k, v in litellm_params.items()
    }


def generated_id(model_group: str, litellm_params: Mapping[str, Any]) -> str:
    """The id LiteLLM's Router gives a deployment whose model_info has none."""
    return _routers.generated_id(model_group, resolved_params(litellm_params))


def deployment_of(entry: Mapping[str, Any]) -> Deployment | None:
    """A typed deployment from a ``model_list`` entry or a Router deployment dict."""
    params = _dict(entry.get("litellm_params"))
    model = _str(params.get("model"))
    group = _str(entry.get("model_name"))
    if model is None or group is None:
        return None
    deployment_id = deployment_id_of(entry) or generated_id(group, params)
    api_base = _str(params.get("api_base")) or _str(params.get("base_url"))
    provider = provider_of(model, api_base, _str(params.get("custom_llm_provider")))
    key = resolve_secret(params.get("api_key")) or provider.env_key
    base = provider.base
    target = probe_target(provider.name, base, key, api_version=_str(params.get("api_version")))
    return Deployment(
        id=deployment_id,
        model_group=group,
        model=model,
        provider=provider.name,
        display_base=public_url(base) if base else None,
        probe=target,
        api_key=key,
        timeout=seconds_of(params.get("timeout")),
        config_error=url_problem(api_base),
        params=resolved_params(params),
        secrets=tuple(s for s in (key, *url_secrets(base)) if s),
    )


def seconds_of(value: object) -> float | None:
    """A positive, finite number of seconds (LiteLLM also takes numeric strings), else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    return None


def timeout_of(kwargs: Mapping[str, Any]) -> float | None:
    """The timeout an attempt ran with (the caller's, else the deployment's or Router's):
    seconds, a numeric string, or an ``httpx.Timeout`` (its read timeout)."""
    value = kwargs.get("timeout")
    if value is None:  # a logged event (sync calls) carries it in its litellm_params
        value = _dict(kwargs.get("litellm_params")).get("timeout")
    seconds = seconds_of(value)
    if seconds is None and value is not None and hasattr(value, "read"):
        seconds = seconds_of(value.read)
    return seconds


def read_timeout_of(value: object) -> float | None:
    """How long an attempt's ``timeout`` lets one read wait, in seconds (``inf``: none
    given, or unbounded), or None for a value this cannot read."""
    if value is None:
        return math.inf
    seconds = seconds_of(value)
    if seconds is not None:
        return seconds
    if hasattr(value, "read"):  # httpx.Timeout
        read = value.read
        return math.inf if read is None else seconds_of(read)
    return None


def began_at(kwargs: Mapping[str, Any]) -> float | None:
    """When (``time.time()``) an attempt's call began, or None: the ``start_time`` of a
    logged event, else that of the attempt's LiteLLM logging object (inline hooks)."""
    began = kwargs.get("start_time")
    if not isinstance(began, datetime.datetime):
        began = getattr(kwargs.get(LOGGING_OBJ), "start_time", None)
    if not isinstance(began, datetime.datetime):
        return None
    try:
        return began.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def first_token_after(kwargs: Mapping[str, Any]) -> float | None:
    """Seconds from a finished stream's provider call to its first chunk, or None.

    LiteLLM's logging object stamps ``completion_start_time`` when the first
    chunk arrives and ``api_call_start_time`` as the provider call goes out
    (``start_time``, when the call began, on versions without it).
    """
    first = kwargs.get("completion_start_time")
    began = kwargs.get("api_call_start_time") or kwargs.get("start_time")
    if not isinstance(first, datetime.datetime) or not isinstance(began, datetime.datetime):
        return None
    try:
        seconds = (first - began).total_seconds()
    except TypeError:  # one naive, one aware
        return None
    return seconds if 0 <= seconds < math.inf else None


def started_streaming(kwargs: Mapping[str, Any]) -> bool:
    """Whether a streamed attempt's first chunk arrived (a failure after it broke mid-way)."""
    return isinstance(kwargs.get("completion_start_time"), datetime.datetime)


# LiteLLM logs some providers' api_base with the route appended.
_ROUTE_SUFFIXES = ("/chat/completions", "/completions", "/embeddings", "/responses")


@functools.lru_cache(maxsize=1024)
def sdk_endpoint(api_base: str | None, model: str | None, provider: str | None = None) -> str:
    """The endpoint a direct SDK call went to, fit for display (no user-info, no route)."""
    found = provider_of(model or "", api_base, provider)
    base = found.base or DEFAULT_BASES.get(found.name)
    if not base:
        return "(default)"
    base = public_url(base)
    for suffix in _ROUTE_SUFFIXES:
        base = base.removesuffix(suffix)
    return base


@functools.lru_cache(maxsize=1024)
def sdk_key(api_base: str | None, model: str | None, provider: str | None = None) -> str | None:
    """The breaker id of a direct SDK call: provider/model at a digest of its endpoint.

    Inline hooks see ``openai/m`` (or a bare ``gpt-4o``) while the logged events
    see ``m`` with the provider alongside, and the api_base may be implicit or
    carry the route: all normalise to one key. The endpoint is a digest, so the
    id (in logs, ``status``, errors and Redis keys) never carries a URL; every
    replica computes the same one.
    """
    if not model:
        return None
    found = provider_of(model, api_base, provider)
    endpoint = sdk_endpoint(api_base, model, provider)
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
    return f"{found.name}/{found.model}@{digest}"


def secrets_of(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The key and api_base password a call brought (a direct SDK call may bring its own)."""
    litellm_params = _dict(kwargs.get("litellm_params"))
    key = _str(kwargs.get("api_key")) or _str(litellm_params.get("api_key"))
    base = _str(kwargs.get("api_base")) or _str(litellm_params.get("api_base"))
    found = url_secrets(base)
    return (key, *found) if key else found


def _has_tag(tag: str, *containers: Mapping[str, Any]) -> bool:
    """Whether any container lists ``tag`` under "tags" or "request_tags"."""
    for container in containers:
        if not container:
            continue
        for name in ("tags", "request_tags"):
            value = container.get(name)
            if isinstance(value, list) and tag in value:
                return True
    return False


def attempt_of(kwargs: Mapping[str, Any]) -> Attempt:
    """Read an attempt from any hook's ``kwargs``/``request_data``."""
    litellm_params = _dict(kwargs.get("litellm_params"))
    metadata = _dict(kwargs.get("metadata")) or _dict(litellm_params.get("metadata"))
    slo = _dict(kwargs.get("standard_logging_object"))
    model_info = (
        _dict(kwargs.get("model_info"))
        or _dict(litellm_params.get("model_info"))
        or _dict(metadata.get("model_info"))
    )
    deployment_id = _id(model_info.get("id")) or _str(slo.get("model_id"))
    endpoint = breaker_id = None
    if deployment_id is None:
        call = (
            _str(kwargs.get("api_base")) or _str(litellm_params.get("api_base")),
            _str(kwargs.get("model")) or _str(slo.get("model")),
            _str(litellm_params.get("custom_llm_provider")),
        )
        breaker_id = sdk_key(*call)
        endpoint = sdk_endpoint(*call) if breaker_id is not None else None
    return Attempt(
        breaker_id=deployment_id or breaker_id,
        via_router=deployment_id is not None,
        call_id=_str(kwargs.get(CALL_ID)),
        trace_id=_str(kwargs.get("litellm_trace_id")) or _str(slo.get("trace_id")),
        model_group=_str(metadata.get("model_group")) or _str(slo.get("model_group")),
        is_fallback_wrapper=deployment_id is None and bool(kwargs.get("fallbacks")),
        is_health_check=_has_tag(
            HEALTH_CHECK_TAG,
            metadata,
            slo,
            _dict(kwargs.get("litellm_metadata")),
            _dict(litellm_params.get("litellm_metadata")),
        ),
        endpoint=endpoint,
    )


@dataclass(frozen=True, slots=True)
class Routing:
    """What a filter's ``request_kwargs`` say about the request's way through the groups."""

    fallbacks: tuple[str, ...] | None
    """The request's own ``fallbacks=`` groups, or None when it brought none."""
    tried_groups: tuple[str, ...]
    """Groups this request already went through (its original group), on a fallback hop."""


def _fallback_names(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value:
        return None
    names: list[str] = []
    for item in value:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, Mapping):  # [{"group": ["fallback", ...]}]
            for targets in item.values():
                if isinstance(targets, list):
                    names.extend(t for t in targets if isinstance(t, str))
    return tuple(names)


def routing_of(request_kwargs: Mapping[str, Any]) -> Routing:
    """Read a request's fallbacks and the groups it already tried (rare path only)."""
    metadata = _dict(request_kwargs.get("metadata")) or _dict(
        request_kwargs.get("litellm_metadata")
    )
    original = _str(metadata.get("original_model_group"))
    return Routing(
        fallbacks=_fallback_names(request_kwargs.get("fallbacks")),
        tried_groups=(original,) if original else (),
    )
