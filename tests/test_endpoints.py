"""Token-free probe targets per provider, and one probe request against respx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
import respx

from litellm_circuit_breaker._endpoints import (
    ANTHROPIC_VERSION,
    AZURE_PROBE_API_VERSION,
    ProbeAnswer,
    ProbeError,
    ProbeTarget,
    probe_target,
    resolve_secret,
    run_http_probe,
)

KEY = "sk-probe-key-0123456789"
KEY_ENVS = ("OPENAI_API_KEY", "AZURE_API_KEY", "ANTHROPIC_API_KEY")


@pytest.fixture(autouse=True)
def no_provider_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own keys must not leak into these tests."""
    for name in KEY_ENVS:
        monkeypatch.delenv(name, raising=False)


def target(*args: str | None, **kwargs: str | None) -> ProbeTarget:
    t = probe_target(*args, **kwargs)  # type: ignore[arg-type]
    assert t is not None, args
    return t


OPENAI_AUTH = {"Authorization": f"Bearer {KEY}"}
ANTHROPIC_AUTH = {"anthropic-version": ANTHROPIC_VERSION, "x-api-key": KEY}
AZURE_MODELS = "https://res.openai.azure.com/openai/models"

# (provider, api_base, extra kwargs) -> (kind, url, display_url, headers)
TARGETS = {
    "openai-default-base": (
        ("openai", None, {}),
        ("openai-models", "https://api.openai.com/v1/models", None, OPENAI_AUTH),
    ),
    "openai-explicit-base": (
        ("openai", "http://A.test/v1/", {}),
        ("openai-models", "http://A.test/v1/models", "http://a.test/v1/models", OPENAI_AUTH),
    ),
    "hosted_vllm": (
        ("hosted_vllm", "http://vllm.test:8000/v1", {}),
        ("openai-models", "http://vllm.test:8000/v1/models", None, OPENAI_AUTH),
    ),
    "lm_studio": (
        ("lm_studio", "http://127.0.0.1:1234/v1", {}),
        ("openai-models", "http://127.0.0.1:1234/v1/models", None, OPENAI_AUTH),
    ),
    "groq": (
        ("groq", "https://api.groq.com/openai/v1", {}),
        ("openai-models", "https://api.groq.com/openai/v1/models", None, OPENAI_AUTH),
    ),
    "azure-default-version": (
        ("azure", "https://res.openai.azure.com/", {}),
        (
            "azure-models",
            f"{AZURE_MODELS}?api-version={AZURE_PROBE_API_VERSION}",
            AZURE_MODELS,
            {"api-key": KEY},
        ),
    ),
    "azure-configured-version": (
        ("azure", "https://res.openai.azure.com", {"api_version": "2024-02-01"}),
        ("azure-models", f"{AZURE_MODELS}?api-version=2024-02-01", AZURE_MODELS, {"api-key": KEY}),
    ),
    "anthropic-default-base": (
        ("anthropic", None, {}),
        ("anthropic-models", "https://api.anthropic.com/v1/models", None, ANTHROPIC_AUTH),
    ),
    "anthropic-base-with-v1": (
        ("anthropic", "https://api.anthropic.com/v1/", {}),
        ("anthropic-models", "https://api.anthropic.com/v1/models", None, ANTHROPIC_AUTH),
    ),
    "anthropic-base-without-v1": (
        ("anthropic", "https://gateway.test/anthropic", {}),
        ("anthropic-models", "https://gateway.test/anthropic/v1/models", None, ANTHROPIC_AUTH),
    ),
    "ollama-default-base": (
        ("ollama", None, {}),
        ("ollama-tags", "http://localhost:11434/api/tags", None, {}),
    ),
    "ollama_chat": (
        ("ollama_chat", "http://gpu.test:11434/", {}),
        ("ollama-tags", "http://gpu.test:11434/api/tags", None, {}),
    ),
}


@pytest.mark.parametrize(("given", "expected"), TARGETS.values(), ids=TARGETS.keys())
def test_probe_target_builds_the_providers_cheap_request(
    given: tuple[str, str | None, dict[str, str]],
    expected: tuple[str, str, str | None, dict[str, str]],
) -> None:
    """Each provider gets its list call, auth header (none for Ollama) and a clean display URL."""
    provider, base, kwargs = given
    kind, url, display_url, headers = expected
    display_url = display_url or url  # None in the table: the URL is already clean
    t = target(provider, base, KEY, **kwargs)
    assert (t.kind, t.url, t.display_url, dict(t.headers)) == (kind, url, display_url, headers)
    assert str(t) == f"{kind} {display_url}"


