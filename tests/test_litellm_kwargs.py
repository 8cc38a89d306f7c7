"""Reading LiteLLM's untyped dicts: deployments from model_list, attempts from hook kwargs."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import litellm
import pytest

from litellm_circuit_breaker._litellm_kwargs import (
    CALL_ID,
    HEALTH_CHECK_TAG,
    ID,
    MODEL_INFO,
    STREAM,
    Attempt,
    Deployment,
    attempt_of,
    deployment_id_of,
    deployment_of,
    exception_of,
    model_group_of,
    resolved_params,
    sdk_endpoint,
    sdk_key,
    secrets_of,
    str_or_none,
    trace_id_of,
)
from tests.llm_helpers import router_entries

KEY = "sk-deploy-key-0123456789"


def digest(endpoint: str) -> str:
    """How an SDK breaker id names its endpoint: the same on every replica, no URL."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:12]


@pytest.fixture(autouse=True)
def no_provider_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own keys must not change ids or probes here."""
    for name in ("OPENAI_API_KEY", "AZURE_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def entry(
    params: dict[str, Any], model_info: dict[str, Any] | None = None, group: str = "g"
) -> dict[str, Any]:
    out: dict[str, Any] = {"model_name": group, "litellm_params": params}
    if model_info is not None:
        out["model_info"] = model_info
    return out


def router_id(model_list_entry: dict[str, Any]) -> str:
    """The id a real Router gives this entry (it mutates its input, so it gets a copy)."""
    r = litellm.Router(model_list=[copy.deepcopy(model_list_entry)])
    return str(router_entries(r)[0]["model_info"]["id"])


def test_deployment_of_reads_a_model_list_entry_with_an_id() -> None:
    """Id, group, model, provider, display base, probe and key come out typed."""
    d = deployment_of(
        entry(
            {"model": "openai/m", "api_base": "http://a.test/v1/", "api_key": KEY},
            {"id": "dep-a"},
        )
    )
    assert d is not None
    assert (d.id, d.model_group, d.model, d.provider, d.display_base, d.api_key) == (
        "dep-a",
        "g",
        "openai/m",
        "openai",
        "http://a.test/v1",
        KEY,
    )
    assert d.probe is not None
    assert (d.probe.kind, d.probe.url) == ("openai-models", "http://a.test/v1/models")
    assert d.probe.headers == {"Authorization": f"Bearer {KEY}"}


def test_deployment_of_shows_no_secret() -> None:
    """display_base drops user-info and query; repr and str never show the key."""
    d = deployment_of(
        entry(
            {"model": "openai/m", "api_base": "https://u:pw@A.test/v1/?key=zz", "api_key": KEY},
            {"id": "dep-a"},
        )
    )
    assert d is not None
    assert d.display_base == "https://a.test/v1"
    assert KEY not in repr(d)
    assert KEY not in str(d)


def test_deployment_equality_ignores_key_and_probe() -> None:
    """Two entries differing only in key are the same deployment value."""
    a = deployment_of(entry({"model": "openai/m", "api_key": "sk-one-12345678"}, {"id": "x"}))
    b = deployment_of(entry({"model": "openai/m", "api_key": "sk-two-12345678"}, {"id": "x"}))
    assert a == b
    assert a is not None
    assert b is not None
    assert a.probe != b.probe


def test_deployment_of_resolves_an_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key: os.environ/NAME is read from the environment, as the Router does."""
    monkeypatch.setenv("CB_DEPLOY_KEY", KEY)
    d = deployment_of(entry({"model": "openai/m", "api_key": "os.environ/CB_DEPLOY_KEY"}, {}))
    assert d is not None
    assert d.api_key == KEY
    assert d.probe is not None
    assert d.probe.headers == {"Authorization": f"Bearer {KEY}"}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(
            {"model": "openai/m", "api_base": "http://a.test/v1", "api_key": KEY}, id="literal-key"
        ),
        pytest.param(
            {"model": "openai/m", "api_base": "http://a.test/v1", "api_key": "os.environ/CB_K"},
            id="env-key",
        ),
        pytest.param(
            {"model": "openai/m", "api_base": "http://a.test/v1", "api_key": "os.environ/CB_UNSET"},
            id="env-key-unset",
        ),
        pytest.param(
            {"model": "openai/m", "api_base": "http://a.test/v1", "rpm": 10, "timeout": 3.5},
            id="numbers",
        ),
        pytest.param({"model": "gpt-4o"}, id="no-base"),
        pytest.param(
            {"model": "hosted_vllm/m", "api_base": "http://v.test/v1", "extra_body": {"a": 1}},
            id="nested-dict",
        ),
    ],
)
@pytest.mark.parametrize("model_info", [None, {}, {"base_model": "gpt-4o"}])
@pytest.mark.usefixtures("litellm_callbacks")
def test_a_missing_id_is_the_one_a_real_router_assigns(
    monkeypatch: pytest.MonkeyPatch, params: dict[str, Any], model_info: dict[str, Any] | None
) -> None:
    """Without model_info.id, deployment_of derives exactly the Router's generated id."""
    monkeypatch.setenv("CB_K", "sk-from-env-123456")
    monkeypatch.delenv("CB_UNSET", raising=False)
    e = entry(params, model_info)
    d = deployment_of(copy.deepcopy(e))
    assert d is not None
    assert d.id == router_id(e)


