"""FailurePolicy.classify on the real exceptions LiteLLM, httpx, asyncio and the proxy raise."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Callable

import httpx
import litellm
import pytest
from fastapi import HTTPException
from litellm.exceptions import (
    BudgetExceededError,
    CallerCredentialAuthenticationError,
    CallerCredentialRateLimitError,
)
from litellm.types.router import RouterRateLimitError

from litellm_circuit_breaker._errors import CircuitOpenError, ConfigurationError
from litellm_circuit_breaker._policy import (
    CallerChoices,
    Classification,
    FailurePolicy,
    Verdict,
    retry_after_of,
)
from litellm_circuit_breaker._redact import Redactor

PROVIDER = {"llm_provider": "openai", "model": "m"}
REQUEST = httpx.Request("POST", "http://a.test/v1/chat/completions")


def service_unavailable(headers: dict[str, str] | None = None) -> BaseException:
    response = httpx.Response(503, headers=headers, request=REQUEST) if headers else None
    return litellm.ServiceUnavailableError(message="down", response=response, **PROVIDER)


def rate_limited(response_headers: dict[str, str] | None = None, **kwargs: object) -> BaseException:
    response = httpx.Response(429, headers=response_headers, request=REQUEST)
    return litellm.RateLimitError(message="slow down", response=response, **PROVIDER, **kwargs)


def bad_request() -> BaseException:
    return litellm.BadRequestError(message="bad", **PROVIDER)


def context_window() -> BaseException:
    return litellm.ContextWindowExceededError(message="too long", **PROVIDER)


def content_policy() -> BaseException:
    return litellm.ContentPolicyViolationError(message="refused", **PROVIDER)


def unsupported_params() -> BaseException:
    return litellm.UnsupportedParamsError(message="no such param", **PROVIDER)


def unprocessable() -> BaseException:
    response = httpx.Response(422, request=REQUEST)
    return litellm.UnprocessableEntityError(message="unprocessable", response=response, **PROVIDER)


def authentication() -> BaseException:
    return litellm.AuthenticationError(message="bad key", **PROVIDER)


def permission_denied() -> BaseException:
    response = httpx.Response(403, request=REQUEST)
    return litellm.PermissionDeniedError(message="forbidden", response=response, **PROVIDER)


def not_found() -> BaseException:
    return litellm.NotFoundError(message="no such model", **PROVIDER)


def timeout() -> BaseException:
    return litellm.Timeout(message="timed out", **PROVIDER)


def api_connection() -> BaseException:
    return litellm.APIConnectionError(message="connection reset", **PROVIDER)


def internal_server() -> BaseException:
    return litellm.InternalServerError(message="boom", **PROVIDER)


def bad_gateway() -> BaseException:
    return litellm.BadGatewayError(message="bad gateway", **PROVIDER)


def api_error(status_code: int) -> Callable[[], BaseException]:
    def build() -> BaseException:
        return litellm.APIError(status_code=status_code, message="api error", **PROVIDER)

    return build


def router_rate_limit() -> BaseException:
    return RouterRateLimitError(
        model="g", cooldown_time=5.0, enable_pre_call_checks=False, cooldown_list=[]
    )


def budget_exceeded() -> BaseException:
    return BudgetExceededError(current_cost=2.0, max_budget=1.0)


def caller_credential_auth() -> BaseException:
    return CallerCredentialAuthenticationError(message="your token expired", **PROVIDER)


def caller_credential_rate_limit() -> BaseException:
    return CallerCredentialRateLimitError(message="your token is throttled", **PROVIDER)


def litellm_rate_limit() -> BaseException:
    return litellm.RateLimitError(
        message="key over its rpm", category="litellm_rate_limit", **PROVIDER
    )


def vendor_batch_rate_limit() -> BaseException:
    return litellm.RateLimitError(
        message="batch quota", category="vendor_batch_rate_limit", **PROVIDER
    )


def proxy_rejection() -> BaseException:
    return HTTPException(status_code=403, detail="key not allowed to call this model")


F, C, N, X = Verdict.FAULT, Verdict.CALLER, Verdict.NOT_PROVIDER, Verdict.CANCELLED


@pytest.mark.parametrize(
    ("build", "verdict", "status"),
    [
        pytest.param(service_unavailable, F, 503, id="ServiceUnavailableError"),
        pytest.param(rate_limited, F, 429, id="RateLimitError-vendor"),
        pytest.param(vendor_batch_rate_limit, F, 429, id="RateLimitError-vendor-batch"),
        pytest.param(bad_request, C, 400, id="BadRequestError"),
        pytest.param(context_window, C, 400, id="ContextWindowExceededError"),
        pytest.param(content_policy, C, 400, id="ContentPolicyViolationError"),
        pytest.param(unsupported_params, C, 400, id="UnsupportedParamsError"),
        pytest.param(unprocessable, C, 422, id="UnprocessableEntityError"),
        pytest.param(authentication, F, 401, id="AuthenticationError"),
        pytest.param(permission_denied, F, 403, id="PermissionDeniedError"),
        pytest.param(not_found, F, 404, id="NotFoundError"),
        pytest.param(timeout, F, 408, id="Timeout"),
        pytest.param(api_connection, F, 500, id="APIConnectionError"),
        pytest.param(internal_server, F, 500, id="InternalServerError"),
        pytest.param(bad_gateway, F, 502, id="BadGatewayError"),
        pytest.param(api_error(500), F, 500, id="APIError-500"),
        pytest.param(api_error(504), F, 504, id="APIError-504"),
        pytest.param(api_error(418), C, 418, id="APIError-418"),
        pytest.param(api_error(499), X, 499, id="APIError-499-client-closed"),
        pytest.param(router_rate_limit, N, 429, id="RouterRateLimitError"),
        pytest.param(budget_exceeded, N, litellm.budget_exceeded_status_code, id="Budget"),
        pytest.param(caller_credential_auth, N, 401, id="CallerCredentialAuthenticationError"),
        pytest.param(caller_credential_rate_limit, N, 429, id="CallerCredentialRateLimitError"),
        pytest.param(litellm_rate_limit, N, 429, id="RateLimitError-litellm-own-limiter"),
        pytest.param(asyncio.CancelledError, X, None, id="CancelledError"),
        pytest.param(KeyboardInterrupt, X, None, id="KeyboardInterrupt"),
        pytest.param(lambda: CircuitOpenError("dep-a", 3.0), N, ..., id="CircuitOpenError"),
        pytest.param(lambda: httpx.ConnectError("refused"), F, None, id="httpx.ConnectError"),
        pytest.param(lambda: httpx.ReadTimeout("slow"), F, None, id="httpx.ReadTimeout"),
        pytest.param(lambda: httpx.ConnectTimeout("slow"), F, None, id="httpx.ConnectTimeout"),
        pytest.param(TimeoutError, F, None, id="TimeoutError"),
        pytest.param(lambda: ConnectionRefusedError(111, "refused"), F, None, id="ConnRefused"),
        pytest.param(proxy_rejection, N, 403, id="fastapi.HTTPException-403"),
        pytest.param(lambda: ValueError("what is this"), N, None, id="unknown-ValueError"),
    ],
)
def test_classify_gives_the_documented_verdict_and_status(
    build: Callable[[], BaseException], verdict: Verdict, status: object
) -> None:
    """Each real exception type gets its verdict; only FAULT counts; the status is read off it."""
    exc = build()
    result = FailurePolicy().classify(exc)
    if status is ...:  # our own error's status belongs to _errors.py, not to this table
        status = getattr(exc, "status_code", None)
    assert (result.verdict, result.counts, result.status) == (
        verdict,
        verdict is Verdict.FAULT,
        status,
    )


def test_counts_is_true_only_for_fault() -> None:
    """`counts` is exactly "the verdict is FAULT"."""
    assert [Classification(v, "r").counts for v in Verdict] == [v is Verdict.FAULT for v in Verdict]


def test_reason_names_type_status_and_message() -> None:
    """The reason reads "Type (status): message", without LiteLLM's repeated class prefixes."""
    policy = FailurePolicy()
    assert policy.classify(service_unavailable()).reason == "ServiceUnavailableError (503): down"
    assert policy.classify(content_policy()).reason == "ContentPolicyViolationError (400): refused"
    assert policy.classify(httpx.ConnectError("refused")).reason == "ConnectError: refused"
    assert policy.classify(TimeoutError()).reason == "TimeoutError"