@pytest.mark.parametrize(
    ("provider", "env", "header", "value"),
    [
        ("openai", "OPENAI_API_KEY", "Authorization", "Bearer sk-from-env-123456"),
        ("azure", "AZURE_API_KEY", "api-key", "sk-from-env-123456"),
        ("anthropic", "ANTHROPIC_API_KEY", "x-api-key", "sk-from-env-123456"),
    ],
)
def test_the_providers_env_key_is_used_when_none_is_configured(
    monkeypatch: pytest.MonkeyPatch, provider: str, env: str, header: str, value: str
) -> None:
    """Like LiteLLM itself, a deployment without api_key falls back to the provider's env var."""
    monkeypatch.setenv(env, "sk-from-env-123456")
    base = "https://res.openai.azure.com" if provider == "azure" else None
    assert target(provider, base, None).headers[header] == value


def test_a_configured_key_wins_over_the_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The env var is only a fallback."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123456")
    assert target("openai", None, KEY).headers == {"Authorization": f"Bearer {KEY}"}


def test_no_key_anywhere_means_no_auth_header_and_no_fingerprint() -> None:
    """A keyless local server is probed without credentials."""
    t = target("openai", "http://local.test/v1", None)
    assert (dict(t.headers), t.key_fingerprint) == ({}, "-")


def test_ollama_never_sends_a_key() -> None:
    """Ollama has no auth: a configured key is not put on the wire."""
    assert dict(target("ollama", None, KEY).headers) == {}


@pytest.mark.parametrize(
    ("provider", "base"),
    [
        ("bedrock", None),
        ("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com"),
        ("vertex_ai", None),
        ("some_new_provider", "http://x.test/v1"),
        ("hosted_vllm", None),
        ("groq", None),
        ("azure", None),
        ("openai", "ftp://a.test/v1"),
        ("openai", "a.test/v1"),
        ("hosted_vllm", ""),
    ],
)
def test_no_cheap_probe_means_none(provider: str, base: str | None) -> None:
    """Providers without a token-free list call, and bases that are not http(s), stay passive."""
    assert probe_target(provider, base, KEY) is None


@pytest.mark.parametrize(
    ("provider", "base"),
    [
        ("openai", None),
        ("hosted_vllm", "http://vllm.test/v1"),
        ("azure", "https://res.openai.azure.com"),
        ("anthropic", None),
        ("ollama", None),
    ],
)
def test_the_key_never_appears_in_what_we_show(provider: str, base: str | None) -> None:
    """repr, str, display_url and the probe key carry no part of the key."""
    t = target(provider, base, KEY)
    for shown in (repr(t), str(t), t.display_url, t.key):
        assert KEY not in shown
        assert "0123456789" not in shown


def test_url_user_info_never_appears_in_repr() -> None:
    """A password in the base URL stays out of repr as it does out of str and display_url."""
    t = target("openai", "https://user:s3cretpass@h.test/v1", KEY)
    assert t.url == "https://user:s3cretpass@h.test/v1/models"
    assert "s3cretpass" not in str(t)
    assert t.display_url == "https://h.test/v1/models"
    assert "s3cretpass" not in repr(t)


def test_different_keys_on_one_endpoint_are_different_probes() -> None:
    """Two keys on one base give two fingerprints and unequal targets; one key gives one."""
    a1 = target("openai", "http://a.test/v1", "sk-first-key-000000")
    a2 = target("openai", "http://a.test/v1/", "sk-first-key-000000")
    b = target("openai", "http://a.test/v1", "sk-second-key-00000")
    assert a1.key_fingerprint == a2.key_fingerprint
    assert a1.key_fingerprint != b.key_fingerprint
    assert len(a1.key_fingerprint) == 12
    assert a1 == a2
    assert hash(a1) == hash(a2)
    assert a1 != b
    assert len({a1, a2, b}) == 2
    assert a1.key == a2.key == f"openai-models http://a.test/v1/models#{a1.key_fingerprint}"
    assert a1.key != b.key


def test_the_fingerprint_is_not_the_key() -> None:
    """The fingerprint is a hash: the key cannot be read back from it."""
    fp = target("openai", None, KEY).key_fingerprint
    assert fp not in KEY
    assert KEY not in fp


