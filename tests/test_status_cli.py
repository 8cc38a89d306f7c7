"""``litellm-circuit-breaker status``: the fleet's shared breakers, read from a real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from litellm_circuit_breaker import CircuitBreaker
from litellm_circuit_breaker._cli import main
from litellm_circuit_breaker._shared import fetch_records
from tests.redis_harness import RedisServer
from tests.test_shared import (
    eventually,
    plant_bad_records,
    replica,
    replicas,
    trip,
    write_behind_the_channel,
)

MODEL_LIST = [
    {
        "model_name": "chat",
        "litellm_params": {"model": "openai/m", "api_base": "http://a.test/v1", "api_key": "k"},
        "model_info": {"id": "dep-a"},
    }
]


async def _fleet_with_an_outage(url: str, namespace: str) -> None:
    """Replica A opens dep-a after two 503s; B holds dep-b open; C closes dep-c."""
    a = replica("replica-a", url, namespace, model_list=MODEL_LIST)
    b = replica("replica-b", url, namespace)
    async with replicas(a, b):
        trip(a, "dep-a", "ServiceUnavailableError (503): upstream down")
        b.cache.force_open("dep-b", reason="maintenance window")
        trip(b, "dep-c")
        b.cache.mark_healthy("dep-c")
        for _ in range(2000):  # the writes are in the background: wait for all three
            records = {r.deployment: r.state.value for r in await fetch_records(url, namespace)}
            if records == {"dep-a": "open", "dep-b": "open", "dep-c": "closed"}:
                return
            await asyncio.sleep(0.005)
        pytest.fail(f"Redis never held the three records: {records}")


def test_status_prints_every_shared_breaker_with_who_changed_it(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Open, held and closed breakers, their group, failures, trial countdown and replica."""
    asyncio.run(_fleet_with_an_outage(redis_url, namespace))
    code = main(["status", "--redis-url", redis_url, "--namespace", namespace])
    out = capsys.readouterr().out
    assert code == 1  # something is open
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("dep-")}
    # its group, model and host, as replica A knew them from its configuration
    assert lines["dep-a"].split()[:6] == ["dep-a", "chat", "openai/m", "a.test", "open", "2"]
    assert "replica-a" in lines["dep-a"]
    assert "ServiceUnavailableError (503)" in lines["dep-a"], out  # cut to fit 100 columns
    trial_in = int(lines["dep-a"].split()[6].removesuffix("s"))
    assert 55 <= trial_in <= 60
    assert lines["dep-b"].split()[1:7] == ["-", "-", "-", "open", "0", "held"]
    assert "maintenance window" in lines["dep-b"]
    assert lines["dep-c"].split()[4] == "closed"
    assert "replica-b" in lines["dep-c"]
    assert "3 shared breakers" in out
    assert f"namespace {namespace}" in out
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace, "--wide"]) == 1
    assert "ServiceUnavailableError (503): upstream down" in capsys.readouterr().out


def test_status_json_is_machine_readable(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: one object per deployment; a held breaker has retry_in null and held true."""
    asyncio.run(_fleet_with_an_outage(redis_url, namespace))
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace, "--json"]) == 1
    rows = {row["deployment"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["dep-a"]["state"] == "open"
    assert rows["dep-a"]["model_group"] == "chat"
    assert (rows["dep-a"]["model"], rows["dep-a"]["host"]) == ("openai/m", "a.test")
    assert (rows["dep-b"]["model"], rows["dep-b"]["host"]) == (None, None)  # not in B's config
    assert rows["dep-a"]["changed_by"] == "replica-a"
    assert rows["dep-a"]["consecutive_failures"] == 2
    assert 55 <= rows["dep-a"]["retry_in"] <= 60
    assert rows["dep-b"]["held"] is True
    assert rows["dep-b"]["retry_in"] is None
    assert rows["dep-c"]["state"] == "closed"
    assert rows["dep-c"]["retry_in"] == 0


def test_status_fits_100_columns_with_generated_ids_unless_wide(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A LiteLLM-generated id, a long model, host and error: 100 columns, the id
    shortened and said so; --wide shows all of it."""
    generated = "c91a6e8e46690638f8f8ed8587587cef0b6a5c1e1f5120936d81dc4138a19aa0"
    model = "openai/some-organisation/an-extremely-long-fine-tuned-model-name"
    base = "http://gpu-box-7.internal.example.com:11434/v1"
    error = "ServiceUnavailableError (503): " + "the upstream is down for maintenance " * 3

    async def outage() -> None:
        model_list = [
            {
                "model_name": "a-long-model-group",
                "litellm_params": {"model": model, "api_base": base, "api_key": "k"},
                "model_info": {"id": generated},
            }
        ]
        a = replica("replica-with-a-long-name", redis_url, namespace, model_list=model_list)
        async with replicas(a):
            trip(a, generated, error)
            for _ in range(2000):
                if [r.deployment for r in await fetch_records(redis_url, namespace)]:
                    return
                await asyncio.sleep(0.005)
            pytest.fail("Redis never held the record")

    asyncio.run(outage())
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace]) == 1
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100, out
    row = next(line for line in out.splitlines() if line.startswith(generated[:10]))
    assert row.split()[0] == generated[:10] + "…"
    assert "gpu-box-7" in row
    assert "open" in row.split()
    assert "ids shortened: --wide shows them whole" in out
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace, "--wide"]) == 1
    wide = capsys.readouterr().out
    assert generated in wide
    assert model in wide
    assert "gpu-box-7.internal.example.com:11434" in wide
    assert wide.splitlines()[0].split()[-3:] == ["CHANGED", "LAST", "ERROR"]
    assert "0s ago" in wide  # when it changed: --wide only
    assert "ago" not in out