def test_reason_passes_through_the_redactor() -> None:
    """A key echoed in the provider's message never reaches the reason."""
    exc = litellm.ServiceUnavailableError(
        message="upstream rejected key sk-abcdefghijklmnop\n  at  gateway", **PROVIDER
    )
    result = FailurePolicy().classify(exc, redact=Redactor())
    assert "sk-abcdefghijklmnop" not in result.reason
    assert result.reason == "ServiceUnavailableError (503): upstream rejected key *** at gateway"


def test_reason_uses_the_given_redact_function_on_the_message_only() -> None:
    """redact sees only the message; the type and status around it are ours."""
    result = FailurePolicy().classify(not_found(), redact=lambda text: f"<{text.upper()}>")
    assert result.reason == "NotFoundError (404): <NO SUCH MODEL>"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "30"}, 30.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "30"}, 1.5),
        ({"retry-after-ms": "junk", "retry-after": "30"}, 30.0),
        ({"retry-after-ms": "0", "retry-after": "7"}, 7.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "0"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "inf"}, None),
        ({}, None),
    ],
)
def test_a_counted_rate_limit_carries_retry_after(
    headers: dict[str, str], expected: float | None
) -> None:
    """Retry-After seconds or retry-after-ms come back as seconds; junk and <= 0 are None."""
    result = FailurePolicy().classify(rate_limited(headers))
    assert result.counts
    assert result.retry_after == expected


