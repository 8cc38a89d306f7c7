"""Redactor and public_url: nothing we show carries a secret."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from litellm_circuit_breaker._redact import (
    MASK,
    MAX_REASON_CHARS,
    SEEN_MAX,
    Redactor,
    public_url,
    url_secrets,
)
from tests.secret_corpus import SECRET_CORPUS


def redactor(*secrets: str | None) -> Redactor:
    r = Redactor()
    for secret in secrets:
        r.add_secret(secret)
    return r


def test_a_known_secret_is_masked_verbatim_wherever_it_appears() -> None:
    """A configured key that matches no pattern is still struck out, every time it occurs."""
    r = redactor("plainkeyvalue42")
    assert r("key plainkeyvalue42 rejected (plainkeyvalue42)") == "key *** rejected (***)"


@pytest.mark.parametrize("how", ["configured", "seen"])
def test_a_key_echoed_url_encoded_or_json_escaped_is_masked(how: str) -> None:
    """A provider may echo a key as it went in a URL or a form: a key with ``+ / =`` then
    reads differently, and each of those forms is struck out too."""
    key = "AbC+dEf/GhIjKlMnOpQrStUvWxYz0123456789=="
    r = Redactor()
    (r.add_secret if how == "configured" else r.add_seen)(key)
    echoed = [
        "AbC%2BdEf%2FGhIjKlMnOpQrStUvWxYz0123456789%3D%3D",
        "AbC%2bdEf%2fGhIjKlMnOpQrStUvWxYz0123456789%3d%3d",
        "AbC+dEf\\/GhIjKlMnOpQrStUvWxYz0123456789==",
    ]
    for form in echoed:
        assert r(f"bad key {form} (url-encoded)") == "bad key *** (url-encoded)", form


def test_the_longest_secret_is_masked_first() -> None:
    """A secret that contains another is masked whole, not left with the longer one's tail."""
    r = redactor("secretvalue", "secretvalue123")
    assert r("a secretvalue123 b secretvalue c") == "a *** b *** c"


def test_adding_secrets_in_either_order_gives_the_same_output() -> None:
    """Masking does not depend on the order the keys were added."""
    text = "x prefix-secret-long y prefix-secret z"
    assert redactor("prefix-secret", "prefix-secret-long")(text) == "x *** y *** z"
    assert redactor("prefix-secret-long", "prefix-secret")(text) == "x *** y *** z"


def test_partly_overlapping_secrets_are_both_masked_whole() -> None:
    """Two secrets that overlap in the text leave no fragment of either."""
    assert redactor("abcdef12", "ef12ghij")("abcdef12ghij") == MASK


def test_a_secret_containing_whitespace_is_still_masked() -> None:
    """A multi-line secret (a PEM body, say) is struck out although the text is folded."""
    secret = "abcd1234\nefgh5678"
    assert redactor(secret)(f"failed: {secret}") == "failed: ***"


@pytest.mark.parametrize("secret", [None, "", "abc"])
def test_empty_or_very_short_secrets_are_not_remembered(secret: str | None) -> None:
    """Masking three letters would shred ordinary words, so short secrets are skipped."""
    assert redactor(secret)("abc abcd") == "abc abcd"