def test_the_generated_id_depends_on_the_resolved_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same entry, different value behind os.environ/: a different id, as in the Router."""
    e = entry({"model": "openai/m", "api_key": "os.environ/CB_K"})
    monkeypatch.setenv("CB_K", "sk-first-value-1234")
    first = deployment_of(e)
    monkeypatch.setenv("CB_K", "sk-second-value-123")
    second = deployment_of(e)
    assert first is not None
    assert second is not None
    assert first.id != second.id


@pytest.mark.usefixtures("litellm_callbacks")
def test_an_integer_id_is_used_as_the_router_uses_it() -> None:
    """An integer id in model_info is the deployment's id, as a string."""
    e = entry({"model": "openai/m", "api_base": "http://a.test/v1"}, {"id": 7})
    assert router_id(e) == "7"
    assert deployment_id_of(e) == "7"
    d = deployment_of(e)
    assert d is not None
    assert d.id == "7"


@pytest.mark.parametrize(
    ("params", "provider", "probe_kind"),
    [
        ({"model": "openai/m", "api_base": "http://a.test/v1"}, "openai", "openai-models"),
        ({"model": "gpt-4o"}, "openai", "openai-models"),
        (
            {"model": "hosted_vllm/m", "api_base": "http://v.test/v1"},
            "hosted_vllm",
            "openai-models",
        ),
        (
            {"model": "m", "custom_llm_provider": "hosted_vllm", "api_base": "http://v.test/v1"},
            "hosted_vllm",
            "openai-models",
        ),
        ({"model": "openai/m", "base_url": "http://b.test/v1"}, "openai", "openai-models"),
        (
            {"model": "azure/gpt4", "api_base": "https://r.openai.azure.com", "api_key": "k-123"},
            "azure",
            "azure-models",
        ),
        ({"model": "anthropic/claude-3-5-sonnet-20240620"}, "anthropic", "anthropic-models"),
        ({"model": "ollama/llama3"}, "ollama", "ollama-tags"),
        ({"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0"}, "bedrock", None),
        ({"model": "hosted_vllm/m"}, "hosted_vllm", None),
    ],
)
def test_deployment_of_finds_the_provider_and_its_probe(
    params: dict[str, Any], provider: str, probe_kind: str | None
) -> None:
    """The provider comes from the model string or custom_llm_provider; no cheap probe is None."""
    d = deployment_of(entry(params, {"id": "x"}))
    assert d is not None
    assert d.provider == provider
    assert (d.probe.kind if d.probe else None) == probe_kind