def test_a_counted_503_carries_retry_after_too() -> None:
    """A 503 with Retry-After keeps the provider's hint."""
    assert FailurePolicy().classify(service_unavailable({"retry-after": "12"})).retry_after == 12.0


def test_retry_after_is_read_from_the_errors_own_headers() -> None:
    """Headers LiteLLM attaches to the error (not the response) are read as well."""
    assert retry_after_of(rate_limited(None, headers={"retry-after": "9"})) == 9.0
    exc = internal_server()
    exc.litellm_response_headers = httpx.Headers({"RETRY-AFTER": "4"})  # type: ignore[attr-defined]
    assert retry_after_of(exc) == 4.0


def test_retry_after_accepts_an_http_date_relative_to_now() -> None:
    """An HTTP-date Retry-After is the time from the injected `now` to that date."""
    when = 1_700_000_000.0
    exc = rate_limited({"retry-after": email.utils.formatdate(when, usegmt=True)})
    assert retry_after_of(exc, now=lambda: when - 120.0) == 120.0
    assert retry_after_of(exc, now=lambda: when + 1.0) is None


@pytest.mark.parametrize("raw", ["Wed, 99 Foo 2015 07:28:00 GMT", "", "   ", "1e", "30s"])
def test_retry_after_ignores_junk(raw: str) -> None:
    """A Retry-After that is neither seconds nor an HTTP-date is ignored."""
    assert retry_after_of(rate_limited({"retry-after": raw}), now=lambda: 0.0) is None


def test_uncounted_failures_carry_no_retry_after() -> None:
    """Only counted failures remember Retry-After: not a switched-off class, not our own limiter."""
    off = FailurePolicy(count_rate_limits=False).classify(rate_limited({"retry-after": "30"}))
    assert (off.verdict, off.retry_after) == (Verdict.CALLER, None)
    own = litellm.RateLimitError(
        message="rpm",
        category="litellm_rate_limit",
        response=httpx.Response(429, headers={"retry-after": "30"}, request=REQUEST),
        **PROVIDER,
    )
    assert FailurePolicy().classify(own).retry_after is None


SWITCHED = [
    ("count_server_errors", service_unavailable),
    ("count_server_errors", internal_server),
    ("count_server_errors", bad_gateway),
    ("count_timeouts", timeout),
    ("count_timeouts", lambda: httpx.ReadTimeout("slow")),
    ("count_timeouts", TimeoutError),
    ("count_connection_errors", api_connection),
    ("count_connection_errors", lambda: httpx.ConnectError("refused")),
    ("count_connection_errors", ConnectionRefusedError),
    ("count_rate_limits", rate_limited),
    ("count_auth_errors", authentication),
    ("count_auth_errors", permission_denied),
    ("count_not_found", not_found),
]
SWITCHES = sorted({name for name, _ in SWITCHED})


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize(("owner", "build"), SWITCHED)
def test_each_switch_turns_off_only_its_own_class(
    switch: str, owner: str, build: Callable[[], BaseException]
) -> None:
    """With one `count_*` switch off its class stops counting; every other class still counts."""
    result = FailurePolicy(**{switch: False}).classify(build())
    if switch == owner:
        assert (result.verdict, result.counts) == (Verdict.CALLER, False)
    else:
        assert (result.verdict, result.counts) == (Verdict.FAULT, True)


class StackSpecificError(Exception):
    """An error only this deployment's stack raises."""


