"""The ``litellm-circuit-breaker check`` command against real fake providers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
import yaml

from litellm_circuit_breaker._cli import _message_of, main
from litellm_circuit_breaker.testing import FakeProvider
from tests.proxy_harness import running_proxy

SCRIPT = Path(sys.executable).parent / "litellm-circuit-breaker"
KEY = "sk-cli-test-key-0123456789"
# No known key shape: only the exact-value layer of the redactor can catch it.
PLAIN_KEY = "zz-plain-credential-7391"
KEY_ENVS = ("OPENAI_API_KEY", "AZURE_API_KEY", "ANTHROPIC_API_KEY")


@pytest.fixture(autouse=True)
def no_provider_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own keys must not leak into these tests."""
    for name in KEY_ENVS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    """A healthy fake provider serving from its own thread."""
    with FakeProvider() as p:
        yield p


def entry(
    dep_id: str, api_base: str | None, key: str | None = KEY, group: str = "chat"
) -> dict[str, Any]:
    """A model_list entry for an OpenAI-compatible deployment with a fixed id."""
    params: dict[str, Any] = {"model": "openai/fake-model"}
    if api_base is not None:
        params["api_base"] = api_base
    if key is not None:
        params["api_key"] = key
    return {"model_name": group, "litellm_params": params, "model_info": {"id": dep_id}}


BEDROCK = {
    "model_name": "claude",
    "litellm_params": {"model": "bedrock/anthropic.claude-v2", "aws_region_name": "us-east-1"},
    "model_info": {"id": "bedrock"},
}