def test_a_probe_uses_the_key_litellm_reads_from_the_providers_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A groq deployment keyed by GROQ_API_KEY is probed with that key, as LiteLLM calls it."""
    monkeypatch.setenv("GROQ_API_KEY", "gsk_from_env_123456789")
    d = deployment_of(entry({"model": "groq/llama3-8b-8192"}, {"id": "x"}))
    assert d is not None
    assert d.probe is not None
    assert d.probe.url == "https://api.groq.com/openai/v1/models"
    assert d.probe.headers == {"Authorization": "Bearer gsk_from_env_123456789"}


@pytest.mark.parametrize(
    "bad",
    [
        {"model_name": "g"},
        {"model_name": "g", "litellm_params": {}},
        {"model_name": "g", "litellm_params": {"model": ""}},
        {"litellm_params": {"model": "openai/m"}},
        {"model_name": "", "litellm_params": {"model": "openai/m"}},
        {"model_name": "g", "litellm_params": "openai/m"},
    ],
)
def test_an_entry_without_model_or_group_is_not_a_deployment(bad: dict[str, Any]) -> None:
    """Entries missing the model or the group name give None instead of raising."""
    assert deployment_of(bad) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"model_info": {"id": "dep-a"}}, "dep-a"),
        ({"model_info": {"id": ""}}, None),
        ({"model_info": {"id": None}}, None),
        ({"model_info": {}}, None),
        ({"model_info": "dep-a"}, None),
        ({}, None),
    ],
)
def test_deployment_id_of_reads_model_info_id(value: dict[str, Any], expected: str | None) -> None:
    """Only a non-empty string model_info.id is an id."""
    assert deployment_id_of(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("x", "x"), ("", None), (None, None), (3, None), (["x"], None)]
)
def test_str_or_none(value: object, expected: str | None) -> None:
    """Non-empty strings pass; everything else is None."""
    assert str_or_none(value) == expected


@pytest.mark.parametrize(
    "args",
    [
        ("http://A.test/v1/", "openai/m"),
        ("http://a.test/v1", "m", "openai"),
        ("http://a.test/v1", "openai/m", "openai"),
        ("http://a.test/v1?x=1", "openai/m"),
        ("http://user:pw@a.test/v1", "openai/m"),
    ],
)
def test_sdk_key_normalises_base_and_provider(args: tuple[str | None, ...]) -> None:
    """Case, trailing slash, user-info, query and a separate provider all give one key."""
    assert sdk_endpoint(*args) == "http://a.test/v1"
    assert sdk_key(*args) == f"openai/m@{digest('http://a.test/v1')}"


@pytest.mark.parametrize(
    "args",
    [
        (None, "openai/gpt-4o"),
        ("https://api.openai.com/v1", "openai/gpt-4o"),
        ("https://api.openai.com/v1/", "gpt-4o", "openai"),
        (None, "gpt-4o", "openai"),
    ],
)
def test_an_implicit_openai_base_equals_the_explicit_one(args: tuple[str | None, ...]) -> None:
    """No api_base means LiteLLM's default base, written out."""
    assert sdk_endpoint(*args) == "https://api.openai.com/v1"
    assert sdk_key(*args) == f"openai/gpt-4o@{digest('https://api.openai.com/v1')}"


def test_an_unprefixed_model_gets_the_provider_litellm_infers() -> None:
    """ "gpt-4o" alone is openai/gpt-4o, the same breaker as the explicit forms."""
    assert sdk_key(None, "gpt-4o") == sdk_key(None, "gpt-4o", "openai")


@pytest.mark.parametrize(
    "api_base",
    [
        "admin:hunter2pw@host.test/v1",
        "http://admin:p@ss@word@host.test/v1",
        "https://user:pw99@host.test/v1?api-key=abcd1234",
    ],
)
def test_an_sdk_breaker_id_carries_no_url_and_no_password(api_base: str) -> None:
    """With or without a scheme, a password holding "@" or a key in the query: none of it."""
    breaker_id = sdk_key(api_base, "openai/m")
    assert breaker_id is not None
    model, _, endpoint_digest = breaker_id.partition("@")
    assert model == "openai/m"
    assert len(endpoint_digest) == 12
    assert int(endpoint_digest, 16) >= 0  # hex digits only
    for fragment in ("host", "admin", "hunter2pw", "ss@word", "pw99", "abcd1234", "://"):
        assert fragment not in breaker_id
    assert not {"hunter2pw", "ss@word", "pw99", "abcd1234"} & set(
        sdk_endpoint(api_base, "openai/m").split("@")
    )