def test_resolve_secret_reads_litellms_env_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "os.environ/NAME" gives the variable's value; unset or empty gives None."""
    monkeypatch.setenv("CB_TEST_KEY", "sk-env-value-123456")
    monkeypatch.setenv("CB_TEST_EMPTY", "")
    monkeypatch.delenv("CB_TEST_UNSET", raising=False)
    assert resolve_secret("os.environ/CB_TEST_KEY") == "sk-env-value-123456"
    assert resolve_secret("os.environ/CB_TEST_EMPTY") is None
    assert resolve_secret("os.environ/CB_TEST_UNSET") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("sk-literal", "sk-literal"), ("", None), (None, None), (123, None), (["k"], None)],
)
def test_resolve_secret_passes_literals_and_rejects_non_strings(
    value: object, expected: str | None
) -> None:
    """A literal key is itself; anything that is not a non-empty string is no key."""
    assert resolve_secret(value) == expected


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=True) as m:
        yield m


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "answer"),
    [
        (200, ProbeAnswer.UP),
        (204, ProbeAnswer.UP),
        (404, ProbeAnswer.NO_LIST_CALL),
        (405, ProbeAnswer.NO_LIST_CALL),
        (429, ProbeAnswer.NO_VERDICT),
        (400, ProbeAnswer.NO_VERDICT),
        (301, ProbeAnswer.NO_VERDICT),
    ],
)
async def test_a_probe_answer_that_is_not_down_maps_to_its_meaning(
    mock: respx.MockRouter, client: httpx.AsyncClient, code: int, answer: ProbeAnswer
) -> None:
    """2xx is up, 404/405 is "no list call here", 429 and other answers say nothing either way."""
    mock.get("http://a.test/v1/models").mock(return_value=httpx.Response(code))
    assert await run_http_probe(client, target("openai", "http://a.test/v1", KEY)) is answer


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [500, 502, 503, 401, 403])
async def test_a_probe_answer_that_means_down_raises_naming_the_status(
    mock: respx.MockRouter, client: httpx.AsyncClient, code: int
) -> None:
    """5xx and a rejected key (401/403) raise ProbeError with the status and probe kind."""
    mock.get("http://a.test/v1/models").mock(return_value=httpx.Response(code))
    with pytest.raises(ProbeError, match=rf"^HTTP {code} from openai-models$"):
        await run_http_probe(client, target("openai", "http://a.test/v1", KEY))


@pytest.mark.asyncio
async def test_a_connection_error_propagates(
    mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    """A refused connection is left to the caller, which counts it as down."""
    mock.get("http://a.test/v1/models").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(httpx.ConnectError):
        await run_http_probe(client, target("openai", "http://a.test/v1", KEY))


PROBE_REQUESTS = {
    "openai": (
        ("openai", "http://a.test/v1"),
        ("http://a.test/v1/models", {"authorization": f"Bearer {KEY}"}),
    ),
    "azure": (
        ("azure", "https://res.openai.azure.com"),
        (AZURE_MODELS, {"api-key": KEY}),
    ),
    "anthropic": (
        ("anthropic", "https://api.anthropic.com"),
        ("https://api.anthropic.com/v1/models", {**ANTHROPIC_AUTH}),
    ),
    "ollama": (("ollama", "http://o.test:11434"), ("http://o.test:11434/api/tags", {})),
}
AUTH_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "anthropic-version"})


@pytest.mark.asyncio
@pytest.mark.parametrize(("given", "expected"), PROBE_REQUESTS.values(), ids=PROBE_REQUESTS.keys())
async def test_the_probe_request_carries_the_providers_auth(
    mock: respx.MockRouter,
    client: httpx.AsyncClient,
    given: tuple[str, str],
    expected: tuple[str, dict[str, str]],
) -> None:
    """The request goes to the list URL with exactly the provider's auth headers."""
    url, headers = expected
    route = mock.get(url__startswith=url).mock(return_value=httpx.Response(200))
    assert await run_http_probe(client, target(*given, KEY)) is ProbeAnswer.UP
    request = route.calls.last.request
    assert str(request.url).split("?", 1)[0] == url
    assert {k: v for k, v in request.headers.items() if k in AUTH_HEADERS} == headers
    if given[0] == "azure":
        assert request.url.params["api-version"] == AZURE_PROBE_API_VERSION
