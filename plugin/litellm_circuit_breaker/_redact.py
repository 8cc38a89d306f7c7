"""Keep secrets out of everything we show: logs, errors, snapshots, metrics, status.

Two layers: patterns that look like credentials anywhere (``sk-...`` keys,
``Bearer`` tokens, URL user-info, ``?key=`` query parameters), and the exact
key values the operator configured, which we know and can strike out verbatim.
"""

from __future__ import annotations

import hashlib
import re
import threading
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Redactor", "public_url"]

MASK = "***"
MAX_REASON_CHARS = 200

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Credentials in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s@]*@"), rf"\1{MASK}@"),
    # Bearer / Basic tokens in echoed headers
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), rf"\1 {MASK}"),
    # Key-like query or JSON fields: api_key=..., "api-key": "...", token=...
    (
        re.compile(
            r"(?i)([\"']?\b(?:api[_-]?key|x-api-key|access[_-]?token|token|secret|password|"
            r"sig|signature|key)[\"']?\s*[=:]\s*[\"']?)[^\"'&\s,}]{4,}"
        ),
        rf"\1{MASK}",
    ),
    # Provider key shapes: sk-..., sk-ant-..., AIza..., xai-..., gsk_...
    (
        re.compile(r"\b(?:sk|rk|pk|xai|gsk|hf)[-_][A-Za-z0-9_-]{8,}|\bAIza[0-9A-Za-z_-]{20,}"),
        MASK,
    ),
)


class Redactor:
    """Strikes secrets out of text; knows the configured keys verbatim."""

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add_secret(self, secret: str | None) -> None:
        """Remember a configured key so its exact value is always masked."""
        if not secret or len(secret) < 4:
            return
        with self._lock:
            self._secrets = self._secrets | {secret}

    def __call__(self, text: str | None, *, limit: int = MAX_REASON_CHARS) -> str:
        """``text`` without secrets, on one line, at most ``limit`` characters."""
        if not text or limit <= 0:
            return ""
        out = " ".join(_mask_spans(str(text), self._secrets).split())
        for pattern, replacement in _PATTERNS:
            out = pattern.sub(replacement, out)
        if len(out) > limit:
            out = out[: limit - 1] + "…"
        return out


def _mask_spans(text: str, secrets: frozenset[str]) -> str:
    """Mask every place any secret occurs, merging overlaps, before anything else."""
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        start = text.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    if not spans:
        return text
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    out: list[str] = []
    last = 0
    for start, end in merged:
        out.extend((text[last:start], MASK))
        last = end
    out.append(text[last:])
    return "".join(out)


def invalid_url(url: str) -> str:
    """How a URL that cannot be parsed is shown: distinct per URL, nothing of it readable."""
    return f"(invalid URL {hashlib.sha256(url.encode()).hexdigest()[:8]})"


def public_url(url: str) -> str:
    """A URL fit for display and keys: no user-info, query or fragment, no trailing slash."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        # User-info ends at the last "@": a password may hold "/" or "#", which
        # would end the netloc early and leave the password in the path.
        url = f"{scheme}://{rest.rpartition('@')[2]}"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[::1:8000/v1": shown as a digest, never raw
        return invalid_url(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port that is no number: show the host alone
        port = None
    netloc = host.lower() + (f":{port}" if port else "")
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))