def test_the_key_and_password_a_call_brings_are_read_as_secrets() -> None:
    """``secrets_of``: the per-call api_key, and the api_base's user-info and password."""
    kwargs = {"api_key": "tenant-key-123", "api_base": "http://u:pw42@a.test/v1"}
    assert secrets_of(kwargs) == ("tenant-key-123", "u:pw42", "pw42")
    logged = {"litellm_params": {"api_key": "tenant-key-123", "api_base": "http://a.test"}}
    assert secrets_of(logged) == ("tenant-key-123",)
    assert secrets_of({}) == ()


def test_a_deployment_names_its_key_and_its_api_base_password_as_secrets() -> None:
    """Both are struck out of everything shown, not only the key."""
    found = deployment_of(
        {
            "model_name": "g",
            "litellm_params": {
                "model": "openai/m",
                "api_base": "http://ops:base-pw-77@a.test/v1",
                "api_key": KEY,
            },
        }
    )
    assert found is not None
    assert found.secrets == (KEY, "ops:base-pw-77", "base-pw-77")
    assert "base-pw-77" not in repr(found)


def test_sdk_key_keeps_different_things_apart() -> None:
    """Another host, model or provider on the same base is another breaker; no model is None."""
    base = sdk_key("http://a.test/v1", "openai/m")
    assert sdk_key("http://b.test/v1", "openai/m") != base
    assert sdk_key("http://a.test/v1", "openai/n") != base
    assert sdk_key("http://a.test/v1", "hosted_vllm/m") != base
    assert sdk_key("http://a.test:8080/v1", "openai/m") != base
    assert sdk_key("http://a.test/v1", None) is None
    assert sdk_key("http://a.test/v1", "") is None


INLINE_ROUTER = {
    "model": "openai/m",
    "api_base": "http://a.test/v1",
    "api_key": KEY,
    "model_info": {"id": "dep-a"},
    "litellm_call_id": "c1",
    "litellm_trace_id": "t1",
    "metadata": {"model_group": "g", "tags": []},
}
LOGGED_ROUTER = {
    "model": "m",
    "litellm_params": {
        "api_base": "http://a.test/v1/",
        "custom_llm_provider": "openai",
        "model_info": {"id": "dep-a"},
        "metadata": {"model_group": "g", "tags": []},
    },
    "standard_logging_object": {
        "model_id": "dep-a",
        "api_base": "http://a.test/v1",
        "model_group": "g",
        "request_tags": [],
        "trace_id": "t1",
    },
    "litellm_call_id": "c1",
}
ROUTER_ATTEMPT = Attempt(
    breaker_id="dep-a",
    via_router=True,
    call_id="c1",
    trace_id="t1",
    model_group="g",
    is_health_check=False,
)


def test_attempt_of_inline_deployment_hook_kwargs() -> None:
    """The inline deployment hooks carry model_info, call and trace ids and the group."""
    assert attempt_of(INLINE_ROUTER) == ROUTER_ATTEMPT


def test_attempt_of_queued_log_event_kwargs() -> None:
    """The logged event of the same attempt reads to the same Attempt."""
    assert attempt_of(LOGGED_ROUTER) == ROUTER_ATTEMPT


def test_attempt_of_falls_back_to_the_standard_logging_object() -> None:
    """With only the standard logging object, its model_id, group and trace id are used."""
    kwargs = {"model": "m", "standard_logging_object": LOGGED_ROUTER["standard_logging_object"]}
    assert attempt_of(kwargs) == Attempt("dep-a", True, None, "t1", "g", False)