def test_a_four_character_secret_is_remembered() -> None:
    """Four characters is the shortest secret masked verbatim."""
    assert redactor("abcd")("abc abcd") == "abc ***"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("error sk-abcdefghijklmnop here", "error *** here"),
        ("sk-ant-api03-abcdefgh is invalid", "*** is invalid"),
        ("sk-proj-AbC_dEf-1234567890", "***"),
        ("gsk_abcdefgh1234 rejected", "*** rejected"),
        ("AIzaSyA1234567890abcdefghijkl", "***"),
        ("Authorization: Bearer abc.def-123_x", "Authorization: Bearer ***"),
        ("authorization: bearer eyJhbGciOi.J9.x", "authorization: bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("GET https://user:pw@host.test/v1 failed", "GET https://***@host.test/v1 failed"),
        ("POST https://tokenonly@host.test/x", "POST https://***@host.test/x"),
        ("url?api_key=abcd1234&x=1", "url?api_key=***&x=1"),
        ("url?api-key=abcd1234", "url?api-key=***"),
        ("u?key=AIzaSyA&y=2", "u?key=***&y=2"),
        ("u?token=abcd1234", "u?token=***"),
        ("u?access_token=abcd1234", "u?access_token=***"),
        ("blob?sig=abcdefgh&se=2030", "blob?sig=***&se=2030"),
        ('{"api_key": "abcd1234", "n": 1}', '{"api_key": "***", "n": 1}'),
        ("{'x-api-key': 'zzzz9999'}", "{'x-api-key': '***'}"),
        ("password: hunter22", "password: ***"),
    ],
)
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    """Keys, tokens, URL user-info and key-like fields are masked without a known secret."""
    assert Redactor()(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "monkey=bananas",
        "max_tokens=1000 prompt_tokens: 12",
        "key=abc",
        "skip-this-one and desk-lamp",
        "model openai/gpt-4o at http://a.test/v1",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    """Words that merely contain key-ish letters, and short values, are not masked."""
    assert Redactor()(text) == text


def test_whitespace_is_folded_to_one_line() -> None:
    """Newlines, tabs and runs of spaces become single spaces; ends are trimmed."""
    assert Redactor()("  a\n\n b\t c\r\n  d  ") == "a b c d"


@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_empty_input_gives_an_empty_string(text: str | None) -> None:
    """None, empty and whitespace-only input all give ""."""
    assert Redactor()(text) == ""


def test_long_text_is_cut_to_the_default_limit_with_an_ellipsis() -> None:
    """At most MAX_REASON_CHARS characters, the last one an ellipsis."""
    out = Redactor()("x" * 300)
    assert MAX_REASON_CHARS == 200
    assert out == "x" * 199 + "…"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde…"),
        ("abcdef", 3, "ab…"),
        ("abcdef", 1, "…"),
    ],
)
def test_truncation_respects_the_given_limit(text: str, limit: int, expected: str) -> None:
    """Text within the limit is kept whole; longer text ends in an ellipsis at exactly `limit`."""
    assert Redactor()(text, limit=limit) == expected


def test_a_zero_limit_never_returns_more_than_zero_characters() -> None:
    """The promise is "at most `limit` characters", including the degenerate zero."""
    assert len(Redactor()("abcdef", limit=0)) == 0


def test_truncation_happens_after_masking() -> None:
    """A secret cut by the limit is masked first, so no prefix of it survives."""
    r = redactor("verysecretkey-123456")
    out = r("error: verysecretkey-123456 and more", limit=12)
    assert out == "error: *** …"


SECRET_CHARS = string.ascii_letters + string.digits


@given(
    secret=st.text(alphabet=SECRET_CHARS, min_size=8, max_size=40),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
)
def test_an_added_secret_never_survives_in_any_surrounding_text(
    secret: str, before: str, after: str
) -> None:
    """Whatever text surrounds a configured secret, the output never contains it."""
    out = redactor(secret)(before + secret + after, limit=10_000)
    assert secret not in out


@given(
    secret=st.text(alphabet=SECRET_CHARS, min_size=8, max_size=40),
    text=st.lists(st.sampled_from(["", " ", "\n", "x", "key=", "Bearer ", "@"]), max_size=8),
)
def test_a_secret_repeated_between_noise_never_survives(secret: str, text: list[str]) -> None:
    """Several copies of a secret between noise fragments are all masked."""
    joined = secret.join(text) + secret
    assert secret not in redactor(secret)(joined, limit=10_000)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@API.Example.COM:8443/v1/?key=x#frag", "https://api.example.com:8443/v1"),
        ("HTTP://A.test/v1/", "http://a.test/v1"),
        ("http://a.test/v1", "http://a.test/v1"),
        ("http://a.test/V1//", "http://a.test/V1"),
        ("http://a.test", "http://a.test"),
        ("http://a.test/", "http://a.test"),
        ("http://tok@a.test:80/v1", "http://a.test:80/v1"),
        ("http://[::1]:8000/v1/", "http://[::1]:8000/v1"),
        ("http://[2001:DB8::1]/", "http://[2001:db8::1]"),
        ("https://u:p@[2001:db8::2]:443/x?api-version=1", "https://[2001:db8::2]:443/x"),
        ("  https://a.test/v1  ", "https://a.test/v1"),
    ],
)
def test_public_url_keeps_only_scheme_host_port_and_path(url: str, expected: str) -> None:
    """No user-info, query, fragment or trailing slash; scheme and host lowercased."""
    assert public_url(url) == expected