def write_config(tmp_path: Path, model_list: list[dict[str, Any]]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": model_list}), encoding="utf-8")
    return path


def check_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model_list: list[dict[str, Any]], *args: str
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run ``check --json`` in-process: the exit status and the rows by deployment id."""
    code = main(["check", str(write_config(tmp_path, model_list)), "--json", *args])
    rows = json.loads(capsys.readouterr().out)
    return code, {row["deployment"]: row for row in rows}


def test_healthy_endpoint_is_up_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """A provider answering its model list is up, with a latency and no error."""
    code, rows = check_json(tmp_path, capsys, [entry("a", provider.base_url)])
    assert code == 0
    assert rows["a"]["result"] == "up"
    assert rows["a"]["error"] is None
    assert rows["a"]["latency_ms"] >= 0
    assert provider.calls("models") == 1
    assert provider.calls("chat") == 0


def test_json_rows_have_the_stable_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """Every JSON row carries exactly the documented keys, in config order."""
    path = write_config(tmp_path, [entry("a", provider.base_url), BEDROCK])
    assert main(["check", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["deployment"] for row in rows] == ["a", "bedrock"]
    keys = [
        *("deployment", "model_group", "model", "host", "endpoint"),
        *("probe", "result", "latency_ms", "error"),
    ]
    assert all(list(row) == keys for row in rows)
    assert rows[0]["endpoint"] == provider.base_url
    assert rows[0]["model"] == "openai/fake-model"
    assert rows[0]["host"] == provider.base_url.removeprefix("http://").removesuffix("/v1")
    assert rows[0]["probe"] == "openai-models"
    assert rows[0]["model_group"] == "chat"


def test_erroring_endpoint_is_down_with_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """A 503 makes the deployment DOWN, shows the provider's message, and exits 1."""
    provider.error(503)
    code, rows = check_json(tmp_path, capsys, [entry("a", provider.base_url)])
    assert code == 1
    assert rows["a"]["result"] == "down"
    assert rows["a"]["error"] == "HTTP 503: fake provider error: 503 Service Unavailable"


def test_refusing_endpoint_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """A refused connection makes the deployment DOWN, naming the connect error."""
    provider.refuse()
    code, rows = check_json(tmp_path, capsys, [entry("a", provider.base_url)])
    assert code == 1
    assert rows["a"]["result"] == "down"
    assert rows["a"]["error"].startswith("ConnectError")


def test_hanging_endpoint_is_down_after_the_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """An endpoint that never answers is DOWN once --timeout has passed."""
    provider.hang()
    code, rows = check_json(tmp_path, capsys, [entry("a", provider.base_url)], "--timeout", "0.3")
    assert code == 1
    assert rows["a"]["result"] == "down"
    assert rows["a"]["error"] == "no answer within 0.3s"
    assert rows["a"]["latency_ms"] >= 250


def test_endpoint_without_a_model_list_is_unprobed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """A 404 on the list call means no cheap probe: unprobed, and not a failure."""
    base = f"http://127.0.0.1:{provider.port}/nope"
    code, rows = check_json(tmp_path, capsys, [entry("a", base)])
    assert code == 0
    assert rows["a"]["result"] == "unprobed"
    assert rows["a"]["error"] == "HTTP 404: Unknown request URL: GET /nope/models"


def test_rate_limited_endpoint_gives_no_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """A 429 says the endpoint is alive but not whether it works: no verdict, exit 0."""
    provider.rate_limit()
    code, rows = check_json(tmp_path, capsys, [entry("a", provider.base_url)])
    assert code == 0
    assert rows["a"]["result"] == "no verdict"
    assert rows["a"]["error"].startswith("HTTP 429")


def test_provider_without_a_probe_is_passive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bedrock deployment has no cheap probe: passive, with no endpoint or latency."""
    code, rows = check_json(tmp_path, capsys, [BEDROCK])
    assert code == 0
    assert rows["bedrock"] == {
        "deployment": "bedrock",
        "model_group": "claude",
        "model": "bedrock/anthropic.claude-v2",
        "host": None,
        "endpoint": None,
        "probe": None,
        "result": "passive",
        "latency_ms": None,
        "error": None,
    }


def test_api_key_and_base_are_read_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.environ/NAME`` values are resolved as the proxy does, api_base included."""
    with FakeProvider(require_api_key=PLAIN_KEY) as p:
        monkeypatch.setenv("CLI_TEST_KEY", PLAIN_KEY)
        monkeypatch.setenv("CLI_TEST_BASE", p.base_url)
        model_list = [entry("a", "os.environ/CLI_TEST_BASE", "os.environ/CLI_TEST_KEY")]
        code, rows = check_json(tmp_path, capsys, model_list)
        assert code == 0
        assert rows["a"]["result"] == "up"
        assert rows["a"]["endpoint"] == p.base_url

        monkeypatch.setenv("CLI_TEST_KEY", "zz-some-other-credential")
        code, rows = check_json(tmp_path, capsys, model_list)
        assert code == 1
        assert rows["a"]["error"] == "HTTP 401: Incorrect API key provided"


def test_deployments_sharing_endpoint_and_key_share_one_probe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """One request per endpoint and key; its result is shown on every deployment using it."""
    model_list = [
        entry("a1", provider.base_url, group="chat"),
        entry("a2", provider.base_url, group="chat-mini"),
        entry("b", provider.base_url, key="sk-cli-other-key-9876543210"),
    ]
    code, rows = check_json(tmp_path, capsys, model_list)
    assert code == 0
    assert provider.calls("models") == 2
    assert {rows[d]["result"] for d in ("a1", "a2", "b")} == {"up"}


def test_one_down_deployment_among_healthy_ones_exits_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """Each deployment gets its own endpoint's result; any DOWN makes the exit status 1."""
    with FakeProvider() as broken:
        broken.error(502)
        model_list = [entry("good", provider.base_url), entry("bad", broken.base_url), BEDROCK]
        code, rows = check_json(tmp_path, capsys, model_list)
    assert code == 1
    assert [rows[d]["result"] for d in ("good", "bad", "bedrock")] == ["up", "down", "passive"]


def test_a_malformed_api_base_is_a_configuration_error_row_and_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """No traceback: the bad one is a row saying what is wrong, the rest are checked."""
    model_list = [entry("good", provider.base_url), entry("bad", "http://u:pw@[::1:8000/v1")]
    code = main(["check", str(write_config(tmp_path, model_list)), "--json"])
    out = capsys.readouterr()
    rows = {row["deployment"]: row for row in json.loads(out.out)}
    assert code == 2
    assert rows["good"]["result"] == "up"
    assert rows["bad"]["result"] == "config error"
    assert "not a valid URL" in rows["bad"]["error"]
    assert "pw" not in out.out + out.err
    assert "Traceback" not in out.err


def test_table_lists_every_deployment_with_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """Without --json: a header, one aligned line per deployment, a tally and notes."""
    path = write_config(tmp_path, [entry("a", provider.base_url), BEDROCK])
    assert main(["check", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    host = provider.base_url.removeprefix("http://").removesuffix("/v1")
    assert lines[0].split() == ["DEPLOYMENT", "GROUP", "MODEL", "HOST", "RESULT", "MS", "ERROR"]
    assert lines[1].split()[:5] == ["a", "chat", "openai/fake-model", host, "up"]
    assert lines[2].split() == [
        *("bedrock", "claude", "bedrock/anthropic.claude-v2", "-", "passive", "-")
    ]
    assert lines[0].index("RESULT") == lines[1].index("up") == lines[2].index("passive")
    assert "2 deployments: 1 up, 1 passive" in lines
    assert any(line.startswith("passive: ") for line in lines)
    assert not any("--wide" in line for line in lines), "no id was shortened"
    assert main(["check", str(path), "--wide"]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert wide[0].split() == [
        *("DEPLOYMENT", "MODEL", "GROUP", "MODEL", "ENDPOINT", "PROBE", "RESULT", "LATENCY"),
        *("MS", "ERROR"),
    ]
    assert wide[1].split()[:6] == [
        *("a", "chat", "openai/fake-model", provider.base_url, "openai-models", "up")
    ]


def test_table_fits_100_columns_with_generated_ids_and_long_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LiteLLM's 64-hex ids, long model names, hosts and errors: still 100 columns, each
    row still names its group, model and host; --wide shows the whole id."""
    long_base = "http://127.0.0.1:9/a-very-long-path-prefix-for-the-gateway/v1"
    model_list = [
        {
            "model_name": "a-rather-long-model-group-name",
            "litellm_params": {
                "model": "openai/some-organisation/an-extremely-long-fine-tuned-model-name",
                "api_base": long_base,
                "api_key": KEY,
            },
        },
        {
            "model_name": "b",
            "litellm_params": {"model": "openai/m", "api_base": long_base, "api_key": PLAIN_KEY},
        },
    ]
    path = write_config(tmp_path, model_list)
    assert main(["check", str(path), "--json", "--timeout", "1"]) == 1
    ids = [row["deployment"] for row in json.loads(capsys.readouterr().out)]
    assert all(len(i) == 64 for i in ids), "LiteLLM generated the ids"
    assert main(["check", str(path), "--timeout", "1"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 100, out
    assert lines[1].startswith(ids[0][:10] + "…")
    assert lines[1].split()[1].startswith("a-rather-lo")
    assert "127.0.0.1:9" in lines[1]
    assert "DOWN" in lines[1]
    assert lines[2].split()[:5] == [ids[1][:10] + "…", "b", "openai/m", "127.0.0.1:9", "DOWN"]
    assert "ids shortened: --wide shows them whole, with endpoints and probes" in lines
    assert KEY not in out
    assert PLAIN_KEY not in out
    assert main(["check", str(path), "--wide", "--timeout", "1"]) == 1
    wide = capsys.readouterr().out
    assert ids[0] in wide
    assert long_base in wide
    assert "openai/some-organisation/an-extremely-long-fine-tuned-model-name" in wide


def test_key_echoed_in_an_error_body_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """A provider quoting the configured key back never gets it printed, table or JSON."""
    provider.error(503, message=f"upstream refused credential {PLAIN_KEY} for this model")
    path = write_config(tmp_path, [entry("a", provider.base_url, key=PLAIN_KEY)])
    assert main(["check", str(path)]) == 1
    assert main(["check", str(path), "--json"]) == 1
    out = capsys.readouterr().out
    assert PLAIN_KEY not in out
    assert "upstream refused credential *** for this model" in out


def test_key_echoed_in_an_exception_message_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """A key httpx refuses to send (stray whitespace) is quoted by httpx; it is masked."""
    bad_key = f"{PLAIN_KEY} "
    code, rows = check_json(tmp_path, capsys, [entry("a", provider.base_url, key=bad_key)])
    assert code == 1
    assert rows["a"]["error"].startswith("LocalProtocolError: Illegal header value")
    assert PLAIN_KEY not in json.dumps(rows)
    assert provider.calls() == 0


def test_missing_file_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config that does not exist is a usage error naming the file."""
    missing = tmp_path / "missing.yaml"
    assert main(["check", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"cannot read {missing}: No such file or directory" in captured.err


def test_invalid_yaml_exits_two_without_quoting_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Broken YAML names the line, but never echoes it: it may hold a key."""
    path = tmp_path / "config.yaml"
    path.write_text(f'model_list:\n  - api_key: "{KEY}\n', encoding="utf-8")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path} is not valid YAML" in err
    assert "line 3" in err
    assert KEY not in err


def test_unreadable_config_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory, or a file that is not UTF-8, is a usage error saying so."""
    assert main(["check", str(tmp_path)]) == 2
    assert f"cannot read {tmp_path}: Is a directory" in capsys.readouterr().err
    path = tmp_path / "config.yaml"
    path.write_bytes(b"model_list: [\xff]\n")
    assert main(["check", str(path)]) == 2
    assert f"cannot read {path}: not UTF-8 text" in capsys.readouterr().err


def test_forbidden_character_in_yaml_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A control character YAML rejects is reported by position."""
    path = tmp_path / "config.yaml"
    path.write_text("model_list: [\x07]\n", encoding="utf-8")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path} is not valid YAML: special characters are not allowed at character 14" in err


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (b'{"error": {"message": "model list is down", "type": "x"}}', "model list is down"),
        (b'{"error": "quota exhausted"}', "quota exhausted"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"status": "bad"}', '{"status": "bad"}'),
        (b"upstream connect error", "upstream connect error"),
        (b"<html><body>502 Bad Gateway</body></html>", None),
        (b"  ", None),
    ],
)
def test_error_body_message_is_picked_out(body: bytes, shown: str | None) -> None:
    """The error column shows a JSON body's message, short text as it is, HTML not at all."""
    assert _message_of(body) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("general_settings: {}\n", "has no model_list"),
        ("", "has no model_list"),
        ("- just\n- a list\n", "has no model_list"),
        ("model_list: []\n", "model_list is empty"),
        (f"model_list: {{api_key: {KEY}}}\n", "model_list is a dict"),
        ("model_list: [oops]\n", "model_list[0] is not a mapping"),
        ("model_list: [{model_name: x}]\n", "model_list[0] needs model_name and litellm_params"),
    ],
)
def test_config_without_usable_model_list_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    """A config with no deployments to check is a usage error saying what is missing."""
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert KEY not in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["check"],
        ["check", "c.yaml", "--timeout", "0"],
        ["check", "c.yaml", "--timeout", "soon"],
        ["check", "c.yaml", "-x"],
    ],
)
def test_usage_errors_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Argparse's usage errors come back as exit status 2, not an exception."""
    assert main(argv) == 2
    assert "usage: litellm-circuit-breaker" in capsys.readouterr().err


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints the installed distribution's version and exits 0."""
    from importlib.metadata import version  # noqa: PLC0415

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"litellm-circuit-breaker {version('litellm-circuit-breaker')}"
    )


def test_installed_console_script_checks_a_config(tmp_path: Path, provider: FakeProvider) -> None:
    """The console script pip installed runs ``check`` end to end in its own process."""
    assert SCRIPT.exists(), f"run pip install -e . to create {SCRIPT}"
    provider.error(503)
    path = write_config(tmp_path, [entry("a", provider.base_url), BEDROCK])
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(  # noqa: S603 - our own script, arguments from the test
        [str(SCRIPT), "check", str(path), "--json", "--timeout", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    rows = json.loads(done.stdout)
    assert [(row["deployment"], row["result"]) for row in rows] == [
        ("a", "down"),
        ("bedrock", "passive"),
    ]
    assert KEY not in done.stdout + done.stderr


# -- configs read as the proxy reads them ------------------------------------------


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def run_json(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["check", str(path), "--json"])
    return code, {row["deployment"]: row for row in json.loads(capsys.readouterr().out)}


def test_deployments_in_included_files_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """``include:`` files are merged as LiteLLM merges them: lists extended, nested includes."""
    write_yaml(tmp_path / "models" / "more.yaml", {"model_list": [entry("c", provider.base_url)]})
    write_yaml(
        tmp_path / "models" / "chat.yaml",
        {"include": ["more.yaml"], "model_list": [entry("b", provider.base_url)]},
    )
    main_path = write_yaml(
        tmp_path / "config.yaml",
        {"include": ["models/chat.yaml"], "model_list": [entry("a", provider.base_url)]},
    )
    code, rows = run_json(main_path, capsys)
    assert code == 0
    assert list(rows) == ["a", "b", "c"]
    assert {row["result"] for row in rows.values()} == {"up"}


def test_a_config_of_includes_only_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """A root config whose model_list lives wholly in an included file is no usage error."""
    write_yaml(tmp_path / "models.yaml", {"model_list": [entry("a", provider.base_url)]})
    code, rows = run_json(
        write_yaml(tmp_path / "config.yaml", {"include": ["models.yaml"]}), capsys
    )
    assert code == 0
    assert rows["a"]["result"] == "up"


@pytest.mark.parametrize(
    ("included", "message"),
    [
        (None, "cannot read included file {models}: No such file or directory"),
        ("- a\n- list\n", "included file {models} is a YAML list, expected a mapping"),
        (f"model_list: [{{api_key: {KEY}\n", "included file {models} is not valid YAML"),
    ],
)
def test_an_unusable_included_file_exits_two_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], included: str | None, message: str
) -> None:
    """A missing, broken or non-mapping include is a usage error naming that file, no key."""
    models = tmp_path / "models.yaml"
    if included is not None:
        models.write_text(included, encoding="utf-8")
    path = write_yaml(tmp_path / "config.yaml", {"include": ["models.yaml"]})
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert message.format(models=models) in captured.err
    assert KEY not in captured.err
    assert captured.out == ""


def test_include_that_is_no_list_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LiteLLM's own complaint about a malformed ``include:``, naming the file."""
    path = write_yaml(tmp_path / "config.yaml", {"include": "models.yaml", "model_list": []})
    assert main(["check", str(path)]) == 2
    assert f"{path}: 'include' must be a list of file paths" in capsys.readouterr().err


def test_environment_variables_block_gives_the_provider_default_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key set in ``environment_variables:`` is the one sent for a deployment without one."""
    with FakeProvider(require_api_key=PLAIN_KEY) as p:
        path = write_yaml(
            tmp_path / "config.yaml",
            {
                "environment_variables": {"OPENAI_API_KEY": PLAIN_KEY},
                "model_list": [entry("a", p.base_url, key=None)],
            },
        )
        code, rows = run_json(path, capsys)
    assert (code, rows["a"]["result"]) == (0, "up")
    assert "OPENAI_API_KEY" not in os.environ, "the block must not outlive the check"


def test_unset_variable_is_a_configuration_error_naming_it_and_nothing_is_probed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    provider: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unset ``os.environ/`` value is a row naming it; the default host is never called."""
    monkeypatch.delenv("CLI_UNSET_BASE", raising=False)
    monkeypatch.setenv("CLI_EMPTY_KEY", "")
    model_list = [
        entry("good", provider.base_url),
        entry("unset", "os.environ/CLI_UNSET_BASE"),
        entry("empty", provider.base_url, key="os.environ/CLI_EMPTY_KEY"),
    ]
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        elsewhere = mock.route().respond(200, json={"data": []})
        code, rows = check_json(tmp_path, capsys, model_list)
    assert code == 2
    assert not elsewhere.called, "a host the config did not name was probed"
    assert provider.calls("models") == 1
    assert rows["good"]["result"] == "up"
    assert rows["unset"] == {
        **rows["unset"],
        "result": "config error",
        "endpoint": None,
        "probe": None,
        "error": "api_base: os.environ/CLI_UNSET_BASE is not set",
    }
    assert rows["empty"]["result"] == "config error"
    assert rows["empty"]["error"] == "api_key: os.environ/CLI_EMPTY_KEY is empty"


def test_variable_only_the_environment_variables_block_sets_is_an_error_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """The proxy reads model_list's ``os.environ/`` values before it applies the block."""
    path = write_yaml(
        tmp_path / "config.yaml",
        {
            "environment_variables": {"CLI_LATE_BASE": provider.base_url},
            "model_list": [entry("late", "os.environ/CLI_LATE_BASE")],
        },
    )
    code, rows = run_json(path, capsys)
    assert code == 2
    assert provider.calls("models") == 0
    assert rows["late"]["result"] == "config error"
    assert rows["late"]["error"].startswith(
        "api_base: os.environ/CLI_LATE_BASE is not set when the proxy reads model_list "
        "(environment_variables: sets it only afterwards"
    )


def test_environment_variables_that_is_no_mapping_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The block must map names to values; the error names it and its type."""
    path = write_yaml(
        tmp_path / "config.yaml",
        {"environment_variables": ["OPENAI_API_KEY"], "model_list": [entry("a", None)]},
    )
    assert main(["check", str(path)]) == 2
    assert (
        f"{path}: environment_variables is a list, expected a mapping of names to values"
        in capsys.readouterr().err
    )


def test_check_agrees_with_where_the_real_proxy_sends_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One config, includes and environment_variables: check and the proxy read it alike."""
    with (
        FakeProvider(require_api_key=PLAIN_KEY) as keyed,
        FakeProvider() as late,
        FakeProvider() as default_host,
    ):
        # Where the proxy sends a deployment whose api_base resolved to None.
        monkeypatch.setenv("OPENAI_API_BASE", default_host.base_url)
        included = {
            "model_list": [
                entry("keyed", keyed.base_url, key=None, group="keyed"),
                entry("late", "os.environ/CLI_LATE_BASE", group="late"),
            ]
        }
        write_yaml(tmp_path / "models.yaml", included)
        config = {
            "include": ["models.yaml"],
            "environment_variables": {"OPENAI_API_KEY": PLAIN_KEY, "CLI_LATE_BASE": late.base_url},
            "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        }
        path = write_yaml(tmp_path / "config.yaml", config)
        code, rows = run_json(path, capsys)
        assert code == 2
        assert rows["keyed"]["result"] == "up", "the block's OPENAI_API_KEY was not sent"
        assert rows["late"]["result"] == "config error"
        assert "os.environ/CLI_LATE_BASE" in rows["late"]["error"]
        assert late.calls() == default_host.calls() == 0

        with running_proxy(path.read_text(), tmp_path, {}) as proxy:
            assert proxy.chat("keyed").status_code == 200
            assert proxy.chat("late").status_code == 200
        assert keyed.calls("chat") == 1
        assert late.calls("chat") == 0, "the proxy did read the block before model_list"
        assert default_host.calls("chat") == 1


def test_the_summary_says_one_deployment_not_one_deployments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """Grammar of the tally line for a single deployment."""
    assert main(["check", str(write_config(tmp_path, [entry("a", provider.base_url)]))]) == 0
    assert "1 deployment: 1 up" in capsys.readouterr().out.splitlines()


def test_json_results_are_lower_case_and_the_table_shows_down_in_capitals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: FakeProvider
) -> None:
    """One case in JSON (``down`` like ``up``); the table still makes DOWN stand out."""
    provider.error(503)
    path = write_config(tmp_path, [entry("a", provider.base_url), BEDROCK])
    code, rows = check_json(tmp_path, capsys, [entry("a", provider.base_url), BEDROCK])
    assert code == 1
    assert all(row["result"] == row["result"].lower() for row in rows.values())
    assert rows["a"]["result"] == "down"
    assert main(["check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[4] == "DOWN"
    assert "2 deployments: 1 DOWN, 1 passive" in lines


def test_check_json_on_an_unusable_config_prints_a_json_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check --json`` with a broken config: exit 2 and a JSON error on stdout."""
    missing = tmp_path / "missing.yaml"
    assert main(["check", str(missing), "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error == f"cannot read {missing}: No such file or directory"