def test_attempt_of_reads_model_info_from_proxy_request_metadata() -> None:
    """The proxy's failure hook has the deployment under metadata.model_info."""
    kwargs = {"metadata": {"model_info": {"id": "dep-a"}, "model_group": "g"}}
    assert attempt_of(kwargs) == Attempt("dep-a", True, None, None, "g", False)


INLINE_SDK = {
    "model": "openai/m",
    "api_base": "http://a.test/v1",
    "api_key": KEY,
    "litellm_call_id": "c1",
}
LOGGED_SDK = {
    "model": "m",
    "litellm_params": {
        "api_base": "http://a.test/v1/",
        "custom_llm_provider": "openai",
        "model_info": None,
        "metadata": {},
    },
    "standard_logging_object": {
        "model_id": "",
        "api_base": "http://a.test/v1",
        "model": "m",
        "model_group": None,
        "request_tags": [],
        "trace_id": "t9",
    },
    "litellm_call_id": "c1",
}


def test_a_direct_sdk_call_gives_the_same_breaker_inline_and_logged() -> None:
    """No model_info (model_id ""): both forms key on base plus provider/model, not the Router."""
    inline, logged = attempt_of(INLINE_SDK), attempt_of(LOGGED_SDK)
    assert inline.breaker_id == logged.breaker_id == sdk_key("http://a.test/v1", "openai/m")
    assert inline.endpoint == logged.endpoint == "http://a.test/v1"
    assert (inline.via_router, logged.via_router) == (False, False)
    assert inline.call_id == logged.call_id == "c1"
    assert (inline.model_group, logged.model_group) == (None, None)


def test_an_unprefixed_sdk_model_gives_the_same_breaker_inline_and_logged() -> None:
    """The shapes litellm 1.108.7 really passes for acompletion(model="gpt-4o") agree."""
    inline = {"model": "gpt-4o", "api_key": KEY, "litellm_call_id": "c2"}
    logged = {
        "model": "gpt-4o",
        "litellm_params": {
            "api_base": "https://api.openai.com/v1/",
            "custom_llm_provider": "openai",
            "metadata": {},
        },
        "standard_logging_object": {"model_id": "", "api_base": "https://api.openai.com/v1"},
        "litellm_call_id": "c2",
    }
    assert attempt_of(inline).breaker_id == attempt_of(logged).breaker_id


def test_a_hosted_vllm_sdk_call_gives_the_same_breaker_inline_and_logged() -> None:
    """The shapes litellm 1.108.7 really passes for a hosted_vllm acompletion agree."""
    inline = {"model": "hosted_vllm/m", "api_base": "http://a.test/v1", "litellm_call_id": "c3"}
    logged = {
        "model": "m",
        "litellm_params": {
            "api_base": "http://a.test/v1/chat/completions",
            "custom_llm_provider": "hosted_vllm",
            "metadata": {},
        },
        "standard_logging_object": {
            "model_id": "",
            "api_base": "http://a.test/v1/chat/completions",
        },
        "litellm_call_id": "c3",
    }
    assert attempt_of(inline).breaker_id == attempt_of(logged).breaker_id


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(
            {**INLINE_ROUTER, "metadata": {"model_group": "g", "tags": [HEALTH_CHECK_TAG]}},
            id="inline-metadata-tags",
        ),
        pytest.param(
            {
                **LOGGED_ROUTER,
                "standard_logging_object": {
                    "model_id": "",
                    "api_base": "http://a.test/v1",
                    "request_tags": [HEALTH_CHECK_TAG],
                },
            },
            id="logged-request-tags",
        ),
        pytest.param(
            {
                "model": "m",
                "litellm_params": {
                    "api_base": "http://a.test/v1/",
                    "custom_llm_provider": "openai",
                    "litellm_metadata": {"tags": ["other", HEALTH_CHECK_TAG]},
                },
            },
            id="logged-litellm-metadata-tags",
        ),
    ],
)
def test_a_proxy_health_check_is_recognised_by_its_tag(kwargs: dict[str, Any]) -> None:
    """The proxy's background health check is tagged litellm-internal-health-check."""
    assert attempt_of(kwargs).is_health_check is True