@pytest.mark.parametrize(("text", "secret"), SECRET_CORPUS)
def test_every_shape_of_the_corpus_is_masked_without_knowing_the_secret(
    text: str, secret: str
) -> None:
    """Real key shapes, URL passwords holding "@", scheme-less user-info and signed URLs."""
    out = Redactor()(text, limit=10_000)
    assert secret not in out
    assert MASK in out


def test_a_url_password_holding_at_signs_is_masked_whole_and_the_host_kept() -> None:
    """The user-info runs to the last "@": no fragment of the password survives."""
    assert Redactor()("GET https://admin:p@ss@word@host.test/v1 failed") == (
        "GET https://***@host.test/v1 failed"
    )


def test_a_scheme_less_url_loses_its_user_info_in_text() -> None:
    """``user:pw@host/v1`` written without a scheme is masked like one with it."""
    assert Redactor()("connect to admin:pw42@host.test/v1 refused") == (
        "connect to ***@host.test/v1 refused"
    )


def test_a_seen_key_of_no_known_shape_is_masked_verbatim() -> None:
    """A key a request brought is struck out wherever the provider echoes it."""
    r = Redactor()
    r.add_seen("tenant-7f3a9b2c4d5e")
    assert r("Invalid credentials tenant-7f3a9b2c4d5e for org o.") == (
        "Invalid credentials *** for org o."
    )


def test_only_the_most_recent_seen_keys_are_kept() -> None:
    """Keys requests bring are bounded: the oldest is dropped, configured ones never are."""
    r = Redactor()
    r.add_secret("configured-key-1")
    for n in range(SEEN_MAX + 1):
        r.add_seen(f"tenant-key-{n:05d}")
    assert r("tenant-key-00000") == "tenant-key-00000"
    assert r(f"tenant-key-{SEEN_MAX:05d}") == MASK
    assert r("configured-key-1") == MASK


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("https://admin:p@ss@word@host.test/v1", ("admin:p@ss@word", "p@ss@word")),
        ("admin:pw%40x1@host.test/v1", ("admin:pw%40x1", "admin:pw@x1", "pw%40x1", "pw@x1")),
        ("http://tokenonly@host.test", ("tokenonly",)),
        ("http://host.test/v1", ()),
        (None, ()),
    ],
)
def test_url_secrets_are_the_user_info_and_the_password(
    url: str | None, secrets: tuple[str, ...]
) -> None:
    """As written and percent-decoded, so an echo of either form is struck out."""
    assert url_secrets(url) == secrets


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("admin:pw@host.test/v1", "host.test/v1"),
        ("admin:p@ss@host.test:8000/v1/", "host.test:8000/v1"),
        ("https://admin:p@ss@word@host.test/v1", "https://host.test/v1"),
    ],
)
def test_public_url_drops_user_info_with_or_without_a_scheme(url: str, expected: str) -> None:
    """No password survives, however the URL is written."""
    assert public_url(url) == expected


PASSWORD_CHARS = string.ascii_letters + string.digits + "@/#?:%!$&'()*+,;=-._~"


@given(
    user=st.text(alphabet=string.ascii_letters + string.digits, max_size=8),
    password=st.text(alphabet=PASSWORD_CHARS, min_size=6, max_size=30),
    scheme=st.sampled_from(["http://", "https://", ""]),
)
def test_no_url_password_survives_public_url_or_the_redactor(
    user: str, password: str, scheme: str
) -> None:
    """Whatever a password holds ("@", "/", "#"...), with or without a scheme: none of it."""
    url = f"{scheme}{user}:{password}@host.test/v1"
    assert password not in public_url(url)
    assert password not in Redactor()(f"GET {url} failed", limit=10_000)
    assert public_url(url).endswith("host.test/v1")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://api.openai.com/v1", "api.openai.com"),
        ("http://u:p@[::1]:8000/v1", "[::1]:8000"),
        ("admin:pw1234@h.example.com/v1", "h.example.com"),
        ("h.example.com:8080", "h.example.com:8080"),
        ("localhost:8080/v1", "localhost:8080"),
    ],
)
def test_the_host_a_name_shows_has_no_user_info_path_or_query(url: str, host: str) -> None:
    """What log lines and tables show next to a deployment's id, with a scheme or without."""
    assert public_url(url, host_only=True) == host