def test_extra_fault_types_count_ahead_of_every_other_rule() -> None:
    """Listed fault types count even when the default would ignore them."""
    policy = FailurePolicy(extra_fault_types=(StackSpecificError, litellm.BadRequestError))
    for exc in (StackSpecificError("x"), bad_request(), context_window()):
        assert policy.classify(exc).verdict is Verdict.FAULT, exc
    assert policy.classify(ValueError("x")).verdict is Verdict.NOT_PROVIDER


def test_extra_fault_types_keep_retry_after() -> None:
    """A listed fault type still reports the provider's Retry-After."""
    policy = FailurePolicy(extra_fault_types=(CallerCredentialRateLimitError,))
    exc = CallerCredentialRateLimitError(
        message="x",
        response=httpx.Response(429, headers={"retry-after": "5"}, request=REQUEST),
        **PROVIDER,
    )
    result = policy.classify(exc)
    assert (result.verdict, result.retry_after) == (Verdict.FAULT, 5.0)


def test_extra_ignored_types_never_count() -> None:
    """Listed ignored types never count, even a 5xx; subclasses are ignored too."""
    policy = FailurePolicy(extra_ignored_types=(litellm.InternalServerError,))
    result = policy.classify(internal_server())
    assert (result.verdict, result.counts, result.status) == (Verdict.CALLER, False, 500)
    assert policy.classify(service_unavailable()).counts


def test_extra_ignored_types_win_over_extra_fault_types() -> None:
    """A type in both lists is ignored: not counting is the safe side."""
    policy = FailurePolicy(
        extra_fault_types=(StackSpecificError,), extra_ignored_types=(StackSpecificError,)
    )
    assert policy.classify(StackSpecificError()).verdict is Verdict.CALLER


@pytest.mark.parametrize("name", ["extra_fault_types", "extra_ignored_types"])
@pytest.mark.parametrize(
    "bad",
    [
        [ValueError],
        ValueError,
        (ValueError, "TimeoutError"),
        ("ValueError",),
        (int,),
        (ValueError(),),
        None,
    ],
    ids=["list", "bare-class", "tuple-with-str", "str", "non-exception", "instance", "None"],
)
def test_bad_extra_types_raise_a_value_error_naming_the_field(name: str, bad: object) -> None:
    """Anything but a tuple of exception classes is refused, naming the setting."""
    with pytest.raises(ValueError, match=rf"^{name}=") as info:
        FailurePolicy(**{name: bad})  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigurationError)
    assert (info.value.field, info.value.value) == (name, bad)


def test_default_policy_counts_everything_a_deployment_can_cause() -> None:
    """Every switch is on and no extra types are listed by default."""
    policy = FailurePolicy()
    assert all(getattr(policy, name) for name in SWITCHES)
    assert (policy.extra_fault_types, policy.extra_ignored_types) == ((), ())


@pytest.mark.parametrize("switch", SWITCHES)
def test_a_non_bool_switch_raises_a_value_error_naming_it(switch: str) -> None:
    """Each switch must be a real bool, like every other validated setting."""
    with pytest.raises(ValueError, match=rf"^{switch}="):
        FailurePolicy(**{switch: "false"})


def test_a_timeout_the_caller_cut_short_is_the_callers() -> None:
    """Shorter than the deployment's own timeout: about the caller, whatever its latency
    or whether it is known (a replica that just started knows none); as long as its own,
    its own unknown, or a stream: a fault."""
    policy = FailurePolicy()
    exc = timeout()
    for short in (
        CallerChoices(timeout=0.05, configured_timeout=30.0),
        CallerChoices(timeout=29.0, configured_timeout=30.0),
    ):
        verdict = policy.classify(exc, chosen=short)
        assert verdict.verdict is Verdict.CALLER
        assert verdict.timed_out  # so it may prompt a stall probe
        assert "caller's own timeout" in verdict.reason
    counted = [
        CallerChoices(timeout=30.0, configured_timeout=30.0),  # its own
        CallerChoices(timeout=0.05),  # its own timeout: unknown
        CallerChoices(timeout=0.05, configured_timeout=30.0, stream=True),
    ]
    assert all(policy.classify(exc, chosen=chosen).counts for chosen in counted)
    assert policy.classify(exc).counts


def test_a_404_for_a_model_the_caller_named_on_a_wildcard_route_is_the_callers() -> None:
    """The operator's own model missing still counts; a made-up name on ``openai/*`` does not."""
    policy = FailurePolicy()
    exc = not_found()
    assert policy.classify(exc).counts
    made_up = policy.classify(exc, chosen=CallerChoices(model_from_wildcard=True))
    assert made_up.verdict is Verdict.CALLER
