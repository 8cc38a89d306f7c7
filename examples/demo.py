"""A scripted outage through the real LiteLLM proxy, without and with the circuit breaker.

Three fake OpenAI-compatible providers run on loopback (``primary`` and
``secondary`` serve the model group ``chat``, ``fallback`` serves
``chat-fallback``). The real ``litellm`` proxy runs ``examples/proxy/config.yaml``
as it is; the ``openai`` client sends a steady stream of requests through it
while a script breaks the primary (503s, a hang, refused connections) and
heals it. A live table shows every deployment's traffic and breaker state, and
each breaker transition is printed as the proxy logs it. The same script then
runs against the same config without the ``callbacks`` line (LiteLLM's
defaults), and a table compares the two runs.

Then streams, through a LiteLLM ``Router`` in this process (app code, where the
first-token deadline lives), with and without the breaker: a primary that hangs
after a healthy streaming history (when does the user see the fallback's first
token, how many calls reach the dead primary), and a primary 1.5 s slow to its
first token from the first call (never cut off). These run on real time: the
deadline is the attempt's own read timeout.

    .venv/bin/python examples/demo.py            # about two and a half minutes
    .venv/bin/python examples/demo.py --quick    # shorter proxy phases, for the tests

No keys, no internet. Everything it starts (proxies, providers, threads) is
stopped before it exits, also on Ctrl-C. Exit code 0 when both runs completed
and the breaker kept the dead primary to its threshold (plus a small allowance
for requests already in flight when it opened), and with the breaker the hung
primary's streams went to the fallback within that threshold while the slow one
answered every stream under its learned deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx
import openai
import yaml

from litellm_circuit_breaker.testing import FakeProvider, free_port, stop_process_group

EXAMPLES = Path(__file__).resolve().parent
CONFIG = EXAMPLES / "proxy" / "config.yaml"
PLUGIN_LINE = re.compile(
    r'^\s*callbacks:\s*\["litellm_circuit_breaker\.proxy\.breaker"\]\s*\n', re.M
)
DEPLOYMENTS = ("primary", "secondary", "fallback")

# Shortened windows so an outage plays out in seconds; the defaults are 2/60/30/3.
BREAKER_ENV = {
    "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2",
    "CIRCUIT_BREAKER_BACKOFF_SEC": "10",
    "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "2",
    "CIRCUIT_BREAKER_PROBE_TIMEOUT_SEC": "3",
}
THRESHOLD = int(BREAKER_ENV["CIRCUIT_BREAKER_FAILURE_THRESHOLD"])
# Requests already on their way to the primary when the breaker opens may still land.
IN_FLIGHT_ALLOWANCE = 2

RATE_PER_SEC = 5.0
CLIENT_TIMEOUT_SEC = 30.0  # above the proxy's 5 s per attempt times LiteLLM's 3 attempts
STARTUP_TIMEOUT_SEC = 120.0
SLOW_SEC = 1.0  # a request slower than this waited on a dead provider
STATUS_EVERY_SEC = 5.0  # how often a compact status line is printed when not on a terminal

# Only the breaker's own logger is shown, at INFO: it writes one line per transition.
# The proxy's other loggers keep their defaults (warnings and errors only).
PROXY_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(name)s %(levelname)s: %(message)s"}},
    "handlers": {
        "out": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "litellm_circuit_breaker": {"level": "INFO", "handlers": ["out"], "propagate": False}
    },
}
TRANSITION = re.compile(
    # "deployment ID (group: model at host) what happened": the name is in the table.
    r"^litellm_circuit_breaker \w+: deployment (\S+)(?: \([^()]*\))? (.*)$"
)


# -- the script ---------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """At ``at`` seconds into a run, put the primary in ``mode``."""

    at: float
    mode: str
    says: str


@dataclass(frozen=True)
class Script:
    steps: tuple[Step, ...]
    ends_at: float

    @property
    def breaks_at(self) -> float:
        return next(s.at for s in self.steps if s.mode != "healthy")

    @property
    def heals_at(self) -> float:
        return next(s.at for s in self.steps if s.at > self.breaks_at and s.mode == "healthy")


def make_script(quick: bool) -> Script:
    # The hang comes after the 503s on purpose: once the breaker is open it keeps
    # traffic off a hung provider, while with LiteLLM's defaults each request
    # sent there waits out the full request timeout. A breaker cannot learn of a
    # hang faster than the timeout, so a hang as the first symptom costs more.
    phases = [
        (3.0 if quick else 4.0, "healthy", "all three providers healthy"),
        (4.0 if quick else 8.0, "503", "primary answers 503 Service Unavailable"),
        (6.0 if quick else 12.0, "hang", "primary hangs: accepts requests, never answers"),
        (3.0 if quick else 5.0, "refuse", "primary down: connections refused"),
        (6.0 if quick else 8.0, "healthy", "primary healed"),
    ]
    steps, at = [], 0.0
    for duration, mode, says in phases:
        steps.append(Step(at, mode, says))
        at += duration
    return Script(tuple(steps), ends_at=at)


def apply_mode(provider: FakeProvider, mode: str) -> None:
    if mode == "healthy":
        provider.healthy()
    elif mode == "503":
        provider.error(503)
    elif mode == "hang":
        provider.hang()
    elif mode == "refuse":
        provider.refuse()
    else:
        raise ValueError(f"mode={mode!r} is invalid")


# -- fake providers and the proxy ----------------------------------------------


@dataclass
class Fleet:
    """The three fake providers and the made-up keys the proxy must send them."""

    providers: dict[str, FakeProvider]
    keys: dict[str, str]
    modes: dict[str, str] = field(default_factory=lambda: dict.fromkeys(DEPLOYMENTS, "healthy"))

    def env(self) -> dict[str, str]:
        """The DEMO_* variables ``examples/proxy/config.yaml`` reads."""
        env = {}
        for name, provider in self.providers.items():
            env[f"DEMO_{name.upper()}_BASE"] = provider.base_url
            env[f"DEMO_{name.upper()}_KEY"] = self.keys[name]
        return env


@contextlib.contextmanager
def running_fleet() -> Iterator[Fleet]:
    keys = {name: f"sk-demo-{name}-{secrets.token_hex(8)}" for name in DEPLOYMENTS}
    providers: dict[str, FakeProvider] = {}
    try:
        for name in DEPLOYMENTS:
            # A wrong key would get a 401: proof the proxy resolved os.environ/ as configured.
            provider = FakeProvider(record=True, require_api_key=keys[name], reply=f"from {name}")
            providers[name] = provider.start_in_thread()
        yield Fleet(providers, keys)
    finally:
        for provider in providers.values():
            provider.stop()


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def proxy_env(extra: dict[str, str], master_key: str) -> dict[str, str]:
    # Settings from the caller's shell must not change the demo's story.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CIRCUIT_BREAKER_", "LITELLM_"))
    }
    env |= {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at import
        "LITELLM_MASTER_KEY": master_key,
        "PYTHONUNBUFFERED": "1",
    }
    return env | extra


@contextlib.contextmanager
def running_proxy(config: Path, workdir: Path, env: dict[str, str]) -> Iterator[Proxy]:
    """Start ``litellm --config CONFIG`` in its own session; wait until it answers; kill it."""
    log_config = workdir / "log_config.json"
    log_config.write_text(json.dumps(PROXY_LOG_CONFIG))
    port = free_port()
    log = workdir / f"proxy-{port}.log"
    litellm = Path(sys.executable).with_name("litellm")
    command = [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log_config", str(log_config)]
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - our own venv's litellm, fixed arguments
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,  # so stopping it takes every process it started
        )
    print(f"  starting the litellm proxy (pid {process.pid}) with {shown(config)} ...", flush=True)
    proxy = Proxy(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = started + STARTUP_TIMEOUT_SEC
        while True:
            if process.poll() is not None:
                raise DemoError(f"the proxy exited with {process.returncode}:\n{tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{proxy.url}/health/liveliness", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the proxy did not start in {STARTUP_TIMEOUT_SEC:g}s:\n{tail(log)}"
                )
            time.sleep(0.1)
        print(f"  proxy ready on {proxy.url} after {time.monotonic() - started:.1f}s", flush=True)
        yield proxy
    finally:
        stop_process_group(process)
        print(f"  proxy stopped (pid {process.pid})", flush=True)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


class DemoError(Exception):
    """The demo could not do what it set out to do; the message says what."""


# -- measuring -----------------------------------------------------------------


@dataclass
class Traffic:
    """What the client saw: one entry per request, in the order they finished."""

    started: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: int = 0

    def record(self, started: float, latency: float, error: str | None) -> None:
        self.started.append(started)
        self.latencies.append(latency)
        if error is not None:
            self.errors.append(error)

    def recent_p95(self, now: float, window: float = 5.0) -> float | None:
        recent = [
            lat
            for s, lat in zip(self.started, self.latencies, strict=True)
            if s + lat >= now - window
        ]
        return percentile(recent, 95) if recent else None


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: a latency some request really had."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def chat_counts(provider: FakeProvider) -> tuple[int, int]:
    """Chat calls received, and how many of them were answered 200."""
    served = sum(
        1 for c in provider.recorded() if c.path.endswith("/chat/completions") and c.status == 200
    )
    return provider.calls("chat"), served


async def one_request(client: openai.AsyncOpenAI, traffic: Traffic) -> None:
    started = time.monotonic()
    error: str | None = None
    try:
        await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
    except openai.APIStatusError as exc:
        error = f"HTTP {exc.status_code}"
    except openai.APITimeoutError:
        error = "client timeout"
    except openai.APIConnectionError:
        error = "connection error"
    except openai.APIError as exc:
        error = type(exc).__name__
    traffic.record(started, time.monotonic() - started, error)


@dataclass
class RunResult:
    label: str
    requests: int
    dead_calls: int
    errors: int
    p50: float
    p95: float
    slow: int
    back_after: float | None
    transitions: int


# -- showing -------------------------------------------------------------------


class Display:
    """A table redrawn in place on a terminal; on a pipe, a compact line every few seconds.

    Event lines (script steps, breaker transitions) are printed above the table
    as they happen, so they stay in the scrollback in order.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.live = out.isatty() and os.environ.get("TERM") != "dumb"
        self._drawn: list[str] = []
        self._last_status = 0.0  # the first compact line after a few seconds of traffic

    def event(self, line: str) -> None:
        self._erase()
        self._out.write(line + "\n")
        self._draw(self._drawn)

    def update(self, table: list[str], compact: str, now: float) -> None:
        if self.live:
            self._erase()
            self._draw(table)
        elif now - self._last_status >= STATUS_EVERY_SEC:
            self._last_status = now
            self._out.write(compact + "\n")
            self._out.flush()

    def finish(self, table: list[str]) -> None:
        """Leave the final table on screen (printed once when not on a terminal)."""
        self._erase()
        self._out.write("\n".join(table) + "\n")
        self._out.flush()
        self._drawn = []

    def _erase(self) -> None:
        if self.live and self._drawn:
            self._out.write(f"\x1b[{len(self._drawn)}A\r\x1b[J")
        elif not self.live:
            self._drawn = []

    def _draw(self, table: list[str]) -> None:
        if self.live:
            self._out.write("".join(line + "\n" for line in table))
            self._drawn = table
        self._out.flush()


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


