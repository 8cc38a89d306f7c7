"""Token-free probes: which cheap request tells whether a deployment's endpoint is up.

OpenAI-compatible servers answer ``GET {api_base}/models``, Ollama
``GET /api/tags``, Anthropic ``GET /v1/models``, Azure OpenAI
``GET {endpoint}/openai/models``: none of them spends a token. Deployments
sharing an endpoint and key share one probe. Everything here is built from the
operator's configuration only, never from a request.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx

from ._redact import public_url

__all__ = ["ProbeAnswer", "ProbeError", "ProbeTarget", "probe_target", "run_http_probe"]

# Providers that speak the OpenAI wire format, including GET /models.
OPENAI_COMPATIBLE = frozenset(
    {
        "openai",
        "text-completion-openai",
        "custom_openai",
        "openai_like",
        "hosted_vllm",
        "vllm",
        "lm_studio",
        "llamafile",
        "litellm_proxy",
        "deepseek",
        "groq",
        "together_ai",
        "fireworks_ai",
        "mistral",
        "xai",
        "perplexity",
        "openrouter",
        "deepinfra",
        "nvidia_nim",
        "cerebras",
        "sambanova",
        "github",
        "nebius",
        "novita",
        "featherless_ai",
    }
)
DEFAULT_BASES = {
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "anthropic": "https://api.anthropic.com",
    "ollama": "http://localhost:11434",
    "ollama_chat": "http://localhost:11434",
}
_DEFAULT_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "azure": "AZURE_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
}
AZURE_PROBE_API_VERSION = "2024-10-21"
ANTHROPIC_VERSION = "2023-06-01"


class ProbeError(Exception):
    """A probe got an answer that means "down" (5xx, 401, 403)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status of the answer, when there was one."""


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One cheap request; equal targets are probed once per tick."""

    kind: str
    """openai-models, azure-models, anthropic-models or ollama-tags."""
    url: str = field(repr=False)
    """Where the request goes (may carry user-info; never shown)."""
    display_url: str
    """The same URL without secrets, for logs and status."""
    key_fingerprint: str
    """A short hash of the key, so two keys on one endpoint are two probes."""
    headers: Mapping[str, str] = field(repr=False, compare=False, hash=False)

    def __str__(self) -> str:
        return f"{self.kind} {self.display_url}"

    @property
    def key(self) -> str:
        """Identifies one probe: endpoint, kind and key fingerprint, no secret."""
        return f"{self}#{self.key_fingerprint}"


def resolve_secret(value: object) -> str | None:
    """A key as configured: literal, or LiteLLM's ``os.environ/NAME`` form."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith("os.environ/"):
        return os.environ.get(value.removeprefix("os.environ/")) or None
    return value


def url_problem(url: str | None) -> str | None:
    """Why ``url`` is no URL httpx could call (never quoting it: it may hold a key), or None."""
    if url is None:
        return None
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises for a port that is no number or out of range
    except ValueError as exc:
        return f"api_base is not a valid URL ({type(exc).__name__})"
    return None


def probe_target(
    provider: str,
    api_base: str | None,
    api_key: str | None,
    *,
    api_version: str | None = None,
) -> ProbeTarget | None:
    """The probe for a deployment, or None when it has no cheap probe (stays passive)."""
    raw = (api_base or DEFAULT_BASES.get(provider) or "").strip()
    if url_problem(raw) is not None:
        return None  # not a URL httpx could call: no probe (the caller says why)
    parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    # The path is appended before any query the operator put on the base.
    base = urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))
    query = parts.query
    key = api_key or os.environ.get(_DEFAULT_KEY_ENV.get(provider, ""), "") or None
    headers: dict[str, str] = {}
    if provider in OPENAI_COMPATIBLE:
        kind, url = "openai-models", f"{base}/models"
        if key:
            headers["Authorization"] = f"Bearer {key}"
    elif provider == "azure":
        kind = "azure-models"
        url = f"{base}/openai/models?api-version={api_version or AZURE_PROBE_API_VERSION}"
        if key:
            headers["api-key"] = key
    elif provider == "anthropic":
        kind = "anthropic-models"
        root = base.removesuffix("/v1")
        url = f"{root}/v1/models"
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if key:
            headers["x-api-key"] = key
    elif provider in ("ollama", "ollama_chat"):
        kind, url = "ollama-tags", f"{base}/api/tags"
    else:
        return None
    if query:
        url = f"{url}{'&' if '?' in url else '?'}{query}"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:12] if key else "-"
    return ProbeTarget(kind, url, public_url(url), fingerprint, headers)


class ProbeAnswer(enum.Enum):
    """What a probe's answer says, short of "down" (which raises :class:`ProbeError`)."""

    UP = "up"
    NO_LIST_CALL = "no_list_call"
    """404/405: this endpoint has no cheap probe; it stays passive."""
    NO_VERDICT = "no_verdict"
    """429 and other 4xx: alive enough to answer, but no evidence either way."""


async def run_http_probe(client: httpx.AsyncClient, target: ProbeTarget) -> ProbeAnswer:
    """One probe request; raises :class:`ProbeError` when the answer means "down"."""
    response = await client.get(target.url, headers=dict(target.headers))
    status = response.status_code
    if 200 <= status < 300:
        return ProbeAnswer.UP
    if status >= 500 or status in (401, 403):
        raise ProbeError(f"HTTP {status} from {target.kind}", status)
    if status in (404, 405):
        return ProbeAnswer.NO_LIST_CALL
    return ProbeAnswer.NO_VERDICT
