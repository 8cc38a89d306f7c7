"""Keep secrets out of everything we show: logs, errors, snapshots, metrics, status.

Three layers, applied in this order:

* the exact values the plugin has seen: every configured key, the password of
  every configured ``api_base``, and (most recent :data:`SEEN_MAX`) the keys and
  URL passwords direct SDK calls brought, struck out verbatim whatever their shape;
* structure: URL user-info (up to the last ``@``, with or without a scheme),
  ``Bearer``/``Basic`` credentials, and key-like query or JSON fields (``key``,
  ``api-key``, ``token``, ``sig``, ``X-Amz-Signature``...);
* the shapes of real keys: OpenAI ``sk-``/``sk-proj-``, Anthropic ``sk-ant-``,
  Azure's 32 hex digits, Google ``AIza``/``ya29.``, AWS ``AKIA``/``ASIA``, JWTs.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

__all__ = ["Redactor", "public_url", "url_secrets"]

MASK = "***"
MAX_REASON_CHARS = 200
SEEN_MAX = 256
"""Keys requests brought, remembered verbatim: the most recent ones. A key is
learned just before its own call's error is redacted (and errors are stored
redacted), so recency is what matters; each one kept costs every redaction a
search (256: about 0.25 ms a redaction)."""

_USERINFO_MAX = 256
"""The longest URL user-info masked as such (longer ones are not credentials we meet)."""
_FIELD_NAMES = r"api[_-]?key|apikey|key|token|secret|password|passwd|pwd|sig|signature|credential"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Credentials in URLs: scheme://user:password@host, up to the last "@" of the
    # run (a password may hold "@", "/" or "#"; masking a path's "@" too is harmless).
    # Bounded: an unbounded run made a long error body without spaces quadratic.
    (re.compile(rf"(?i)\b([a-z][a-z0-9+.-]*://)\S{{0,{_USERINFO_MAX}}}@"), rf"\1{MASK}@"),
    # ... and without a scheme: user:password@host/v1
    (
        re.compile(rf"(?<![\w.~%+-])[\w.~%+-]*:(?!//)\S{{0,{_USERINFO_MAX}}}@(?=[\w\[])"),
        rf"{MASK}@",
    ),
    # Bearer / Basic tokens in echoed headers
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), rf"\1 {MASK}"),
    # Key-like query or JSON fields: api_key=..., "api-key": "...", X-Amz-Signature=...
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9])((?:[A-Za-z0-9]+[_-])*"
            rf"(?:{_FIELD_NAMES})[\"']?\s*[=:]\s*[\"']?)"
            r"[^\"'&\s,}]{4,}"
        ),
        rf"\1{MASK}",
    ),
    # Provider key shapes, one pattern each (one alternation of all of them cost
    # twice as much): sk-... (OpenAI, sk-proj-, Anthropic sk-ant-), xai-, gsk_, hf_;
    # Google AIza... and ya29. OAuth tokens; AWS access key ids; JWTs; Azure's 32
    # hex digits.
    *(
        (re.compile(shape), MASK)
        for shape in (
            r"\b(?:sk|rk|pk|xai|gsk|hf)[-_][A-Za-z0-9_-]{8,}",
            r"\bAIza[0-9A-Za-z_-]{20,}",
            r"\bya29\.[0-9A-Za-z_.-]{10,}",
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
            r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            r"\b[0-9a-fA-F]{32}\b",
        )
    ),
)


class Redactor:
    """Strikes secrets out of text; knows the configured keys verbatim, and the recent SDK ones."""

    def __init__(self) -> None:
        self._configured: frozenset[str] = frozenset()
        """Every configured key, in each form text may carry it (:func:`_written_forms`)."""
        self._seen: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._secrets: frozenset[str] = frozenset()
        """Both, as one value the hot path reads without the lock."""
        self._lock = threading.Lock()

    def add_secret(self, secret: str | None) -> None:
        """Remember a configured key so its exact value is always masked."""
        if not secret or len(secret) < 4 or secret in self._configured:
            return
        forms = _written_forms(secret)
        with self._lock:
            self._configured = self._configured | forms
            self._secrets = self._secrets | forms

    def add_seen(self, secret: str | None) -> None:
        """Remember a key a request brought (one of the :data:`SEEN_MAX` most recent)."""
        if not secret or len(secret) < 4:
            return
        with self._lock:
            if secret in self._seen:
                self._seen.move_to_end(secret)
                return
            if secret in self._configured:
                return
            self._seen[secret] = _written_forms(secret)
            while len(self._seen) > SEEN_MAX:
                self._seen.popitem(last=False)
            self._secrets = self._configured.union(*self._seen.values())

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


def url_secrets(url: str | None) -> tuple[str, ...]:
    """What in ``url`` is secret: its user-info whole, its password, as written and decoded.

    A URL without a scheme (``admin:pw@host/v1``) counts as one whose user-info
    ends at the last ``@``, as :func:`public_url` reads it.
    """
    if not url or "@" not in url:
        return ()
    rest = url.strip().partition("://")[2] or url.strip()
    userinfo = rest.rpartition("@")[0]
    found: list[str] = []
    for part in (userinfo, userinfo.partition(":")[2]):
        for value in (part, unquote(part)):
            if len(value) >= 4 and value not in found:
                found.append(value)
    return tuple(found)


def _written_forms(secret: str) -> frozenset[str]:
    """A key as text may carry it: verbatim, percent-encoded (a provider echoing a URL or
    a form; either case of hex digit) and with ``/`` JSON-escaped as ``\\/``. Only a key
    holding characters such as ``+``, ``/`` or ``=`` has forms other than itself."""
    encoded = {quote(secret, safe=""), quote_plus(secret)}
    encoded |= {_PERCENT.sub(lambda m: m.group().lower(), form) for form in encoded}
    return frozenset({secret, secret.replace("/", "\\/"), *encoded})


_PERCENT = re.compile(r"%[0-9A-F]{2}")


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


def public_url(url: str, *, host_only: bool = False) -> str:
    """A URL fit for display and keys: no user-info, query or fragment, no trailing slash.

    Without a scheme (``admin:pw@host/v1``) the user-info is dropped all the same
    and the rest shown as it is written (``host/v1``). ``host_only``: just
    ``host[:port]``, the part a person reads next to a deployment's name.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep and host_only and not url.startswith("//"):
        url = "//" + url  # "host:8080/v1": no scheme, so the host comes first
    if not sep and "@" in url:
        # No scheme, so urlsplit would read "admin" as one and keep the password in
        # the path: what follows the last "@" is the host.
        url = "//" + url.rpartition("@")[2]
    elif sep and "@" in rest:
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
    if host_only:
        return netloc
    path = parts.path.rstrip("/")
    if not parts.scheme and url.startswith("//"):
        return netloc + path
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))