class Run:
    """One pass of the script against one proxy: traffic, live table, transition lines."""

    def __init__(
        self, label: str, fleet: Fleet, proxy: Proxy, script: Script, plugin: bool
    ) -> None:
        self.label = label
        self.fleet = fleet
        self.proxy = proxy
        self.script = script
        self.plugin = plugin
        self.traffic = Traffic()
        self.states = dict.fromkeys(DEPLOYMENTS, "closed" if plugin else "-")
        self.transitions = 0
        self.display = Display(sys.stdout)
        self.t0 = 0.0
        self.marks: dict[float, int] = {}  # primary's chat calls when it broke and healed
        self._log_offset = 0
        self._log_rest = b""

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def play(self, master_key: str) -> RunResult:
        client = openai.AsyncOpenAI(
            base_url=f"{self.proxy.url}/v1",
            api_key=master_key,
            max_retries=0,  # what the client sees is what the proxy did
            timeout=CLIENT_TIMEOUT_SEC,
        )
        try:
            # One request first so the proxy's lazy set-up does not count as latency.
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            for provider in self.fleet.providers.values():
                provider.reset_counts()
            if not self.display.live:
                breaker = ", breaker state" if self.plugin else ""
                print(
                    f"  (every {STATUS_EVERY_SEC:g} s: deployment, provider mode{breaker}, "
                    "chat calls served/received)"
                )
            self.t0 = time.monotonic()
            try:
                async with asyncio.TaskGroup() as tasks:
                    log = tasks.create_task(self._watch_log())
                    redraw = tasks.create_task(self._redraw())
                    tasks.create_task(self._follow_script())
                    await self._send(client)
                    log.cancel()
                    redraw.cancel()
            except* DemoError as failed:  # the proxy died under the traffic
                raise failed.exceptions[0] from None
            self._read_log()
        finally:
            await client.close()
        self.display.finish(self._table())
        return self._result()

    async def _send(self, client: openai.AsyncOpenAI) -> None:
        # Open loop: requests leave on a fixed timetable whatever the latency,
        # so both runs send the same requests at the same moments.
        in_flight: set[asyncio.Task[None]] = set()
        n = 0
        while (due := n / RATE_PER_SEC) < self.script.ends_at:
            await asyncio.sleep(max(0.0, due - self.now()))
            task = asyncio.create_task(one_request(client, self.traffic))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            self.traffic.sent += 1
            n += 1
        if in_flight:
            await asyncio.wait(in_flight, timeout=CLIENT_TIMEOUT_SEC + 5)

    async def _follow_script(self) -> None:
        primary = self.fleet.providers["primary"]
        for step in self.script.steps:
            await asyncio.sleep(max(0.0, step.at - self.now()))
            if step.at in (self.script.breaks_at, self.script.heals_at):
                self.marks[step.at] = primary.calls("chat")
            apply_mode(primary, step.mode)
            self.fleet.modes["primary"] = step.mode
            self.display.event(f"  t={self.now():5.1f}s  >> {step.says}")
        await asyncio.sleep(max(0.0, self.script.ends_at - self.now()))
        self.display.event(
            f"  t={self.now():5.1f}s  >> end of script; waiting for requests in flight"
        )

    async def _watch_log(self) -> None:
        while True:
            self._read_log()
            if self.proxy.process.poll() is not None:
                raise DemoError(f"the proxy died:\n{tail(self.proxy.log)}")
            await asyncio.sleep(0.1)

    def _read_log(self) -> None:
        with self.proxy.log.open("rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        self._log_offset += len(data)
        *lines, self._log_rest = (self._log_rest + data).split(b"\n")
        for raw in lines:
            found = TRANSITION.match(raw.decode(errors="replace").strip())
            if found is not None:
                self._transition(found.group(1), found.group(2))

    def _transition(self, deployment: str, message: str) -> None:
        if "re-opened" in message or "opened" in message:
            new = "open"
        elif "half-open" in message:
            new = "half_open"
        elif "recovered" in message or "closed" in message:
            new = "closed"
        else:
            return
        old, self.states[deployment] = self.states.get(deployment, "closed"), new
        self.transitions += 1
        # "...: ServiceUnavailableError (503): OpenAIException - fake provider error: ..."
        # reads best cut after the status.
        cut = re.match(r"^.*?\(\d{3}\)", message)
        detail = cut.group(0) if cut else message
        if len(detail) > 90:
            detail = detail[:87] + "..."
        move = f"{old} -> {new}"
        self.display.event(f"  t={self.now():5.1f}s  {deployment:<9} {move:<20} {detail}")

    async def _redraw(self) -> None:
        while True:
            self.display.update(self._table(), self._compact(), self.now())
            await asyncio.sleep(1.0)

    def _table(self) -> list[str]:
        t = self.traffic
        p95 = t.recent_p95(time.monotonic())
        recent = "-" if p95 is None else seconds(p95)
        lines = [
            f"  [{self.label}] t={self.now():5.1f}s  client: {t.sent} sent, "
            f"{len(t.latencies) - len(t.errors)} ok, {len(t.errors)} errors, "
            f"{t.sent - len(t.latencies)} waiting, p95 last 5s {recent}",
            f"    {'deployment':<11}{'provider':<10}{'breaker':<11}{'chat calls':>11}"
            f"{'served':>8}{'failed':>8}{'probes':>8}",
        ]
        for name, provider in self.fleet.providers.items():
            calls, served = chat_counts(provider)
            lines.append(
                f"    {name:<11}{self.fleet.modes[name]:<10}{self.states[name]:<11}"
                f"{calls:>11}{served:>8}{calls - served:>8}{provider.calls('models'):>8}"
            )
        return lines

    def _compact(self) -> str:
        parts = []
        for name, provider in self.fleet.providers.items():
            calls, served = chat_counts(provider)
            breaker = f" {self.states[name]}" if self.plugin else ""
            parts.append(f"{name} {self.fleet.modes[name]}{breaker} {served}/{calls}")
        errors = len(self.traffic.errors)
        return f"  t={self.now():5.1f}s  " + " | ".join(parts) + f" | client errors {errors}"

    def _result(self) -> RunResult:
        primary = self.fleet.providers["primary"]
        dead = self.marks[self.script.heals_at] - self.marks[self.script.breaks_at]
        heal = self.t0 + self.script.heals_at
        back = [
            c.at - heal
            for c in primary.recorded()
            if c.path.endswith("/chat/completions") and c.status == 200 and c.at >= heal
        ]
        lat = self.traffic.latencies
        # The healthy phases are the same in both runs by construction: compare the outage.
        down = (self.t0 + self.script.breaks_at, self.t0 + self.script.heals_at)
        outage = [
            x for at, x in zip(self.traffic.started, lat, strict=True) if down[0] <= at < down[1]
        ]
        return RunResult(
            label=self.label,
            requests=len(lat),
            dead_calls=dead,
            errors=len(self.traffic.errors),
            p50=percentile(outage, 50),
            p95=percentile(outage, 95),
            slow=sum(1 for x in lat if x > SLOW_SEC),
            back_after=min(back) if back else None,
            transitions=self.transitions,
        )


# -- the two runs and the comparison ---------------------------------------------------


def run_once(
    label: str, title: str, config: Path, script: Script, workdir: Path, *, plugin: bool
) -> RunResult:
    master_key = f"sk-demo-master-{secrets.token_hex(12)}"
    print(f"\n== {title} ==", flush=True)
    with running_fleet() as fleet:
        env = proxy_env(fleet.env() | BREAKER_ENV, master_key)
        with running_proxy(config, workdir, env) as proxy:
            run = Run(label, fleet, proxy, script, plugin)
            return asyncio.run(run.play(master_key))


def compare(without: RunResult, with_: RunResult, script: Script) -> list[str]:
    watch = script.ends_at - script.heals_at

    def back(r: RunResult) -> str:
        return f"{r.back_after:.1f} s" if r.back_after is not None else f"not within {watch:g} s"

    rows = [
        ("calls sent to the dead primary", str(without.dead_calls), str(with_.dead_calls)),
        ("errors the client saw", str(without.errors), str(with_.errors)),
        ("p50 latency while the primary was down", seconds(without.p50), seconds(with_.p50)),
        ("p95 latency while the primary was down", seconds(without.p95), seconds(with_.p95)),
        (f"requests slower than {SLOW_SEC:g} s", str(without.slow), str(with_.slow)),
        ("seconds until the healed primary served", back(without), back(with_)),
    ]
    head = ("", "LiteLLM defaults", "with the breaker")
    lines = [f"  {head[0]:<42}{head[1]:>18}{head[2]:>18}"]
    lines += [f"  {name:<42}{a:>18}{b:>18}" for name, a, b in rows]
    lines.append(
        f"  ({without.requests} and {with_.requests} requests, same script, same timetable)"
    )
    return lines


def verdict(without: RunResult, with_: RunResult) -> str:
    def change(new: str, old: str, unit: str = "") -> str:
        return f"{new}{unit} in both runs" if new == old else f"{new}{unit} instead of {old}"

    return (
        "Verdict: with the breaker the dead primary got "
        f"{change(str(with_.dead_calls), str(without.dead_calls), ' calls')}, "
        f"{change(str(with_.slow), str(without.slow), ' requests')} waited over {SLOW_SEC:g} s, "
        f"p95 latency in the outage was {change(seconds(with_.p95), seconds(without.p95))}, "
        f"and clients saw {change(str(with_.errors), str(without.errors), ' errors')}."
    )


# -- streams: a hung stream and a slow first token, a Router in this process --------

# The Router both stream runs use: its timeout is what LiteLLM alone waits, per attempt,
# for a stream that never starts (30 s and 2 retries are common; shortened to fit).
STREAM_ROUTER: dict[str, float | int] = {"timeout": 10, "num_retries": 1}
STREAM_HISTORY = 8  # healthy streams first: the breaker learns a deadline after 5
NEXT_STREAM_AFTER_SEC = 10.0  # the second stream into the hang leaves this much later
SLOW_FIRST_TOKEN_SEC = 1.5
SLOW_WAVES = (6, 3)  # concurrent streams: the first wave teaches, the second runs under it
# LiteLLM reports a finished stream through its log queue a moment after it ends.
REPORTED_AFTER_SEC = 0.3


@dataclass
class StreamSeen:
    """One stream as its user saw it."""

    first_token: float | None = None
    """Seconds from the request to the first chunk with text."""
    served_by: str | None = None
    error: str | None = None

    def shown(self) -> str:
        if self.first_token is None:
            return self.error or "no answer"
        return f"{seconds(self.first_token)} {self.served_by}"


@dataclass
class StreamResult:
    label: str
    hung: list[StreamSeen]
    dead_calls: int
    slow: list[StreamSeen]
    slow_cut_off: int | None
    slow_under_deadline: int | None
    slow_state: str


def stream_entry(group: str, provider: FakeProvider, key: str) -> dict[str, object]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": "openai/fake-model",
            "api_base": provider.base_url,
            "api_key": key,
        },
        "model_info": {"id": group},
    }