def test_status_cuts_long_readable_ids_and_escapes_what_a_record_holds(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Readable ids the README recommends, but long: still 100 columns, said so; control
    characters from a record (escape sequences, a newline) are shown, never sent raw."""
    long_ids = [f"azure-gpt-4o-westeurope-production-{n}" for n in ("primary", "secondary")]
    for dep_id in long_ids:
        asyncio.run(
            write_behind_the_channel(redis_url, namespace, id=dep_id, state="open", open_in=30_000)
        )
    asyncio.run(
        write_behind_the_channel(
            redis_url,
            namespace,
            id="ansi",
            state="open",
            open_in=30_000,
            reason="evil\x1b[2J",
            model="m\nx",
        )
    )
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 100, out
    assert "\x1b" not in out
    assert "evil\\x1b[2J" in out
    assert "m\\x0ax" in out
    assert sum(line.startswith("ansi ") for line in lines) == 1  # one row, not two
    assert "ids shortened: --wide shows them whole" in lines
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace, "--wide"]) == 1
    wide = capsys.readouterr().out
    assert all(dep_id in wide for dep_id in long_ids)


def test_status_of_an_empty_namespace_exits_zero(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing shared yet: a plain sentence and exit 0."""
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace]) == 0
    assert "no shared breakers" in capsys.readouterr().out


def test_status_without_redis_fails_clearly_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens: exit 2, a message naming the host, never the password."""
    silent = RedisServer(tmp_path)  # never started
    url = f"redis://:pw-never-shown@127.0.0.1:{silent.port}/0"
    assert main(["status", "--redis-url", url]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{silent.port}" in err
    assert "did not answer" in err
    assert "pw-never-shown" not in err
    assert main(["status", "--redis-url", "http://:pw-never-shown@x"]) == 2
    err = capsys.readouterr().err
    assert "redis_url" in err
    assert "pw-never-shown" not in err


def test_status_without_a_url_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --redis-url and no CIRCUIT_BREAKER_REDIS_URL: exit 2 naming both."""
    monkeypatch.delenv("CIRCUIT_BREAKER_REDIS_URL", raising=False)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "--redis-url" in err
    assert "CIRCUIT_BREAKER_REDIS_URL" in err


def test_status_reads_the_url_from_the_environment(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed command, with CIRCUIT_BREAKER_REDIS_URL set and no flag."""
    cb = CircuitBreaker(
        redis_url=redis_url, redis_namespace=namespace, replica_name="env", probe_interval=None
    )

    async def one_outage() -> None:
        async with cb:
            trip(cb, "dep-env")
            await eventually(lambda: cb.shared is not None and cb.shared.pushed == 1, "pushed")

    asyncio.run(one_outage())
    command = Path(sys.executable).with_name("litellm-circuit-breaker")
    env = {"CIRCUIT_BREAKER_REDIS_URL": redis_url, "CIRCUIT_BREAKER_REDIS_NAMESPACE": namespace}
    monkeypatch.delenv("CIRCUIT_BREAKER_REDIS_URL", raising=False)
    done = subprocess.run(  # noqa: S603 - our own console script
        [str(command), "status"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "dep-env" in done.stdout
    assert "env" in done.stdout


def test_the_status_formatter_needs_only_the_record_format() -> None:
    """Importing ``_status`` loads the record format, not the Redis adapter nor redis-py."""
    code = (
        "import sys, litellm_circuit_breaker._status\n"
        "ours = ('redis', 'litellm_circuit_breaker.')\n"
        "print(sorted(m for m in sys.modules if m.startswith(ours)))"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed snippet
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = done.stdout.strip()
    assert "litellm_circuit_breaker._records" in loaded
    assert "litellm_circuit_breaker._shared" not in loaded
    assert "'redis" not in loaded


def test_status_shows_unreadable_records_as_rows(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad records are rows naming the problem; the readable ones are listed beside them."""
    asyncio.run(plant_bad_records(redis_url, namespace))
    asyncio.run(
        write_behind_the_channel(redis_url, namespace, id="good", state="open", open_in=30_000)
    )
    code = main(["status", "--redis-url", redis_url, "--namespace", namespace])
    out = capsys.readouterr().out
    assert code == 1  # "good" is open; Redis answered
    rows = {line.split()[0]: line for line in out.splitlines() if line and line[0].islower()}
    assert rows["good"].split()[4] == "open"
    assert rows["latin-1"].split()[4] == "closed"
    for bad in ("nan-window", "inf-version", "wrong-type"):
        assert rows[bad].split()[4] == "unreadable", rows[bad]
    assert "open_until" in rows["nan-window"]
    assert "WRONGTYPE" in rows["wrong-type"]
    assert "3 unreadable" in out
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace, "--json"]) == 1
    by_id = {row["deployment"]: row for row in json.loads(capsys.readouterr().out)}
    assert by_id["wrong-type"]["state"] == "unreadable"
    assert "WRONGTYPE" in by_id["wrong-type"]["problem"]
    assert by_id["good"]["problem"] is None


def test_status_json_failures_print_a_json_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --json, a script reading stdout gets a JSON error, never the password, exit 2."""
    silent = RedisServer(tmp_path)  # never started
    url = f"redis://:pw-never-shown@127.0.0.1:{silent.port}/0"
    monkeypatch.delenv("CIRCUIT_BREAKER_REDIS_URL", raising=False)
    for argv, words in [
        (["status", "--json", "--redis-url", url], "did not answer"),
        (["status", "--json", "--redis-url", "http://:pw-never-shown@x"], "redis_url"),
        (["status", "--json"], "--redis-url"),
    ]:
        assert main(argv) == 2
        out = capsys.readouterr().out
        error = json.loads(out)["error"]
        assert words in error
        assert "pw-never-shown" not in out