def test_the_inline_hook_kwargs_of_a_real_health_check_are_recognised() -> None:
    """The shape litellm 1.108.7's ahealth_check really passes to the deployment hooks."""
    kwargs = {
        "model": "openai/m",
        "api_base": "http://a.test/v1",
        "litellm_call_id": "c4",
        "litellm_metadata": {"tags": [HEALTH_CHECK_TAG], "user_api_key": HEALTH_CHECK_TAG},
    }
    assert attempt_of(kwargs).is_health_check is True


@pytest.mark.parametrize(
    "tags",
    [["prod"], [], "litellm-internal-health-check", None, [HEALTH_CHECK_TAG.upper()]],
)
def test_other_tags_are_not_a_health_check(tags: object) -> None:
    """Only the exact tag in a list marks a health check."""
    assert attempt_of({**INLINE_ROUTER, "metadata": {"tags": tags}}).is_health_check is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"model_info": "dep-a", "litellm_params": None, "metadata": 3},
        {"standard_logging_object": "x", "litellm_call_id": 5, "model": ["m"]},
    ],
)
def test_attempt_of_tolerates_missing_and_malformed_fields(kwargs: dict[str, Any]) -> None:
    """Garbage in the dicts gives an empty Attempt, never an exception."""
    assert attempt_of(kwargs) == Attempt(None, False, None, None, None, False)


def test_deployment_and_attempt_are_frozen() -> None:
    """Typed values cannot be changed after the fact."""
    d = deployment_of(entry({"model": "openai/m"}, {"id": "x"}))
    assert isinstance(d, Deployment)
    with pytest.raises(AttributeError):
        d.id = "y"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ROUTER_ATTEMPT.breaker_id = "y"  # type: ignore[misc]


def test_resolved_params_reads_every_environ_string_as_the_proxy_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """api_base and keys alike; unset variables become None; other values stay as they are."""
    monkeypatch.setenv("CB_TEST_BASE", "http://from-env.test/v1")
    monkeypatch.delenv("CB_TEST_UNSET", raising=False)
    params = {
        "model": "openai/m",
        "api_base": "os.environ/CB_TEST_BASE",
        "api_key": "os.environ/CB_TEST_UNSET",
        "timeout": 5,
    }
    assert resolved_params(params) == {
        "model": "openai/m",
        "api_base": "http://from-env.test/v1",
        "api_key": None,
        "timeout": 5,
    }
    assert params["api_base"] == "os.environ/CB_TEST_BASE"  # the input is left alone


def test_the_hot_path_keys_are_the_ones_the_readers_use() -> None:
    """The key constants the hooks read inline name the fields attempt_of reads."""
    kwargs = {MODEL_INFO: {ID: "dep-1"}, CALL_ID: "call-1", STREAM: True}
    attempt = attempt_of(kwargs)
    assert attempt.breaker_id == "dep-1"
    assert attempt.call_id == "call-1"
    assert deployment_id_of(kwargs) == "dep-1"
    assert (MODEL_INFO, ID, CALL_ID, STREAM) == ("model_info", "id", "litellm_call_id", "stream")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({"litellm_trace_id": "t-1"}, "t-1"), ({"litellm_trace_id": ""}, None), ({}, None)],
)
def test_trace_id_of_reads_the_requests_trace_id(
    kwargs: dict[str, Any], expected: str | None
) -> None:
    """A filter's request kwargs name the client request; empty or missing is None."""
    assert trace_id_of(kwargs) == expected


def test_exception_of_reads_a_failure_events_error() -> None:
    """The exception of a failure event; anything else there is no error."""
    error = litellm.InternalServerError("down", llm_provider="openai", model="m")
    assert exception_of({"exception": error}) is error
    assert exception_of({"exception": "down"}) is None
    assert exception_of({}) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [({"model_name": "chat"}, "chat"), ({"model_name": ""}, None), ({}, None)],
)
def test_model_group_of_reads_a_router_entrys_group(
    value: dict[str, Any], expected: str | None
) -> None:
    """A Router deployment dict's model_name is its group."""
    assert model_group_of(value) == expected