async def stream_once(router: Any, seen: StreamSeen) -> StreamSeen:
    started = time.monotonic()
    try:
        response = await router.acompletion(
            model="primary", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = ""
        async for chunk in response:
            piece = (chunk.choices[0].delta.content or "") if chunk.choices else ""
            if piece and seen.first_token is None:
                seen.first_token = time.monotonic() - started
            text += piece
        seen.served_by = text.removeprefix("from ")
    except Exception as exc:  # noqa: BLE001 - shown to the reader as it came
        seen.error = type(exc).__name__
    return seen


async def stream_story(label: str, *, plugin: bool) -> StreamResult:
    """A hung primary after a healthy history, then a primary slow to its first token."""
    import litellm  # noqa: PLC0415 - only this part of the demo runs LiteLLM in-process
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER  # noqa: PLC0415

    from litellm_circuit_breaker import CircuitBreaker  # noqa: PLC0415
    from litellm_circuit_breaker.testing import restored_litellm_callbacks  # noqa: PLC0415

    print(f"\n== Streams, {label} ==", flush=True)
    t0 = time.monotonic()

    def event(line: str) -> None:
        print(f"  t={time.monotonic() - t0:5.1f}s  {line}", flush=True)

    def attach() -> CircuitBreaker | None:
        if not plugin:
            return None
        # The first-token deadline is opt-in (it also ends a stream that pauses that
        # long after its first chunk); probes off: this part shows the deadline.
        breaker = CircuitBreaker(probe_interval=None, first_token_timeout="auto")  # noqa: S106
        breaker.cache.add_listener(
            lambda e: event(f"{e.deployment:<9} {e.old.value} -> {e.new.value:<12} {e.reason}")
        )
        litellm.callbacks.append(breaker)
        return breaker

    keys = {name: f"sk-demo-{name}-{secrets.token_hex(8)}" for name in ("primary", "fallback")}
    async with (
        FakeProvider(reply="from primary", require_api_key=keys["primary"]) as primary,
        FakeProvider(reply="from fallback", require_api_key=keys["fallback"]) as fallback,
    ):

        def router() -> Any:
            return litellm.Router(
                model_list=[
                    stream_entry("primary", primary, keys["primary"]),
                    stream_entry("fallback", fallback, keys["fallback"]),
                ],
                fallbacks=[{"primary": ["fallback"]}],
                **STREAM_ROUTER,
            )

        with restored_litellm_callbacks():
            attach()
            hung_router = router()
            for _ in range(STREAM_HISTORY):
                await stream_once(hung_router, StreamSeen())
            await asyncio.sleep(REPORTED_AFTER_SEC)
            await GLOBAL_LOGGING_WORKER.flush()  # so the breaker has seen the history
            event(f">> {STREAM_HISTORY} healthy streams answered by the primary")
            primary.hang()
            primary.reset_counts()
            event(">> primary hangs: accepts streams, never answers")
            first = asyncio.create_task(stream_once(hung_router, StreamSeen()))
            await asyncio.sleep(NEXT_STREAM_AFTER_SEC)
            if plugin:
                await asyncio.wait({first})  # so the next one comes after what it taught
            event(">> the next stream is sent")
            second = asyncio.create_task(stream_once(hung_router, StreamSeen()))
            hung = [await first, await second]
            dead_calls = primary.calls("chat")
            for n, seen in enumerate(hung, 1):
                event(f"stream {n} into the hang: first token after {seen.shown()}")
            primary.healthy()

        with restored_litellm_callbacks():
            breaker = attach()  # a new deployment and a new breaker: no history yet
            primary.slow_first_token(SLOW_FIRST_TOKEN_SEC)
            event(f">> a new Router whose primary takes {SLOW_FIRST_TOKEN_SEC:g} s to first token")
            slow_router = router()
            slow: list[StreamSeen] = []
            for wave in SLOW_WAVES:
                slow += await asyncio.gather(
                    *(stream_once(slow_router, StreamSeen()) for _ in range(wave))
                )
                await asyncio.sleep(REPORTED_AFTER_SEC)
                await GLOBAL_LOGGING_WORKER.flush()
            answered = sum(1 for s in slow if s.served_by == "primary")
            event(f"{answered} of {len(slow)} streams answered by the slow primary")
            primary.healthy()
            if breaker is None:
                return StreamResult(label, hung, dead_calls, slow, None, None, "-")
            return StreamResult(
                label,
                hung,
                dead_calls,
                slow,
                breaker.counters["first_token_timeouts"],
                breaker.counters["first_token_deadlines"],
                breaker.cache.breaker_state("primary").value,
            )


def compare_streams(without: StreamResult, with_: StreamResult) -> list[str]:
    def slow_p95(r: StreamResult) -> str:
        firsts = [s.first_token for s in r.slow if s.first_token is not None]
        return seconds(percentile(firsts, 95)) if firsts else "-"

    def answered(r: StreamResult) -> str:
        return f"{sum(1 for s in r.slow if s.served_by == 'primary')} of {len(r.slow)}"

    def maybe(value: int | None) -> str:
        return "-" if value is None else str(value)

    rows = [
        ("hung: first token, stream into the hang", without.hung[0].shown(), with_.hung[0].shown()),
        ("hung: first token, the next stream", without.hung[1].shown(), with_.hung[1].shown()),
        ("hung: calls sent to the dead primary", str(without.dead_calls), str(with_.dead_calls)),
        ("slow: streams the slow primary answered", answered(without), answered(with_)),
        ("slow: p95 time to first token", slow_p95(without), slow_p95(with_)),
        ("slow: streams run under a deadline", "-", maybe(with_.slow_under_deadline)),
        ("slow: streams cut off", "-", maybe(with_.slow_cut_off)),
        ("slow: breaker state at the end", "-", with_.slow_state),
    ]
    head = ("", "LiteLLM defaults", "with the breaker")
    lines = [f"  {head[0]:<42}{head[1]:>18}{head[2]:>18}"]
    lines += [f"  {name:<42}{a:>18}{b:>18}" for name, a, b in rows]
    return lines


def stream_problems(with_: StreamResult) -> list[str]:
    problems = []
    if with_.dead_calls > THRESHOLD:
        problems.append(
            f"the breaker let {with_.dead_calls} stream calls reach the hung primary "
            f"(limit {THRESHOLD})"
        )
    if any(s.served_by != "fallback" for s in with_.hung):
        problems.append("a stream into the hang was not answered by the fallback")
    if with_.slow_cut_off or any(s.served_by != "primary" for s in with_.slow):
        problems.append("the breaker cut off a primary that was only slow to its first token")
    if not with_.slow_under_deadline:
        problems.append("no stream to the slow primary ran under a learned deadline")
    return problems


def stream_verdict(without: StreamResult, with_: StreamResult) -> str:
    def when(seen: StreamSeen) -> str:
        return seen.error or "never" if seen.first_token is None else seconds(seen.first_token)

    return (
        "Verdict (streams): with the breaker the stream into the hang had its first token "
        f"after {when(with_.hung[0])} instead of {when(without.hung[0])}, the next one after "
        f"{when(with_.hung[1])} instead of {when(without.hung[1])}, and the hung primary got "
        f"{with_.dead_calls} calls instead of {without.dead_calls}; the primary slow to its "
        f"first token answered {sum(1 for s in with_.slow if s.served_by == 'primary')} of "
        f"{len(with_.slow)} streams, {with_.slow_cut_off} cut off."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (for the tests)")
    args = parser.parse_args(argv)
    script = make_script(args.quick)

    print("A scripted outage through the real LiteLLM proxy, without and with the breaker.")
    timeout = yaml.safe_load(CONFIG.read_text())["litellm_settings"]["request_timeout"]
    print(
        f"Config: {shown(CONFIG)}; request_timeout {timeout} s, "
        "LiteLLM's retries and cooldown left at their defaults"
    )
    print("Breaker settings: " + " ".join(f"{k}={v}" for k, v in BREAKER_ENV.items()))
    print(
        f"Traffic: {RATE_PER_SEC:g} requests/s to model group 'chat' via the openai client, "
        "no client retries"
    )
    print("Script, the same for both runs (seconds from the start of a run):")
    for step in script.steps:
        print(f"  {step.at:5.1f}  {step.says}")
    print(f"  {script.ends_at:5.1f}  end")

    workdir = Path(tempfile.mkdtemp(prefix="litellm-cb-demo-"))
    try:
        with_ = run_once(
            "with the breaker",
            f"With the breaker: {shown(CONFIG)}",
            CONFIG,
            script,
            workdir,
            plugin=True,
        )
        baseline = workdir / "without-plugin" / "config.yaml"
        baseline.parent.mkdir()
        baseline.write_text(PLUGIN_LINE.sub("", CONFIG.read_text()))
        without = run_once(
            "LiteLLM defaults",
            "LiteLLM defaults: the same config without the callbacks line",
            baseline,
            script,
            workdir,
            plugin=False,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print("\n== Same script, side by side ==")
    print("\n".join(compare(without, with_, script)))
    print(verdict(without, with_))

    print(
        "\nStreams, through a LiteLLM Router in this process (app code), fake providers "
        f"'primary' and 'fallback' (a fallback group); Router timeout={STREAM_ROUTER['timeout']} "
        f"num_retries={STREAM_ROUTER['num_retries']}, LiteLLM's cooldowns as they come; the "
        'breaker with first_token_timeout="auto" (opt-in), probes off. A hung primary after '
        f"{STREAM_HISTORY} healthy streams, a stream into it and the next one "
        f"{NEXT_STREAM_AFTER_SEC:g} s later; then a new primary taking "
        f"{SLOW_FIRST_TOKEN_SEC:g} s to every first token, {' then '.join(map(str, SLOW_WAVES))} "
        "concurrent streams."
    )
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline, as the proxies
    # Transitions are printed by the demo itself; the breaker's log would repeat them.
    logging.getLogger("litellm_circuit_breaker").addHandler(logging.NullHandler())
    streams_with = asyncio.run(stream_story("with the breaker", plugin=True))
    streams_without = asyncio.run(stream_story("LiteLLM defaults", plugin=False))
    print("\n== Streams, side by side ==")
    print("\n".join(compare_streams(streams_without, streams_with)))
    print(stream_verdict(streams_without, streams_with))

    limit = THRESHOLD + IN_FLIGHT_ALLOWANCE
    problems = stream_problems(streams_with)
    if with_.dead_calls > limit:
        problems.append(
            f"the breaker let {with_.dead_calls} calls reach the dead primary (limit {limit})"
        )
    if with_.transitions == 0:
        problems.append("no breaker transition was seen in the proxy's log")
    if with_.back_after is None:
        problems.append("the healed primary never got traffic back with the breaker")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on `kill` as on Ctrl-C
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: every process the demo started has been stopped", file=sys.stderr)
        raise SystemExit(130) from None
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
