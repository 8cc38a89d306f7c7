"""The ``litellm-circuit-breaker`` command: check endpoints, or see the fleet's breakers.

``check CONFIG.yaml`` reads a proxy config as the proxy does (``include:``
files, ``os.environ/`` values, ``environment_variables:``; see
:mod:`._config_file`) and sends each endpoint the same token-free probe the
plugin runs in the background, once, so an operator can see before deploying
which endpoints answer. Exit status: 0 when no deployment is down, 1 when one
is, 2 when the command line, the config file or a deployment's configuration is
unusable.

``status --redis-url URL`` prints the breakers every replica shares through
Redis. Exit status: 0 when none is open or half-open, 1 when one is, 2 when
Redis does not answer.

``open ID [--for SEC]`` and ``close ID`` are ``force_open``/``force_close`` for the
whole fleet: written to Redis with the replicas' own transition script, followed by
every replica sharing that namespace within milliseconds (their reconcile catches a
lost message). Exit status: 0 when done or already so, 1 when a close lost to a
change made meanwhile, 2 when the command line, the id or Redis is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from . import __version__
from ._config import DEFAULT_NAMESPACE, MAX_WINDOW_SEC, check_namespace, check_url
from ._config_file import (
    ConfigFile,
    ConfigFileError,
    environment_applied,
    read_config_file,
    unset_references,
)
from ._endpoints import ProbeAnswer, ProbeError, ProbeTarget, run_http_probe
from ._errors import ConfigurationError
from ._litellm_kwargs import Deployment, deployment_of, resolved_params
from ._probe import DEFAULT_PROBE_CONCURRENCY, DEFAULT_PROBE_TIMEOUT_SEC
from ._redact import Redactor, public_url
from ._state import BreakerState
from ._status import format_status_json, format_status_table, read_status
from ._table import TABLE_WIDTH, columns, short_id

if TYPE_CHECKING:
    from ._shared import Operation

__all__ = ["CheckRow", "Result", "main"]

PROG = "litellm-circuit-breaker"
ERROR_CHARS = 120
"""Longest error shown per deployment: enough for a provider's one-line message."""
EXIT_OK, EXIT_DOWN, EXIT_USAGE = 0, 1, 2


class Result(enum.StrEnum):
    """What one check says about one deployment."""

    UP = "up"
    DOWN = "down"
    """Shown as DOWN in the table, to stand out; ``--json`` keeps every result lower case."""
    UNPROBED = "unprobed"
    """The endpoint answered 404/405 to its list call: it has no cheap probe."""
    NO_VERDICT = "no verdict"
    """It answered (429 or another 4xx) without saying whether it is up."""
    PASSIVE = "passive"
    """No probe exists for this provider; only real traffic can tell."""
    CONFIG_ERROR = "config error"
    """The deployment's configuration is wrong (e.g. an api_base that is no URL)."""


_RESULT_OF = {
    ProbeAnswer.UP: Result.UP,
    ProbeAnswer.NO_LIST_CALL: Result.UNPROBED,
    ProbeAnswer.NO_VERDICT: Result.NO_VERDICT,
}
_NOTES = {
    Result.UNPROBED: "unprobed: the endpoint answered 404/405 to its list call (no cheap probe)",
    Result.NO_VERDICT: "no verdict: the endpoint answered, but not whether it is up",
    Result.PASSIVE: "passive: no probe for this provider; only real traffic can tell",
    Result.CONFIG_ERROR: "config error: fix the deployment's configuration (exit status 2)",
}


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One deployment's line of the report; holds no secret."""

    deployment: str
    model_group: str
    endpoint: str | None
    probe: str | None
    result: Result
    latency_ms: float | None
    error: str | None
    model: str = ""
    """``litellm_params.model``, as the config names it."""
    host: str | None = None
    """``host[:port]`` of the endpoint, without user-info."""

    def as_json(self) -> dict[str, object]:
        """The row under the stable keys ``--json`` promises."""
        return {
            "deployment": self.deployment,
            "model_group": self.model_group,
            "model": self.model,
            "host": self.host,
            "endpoint": self.endpoint,
            "probe": self.probe,
            "result": self.result.value,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What the probe of one endpoint said, before it is fanned out to its deployments."""

    result: Result
    latency_ms: float
    error: str | None


# -- reading the config --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """A model_list entry with its ``os.environ/`` values read, and what was unset."""

    entry: Mapping[str, Any]
    unset: str | None


def resolved_entries(config: ConfigFile) -> list[_Entry]:
    """Read every ``os.environ/`` value now, as the proxy does before it applies the
    config's ``environment_variables:`` (so call this before :func:`environment_applied`)."""
    entries: list[_Entry] = []
    for entry in config.model_list:
        params = entry.get("litellm_params")
        if not isinstance(params, Mapping):
            entries.append(_Entry(entry, None))
            continue
        unset = unset_references(params, os.environ, config)
        entries.append(_Entry({**entry, "litellm_params": resolved_params(params)}, unset))
    return entries


def deployments_of(path: Path, entries: Sequence[_Entry]) -> list[Deployment]:
    """Typed deployments, in config order; an entry LiteLLM would reject is an error.

    One naming an unset variable gets a ``config_error`` and no probe: the proxy
    would send it to the provider's default host, which the config did not name.
    """
    deployments: list[Deployment] = []
    for index, item in enumerate(entries):
        deployment = deployment_of(item.entry)
        if deployment is None:
            raise ConfigFileError(
                f"{path}: model_list[{index}] needs model_name and litellm_params.model"
            )
        if item.unset is not None:
            deployment = replace(deployment, config_error=item.unset, probe=None, display_base=None)
        deployments.append(deployment)
    return deployments


# -- probing -------------------------------------------------------------------

_error_answers: ContextVar[list[str] | None] = ContextVar("_error_answers", default=None)
"""Where the probe running in this task keeps the error answers it got."""


async def _keep_error_answer(response: httpx.Response) -> None:
    """Note a failing answer's status and message: :class:`ProbeError` carries only the status."""
    answers = _error_answers.get()
    if answers is None or response.status_code < 400:
        return
    await response.aread()
    message = _message_of(response.content)
    status = response.status_code
    answers.append(f"HTTP {status}: {message}" if message else f"HTTP {status}")


def _message_of(body: bytes) -> str | None:
    """The one-line message in an error body, if it has one worth showing."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text or text.startswith("<"):  # an HTML error page says no more than its status
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return text
    return _message_in(payload) or text


def _message_in(payload: object) -> str | None:
    """``error.message`` (OpenAI, Anthropic, Azure), ``message`` or ``detail``."""
    if isinstance(payload, str):
        return payload or None
    if isinstance(payload, Mapping):
        for name in ("error", "message", "detail"):
            found = _message_in(payload.get(name))
            if found:
                return found
    return None


def _describe(exc: BaseException) -> str:
    """The exception's type and first line: ``ConnectError: All connection attempts failed``."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


async def _probe_one(
    client: httpx.AsyncClient, target: ProbeTarget, per_probe_sec: float, limit: asyncio.Semaphore
) -> _Outcome:
    """Probe one endpoint; every way it can fail is an outcome, never an exception."""
    async with limit:
        answers: list[str] = []
        _error_answers.set(answers)
        started = time.perf_counter()
        try:
            # The client's timeout bounds each phase; this bounds the probe as a whole.
            async with asyncio.timeout(per_probe_sec):
                answer = await run_http_probe(client, target)
        except (TimeoutError, httpx.TimeoutException):
            error: str | None = f"no answer within {per_probe_sec:g}s"
            result = Result.DOWN
        except ProbeError as exc:
            error, result = (answers[-1] if answers else str(exc)), Result.DOWN
        # Refused, reset, or a key httpx cannot send: real calls would fail the same way.
        except Exception as exc:  # noqa: BLE001
            error, result = _describe(exc), Result.DOWN
        else:
            error, result = (answers[-1] if answers else None), _RESULT_OF[answer]
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return _Outcome(result, latency_ms, error)


async def probe_all(
    targets: Mapping[str, ProbeTarget], per_probe_sec: float
) -> dict[str, _Outcome]:
    """Probe every distinct target once, concurrently, through one shared client."""
    limit = asyncio.Semaphore(DEFAULT_PROBE_CONCURRENCY)
    async with httpx.AsyncClient(
        timeout=per_probe_sec, event_hooks={"response": [_keep_error_answer]}
    ) as client:
        outcomes = await asyncio.gather(
            *(_probe_one(client, target, per_probe_sec, limit) for target in targets.values())
        )
    return dict(zip(targets, outcomes, strict=True))


def check(deployments: Sequence[Deployment], per_probe_sec: float) -> list[CheckRow]:
    """One row per deployment; deployments sharing a probe share its one request."""
    redact = Redactor()
    for deployment in deployments:
        redact.add_secret(deployment.api_key)
        # A key read from a file or variable often carries a stray newline or space.
        redact.add_secret(deployment.api_key.strip() if deployment.api_key else None)
    targets = {d.probe.key: d.probe for d in deployments if d.probe is not None}
    outcomes = asyncio.run(probe_all(targets, per_probe_sec)) if targets else {}
    return [_row(d, outcomes[d.probe.key] if d.probe else None, redact) for d in deployments]


def _row(deployment: Deployment, outcome: _Outcome | None, redact: Redactor) -> CheckRow:
    """The report line of one deployment; no outcome means it has no probe."""
    probe = deployment.probe
    if deployment.config_error is not None:
        return CheckRow(
            deployment=deployment.id,
            model_group=deployment.model_group,
            endpoint=deployment.display_base,
            probe=None,
            result=Result.CONFIG_ERROR,
            latency_ms=None,
            error=deployment.config_error,
            model=deployment.model,
            host=deployment.host,
        )
    return CheckRow(
        deployment=deployment.id,
        model_group=deployment.model_group,
        endpoint=deployment.display_base or (probe.display_url if probe else None),
        probe=probe.kind if probe else None,
        result=outcome.result if outcome else Result.PASSIVE,
        latency_ms=outcome.latency_ms if outcome else None,
        error=(redact(outcome.error, limit=ERROR_CHARS) or None) if outcome else None,
        model=deployment.model,
        host=deployment.host,
    )


# -- output ----------------------------------------------------------------------

_HEADERS = ("DEPLOYMENT", "GROUP", "MODEL", "HOST", "RESULT", "MS", "ERROR")
_RIGHT_ALIGNED = frozenset({5})
_SHRINK = ((6, 30), (2, 20), (3, 20), (1, 12), (6, 16), (2, 12), (3, 12), (0, 12), (6, 8))
"""Cut to fit, in this order (column, narrowest): the error to 30, model and host to 20,
the group, then each further."""
_WIDE_HEADERS = (
    "DEPLOYMENT",
    "MODEL GROUP",
    "MODEL",
    "ENDPOINT",
    "PROBE",
    "RESULT",
    "LATENCY MS",
    "ERROR",
)
_WIDE_RIGHT_ALIGNED = frozenset({6})


def _shown(result: Result) -> str:
    return result.value.upper() if result is Result.DOWN else result.value


def _count(n: int, noun: str) -> str:
    """``1 deployment``, ``2 deployments``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _latency(row: CheckRow) -> str:
    return "-" if row.latency_ms is None else f"{row.latency_ms:.1f}"


def format_table(rows: Sequence[CheckRow], *, wide: bool = False) -> str:
    """Aligned plain-text columns, a summary line, and notes on the results that need one.

    Within :data:`TABLE_WIDTH` columns, generated ids shortened, unless ``wide``:
    then every id, endpoint and error whole, with the probe used."""
    cells: list[tuple[str, ...]]
    cut: set[int] = set()
    if wide:
        cells = [
            (
                row.deployment,
                row.model_group,
                row.model or "-",
                row.endpoint or "-",
                row.probe or "-",
                _shown(row.result),
                _latency(row),
                row.error or "",
            )
            for row in rows
        ]
        lines = columns(_WIDE_HEADERS, cells, right=_WIDE_RIGHT_ALIGNED)
    else:
        cells = [
            (
                short_id(row.deployment),
                row.model_group,
                row.model or "-",
                row.host or "-",
                _shown(row.result),
                _latency(row),
                row.error or "",
            )
            for row in rows
        ]
        lines = columns(
            _HEADERS, cells, right=_RIGHT_ALIGNED, max_width=TABLE_WIDTH, shrink=_SHRINK, cut=cut
        )
    counts = {result: sum(row.result is result for row in rows) for result in Result}
    tally = ", ".join(f"{n} {_shown(result)}" for result, n in counts.items() if n)
    lines.extend(("", f"{_count(len(rows), 'deployment')}: {tally}"))
    lines.extend(note for result, note in _NOTES.items() if counts[result])
    if not wide and (0 in cut or any(short_id(r.deployment) != r.deployment for r in rows)):
        lines.append("ids shortened: --wide shows them whole, with endpoints and probes")
    return "\n".join(lines)


def format_json(rows: Sequence[CheckRow]) -> str:
    """A JSON list with one object per deployment."""
    return json.dumps([row.as_json() for row in rows], indent=2)


# -- the command line --------------------------------------------------------------


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected seconds > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets ``run``, so ``status`` can slot in beside ``check``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Per-deployment circuit breakers and token-free health probes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check_parser = commands.add_parser(
        "check",
        help="probe every deployment of a LiteLLM config once",
        description=(
            "Probe every deployment in a LiteLLM proxy config once, without spending "
            "tokens. Exit status: 0 none down, 1 some deployment DOWN, 2 unusable config."
        ),
    )
    check_parser.add_argument("config", metavar="CONFIG.yaml", type=Path)
    check_parser.add_argument("--json", action="store_true", help="print a JSON list")
    check_parser.add_argument(
        "--wide",
        action="store_true",
        help=f"whole ids, endpoints, probes and errors (the table may pass {TABLE_WIDTH} columns)",
    )
    check_parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_PROBE_TIMEOUT_SEC,
        metavar="SEC",
        help=f"seconds each probe may take (default {DEFAULT_PROBE_TIMEOUT_SEC:g})",
    )
    check_parser.set_defaults(run=_run_check)
    status_parser = commands.add_parser(
        "status",
        help="print the breakers every replica shares through Redis",
        description=(
            "Print every deployment's shared breaker: state, failures, seconds until its "
            "trial, the replica that changed it last. Exit status: 0 all closed, 1 some "
            "breaker open or half-open, 2 Redis unusable."
        ),
    )
    _redis_options(status_parser)
    status_parser.add_argument("--json", action="store_true", help="print a JSON list")
    status_parser.add_argument(
        "--wide",
        action="store_true",
        help=f"whole ids, models and errors (the table may pass {TABLE_WIDTH} columns)",
    )
    status_parser.set_defaults(run=_run_status)
    open_parser = commands.add_parser(
        "open",
        help="open a deployment's breaker on every replica sharing the Redis namespace",
        description=(
            "Open one deployment's shared breaker on every replica: held open until "
            "'close', or for --for SEC (an ordinary opening of that window: as with "
            "force_open(seconds=), a passing probe may half-open it sooner). Exit status: "
            "0 done or already open as long, 2 unusable command line, unknown id or Redis."
        ),
    )
    _id_options(open_parser)
    open_parser.add_argument(
        "--for",
        dest="seconds",
        metavar="SEC",
        help=f"open for SEC seconds, at most {MAX_WINDOW_SEC:.0f} (a year), not until 'close'",
    )
    open_parser.add_argument(
        "--reason",
        default=DEFAULT_OPEN_REASON,
        help=f"shown by 'status' as its last error (default: {DEFAULT_OPEN_REASON!r})",
    )
    open_parser.set_defaults(run=_run_operation, state=BreakerState.OPEN)
    close_parser = commands.add_parser(
        "close",
        help="close a deployment's breaker on every replica, ending any hold",
        description=(
            "Close one deployment's shared breaker on every replica, ending a hold or an "
            "opening. Exit status: 0 done or already closed, 1 a replica changed it "
            "meanwhile (see 'status', then close again), 2 unusable command line, unknown "
            "id or Redis."
        ),
    )
    _id_options(close_parser)
    close_parser.set_defaults(run=_run_operation, state=BreakerState.CLOSED, seconds=None)
    return parser


def _redis_options(parser: argparse.ArgumentParser) -> None:
    """Where the fleet's breakers are: the same for every subcommand that reads Redis."""
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("CIRCUIT_BREAKER_REDIS_URL"),
        metavar="URL",
        help="the replicas' Redis (default: $CIRCUIT_BREAKER_REDIS_URL)",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("CIRCUIT_BREAKER_REDIS_NAMESPACE") or DEFAULT_NAMESPACE,
        help=f"their key namespace (default: $CIRCUIT_BREAKER_REDIS_NAMESPACE or "
        f"{DEFAULT_NAMESPACE})",
    )


def _id_options(parser: argparse.ArgumentParser) -> None:
    """The deployment and how to find it: ``open`` and ``close`` alike."""
    parser.add_argument("id", metavar="ID", help="the deployment id, as 'status' shows it")
    parser.add_argument(
        "--create",
        action="store_true",
        help="write a record even if the namespace has none for ID (a deployment that "
        "never failed has none); without it an unknown ID is refused",
    )
    _redis_options(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _fail(args: argparse.Namespace, message: str) -> int:
    """Report an unusable command line, config or Redis; with --json, as JSON on stdout too."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    if args.json:  # a script reading stdout gets a JSON document either way
        print(json.dumps({"error": message}, indent=2))
    return EXIT_USAGE


def _run_status(args: argparse.Namespace) -> int:
    if not args.redis_url:
        return _fail(args, "give --redis-url or set CIRCUIT_BREAKER_REDIS_URL")
    try:
        url = check_url(args.redis_url)
        check_namespace(args.namespace, "--namespace")
    except ConfigurationError as exc:
        return _fail(args, str(exc))
    try:
        records, bad = read_status(url, args.namespace)
    except Exception as exc:  # noqa: BLE001 - any failure to read is "Redis unusable"
        return _fail(args, f"Redis at {public_url(url)} did not answer: {type(exc).__name__}")
    if args.json:
        print(format_status_json(records, bad))
    else:
        print(format_status_table(records, url, args.namespace, bad, wide=args.wide))
    return EXIT_DOWN if any(r.state is not BreakerState.CLOSED for r in records) else EXIT_OK


DEFAULT_OPEN_REASON = "forced open"
"""The reason ``open`` records unless given one: ``force_open``'s own default."""
MAX_REASON_CHARS = 200
KNOWN_SHOWN = 10
"""How many known ids an unknown-id error lists before "and N more"."""
EXIT_RACED = 1


def _window_of(text: str | None) -> float | None:
    """``--for``: None (hold until ``close``), or seconds above zero, at most a year."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_WINDOW_SEC:  # NaN and infinity fail this too
        raise ConfigurationError(
            "--for", text, f"a number of seconds > 0 and <= {MAX_WINDOW_SEC:.0f} (a year)"
        )
    return value


def _reason_of(text: str) -> str:
    """The reason as Redis will hold it (and every replica log it): redacted, as a
    replica's own reasons are, so a key pasted into it never reaches Redis."""
    redact = Redactor()
    if not text.strip() or len(text) > MAX_REASON_CHARS or not text.isprintable():
        raise ConfigurationError(
            "--reason", redact(text), f"one line of 1 to {MAX_REASON_CHARS} characters"
        )
    return redact(text)


def _operator() -> str:
    """Who made the change, as ``status`` shows it (CHANGED BY)."""
    return f"cli@{socket.gethostname() or 'localhost'}"


def _unknown(deployment: str, known: Sequence[str], shown_url: str, namespace: str) -> str:
    listed = ", ".join(known[:KNOWN_SHOWN]) if known else "none"
    if len(known) > KNOWN_SHOWN:
        listed += f" and {len(known) - KNOWN_SHOWN} more"
    return (
        f"no shared breaker {deployment!r} in namespace {namespace} at {shown_url} "
        f"(known: {listed}; '{PROG} status' lists them). A deployment that never failed "
        f"has no record yet: give --create to write one anyway"
    )


def _followers(n: int | None, namespace: str, shown_url: str) -> str:
    if n is None:
        return (
            f"Redis at {shown_url} refused to count who follows namespace {namespace} "
            "(replicas take it at their next reconcile, new ones when they start)"
        )
    if n == 0:
        return (
            f"no process follows namespace {namespace} at {shown_url} now "
            "(replicas take it at their next reconcile, new ones when they start)"
        )
    processes = "1 process" if n == 1 else f"{n} processes"
    return f"{processes} following namespace {namespace} at {shown_url}"


def _said(op: Operation, args: argparse.Namespace) -> str:
    """What was done, in words: the first half of the one line ``open``/``close`` print."""
    record, name = op.record, args.id
    if args.state is BreakerState.CLOSED:
        if op.written:
            return f"closed {name}"
        if record.state is BreakerState.CLOSED:
            return f"{name} was already closed; nothing changed"
        return (
            f"{name} NOT closed: {record.replica} changed it meanwhile (now {record.state.value}); "
            f"see '{PROG} status', then close it again"
        )
    return _said_open(op, args)


def _said_open(op: Operation, args: argparse.Namespace) -> str:
    record, name = op.record, args.id
    held = math.isinf(record.retry_in)
    created = " (new record)" if op.created else ""
    if op.written and held:
        return f"opened {name}{created}: held open until '{PROG} close {name}'"
    if op.written:
        return f"opened {name}{created} for {args.window:.10g}s"
    if held:
        return f"{name} was already held open until close; nothing changed"
    return f"{name} was already open for {record.retry_in:.0f}s more; nothing changed"


def _operation_json(op: Operation, args: argparse.Namespace) -> str:
    record = op.record
    held = math.isinf(record.retry_in)
    return json.dumps(
        {
            "action": "open" if args.state is BreakerState.OPEN else "close",
            "deployment": record.deployment,
            "changed": op.written,
            "created": op.created,
            "state": record.state.value,
            "held": held,
            "retry_in": None if held else round(record.retry_in, 3),
            "model_group": record.model_group,
            "changed_by": record.replica,
            "followers": op.followers,
            "namespace": args.namespace,
        },
        indent=2,
    )


def _checked(args: argparse.Namespace) -> tuple[str, str]:
    """The Redis URL and the reason, every flag checked (``args.window`` set); a
    ConfigurationError names the flag and its value (never the Redis password)."""
    url = check_url(args.redis_url)
    check_namespace(args.namespace, "--namespace")
    if not args.id.strip():
        raise ConfigurationError("ID", args.id, "a deployment id, as 'status' shows it")
    args.window = _window_of(args.seconds)
    return url, _reason_of(args.reason) if args.state is BreakerState.OPEN else ""


def _run_operation(args: argparse.Namespace) -> int:
    """``open`` and ``close``: one write to Redis, which every following replica adopts."""
    if not args.redis_url:
        return _fail(args, "give --redis-url or set CIRCUIT_BREAKER_REDIS_URL")
    try:
        url, reason = _checked(args)
    except ConfigurationError as exc:
        return _fail(args, str(exc))
    shown = public_url(url)
    # redis-py, loaded only when asked for
    from ._shared import UnknownDeploymentError, UnreadableRecordError, operate  # noqa: PLC0415

    try:
        op = asyncio.run(
            operate(
                url,
                args.namespace,
                args.id,
                args.state,
                replica=_operator(),
                window_sec=args.window,
                reason=reason,
                create=args.create,
            )
        )
    except UnknownDeploymentError as exc:
        return _fail(args, _unknown(exc.deployment, exc.known, shown, args.namespace))
    except UnreadableRecordError as exc:  # say so, as status would
        return _fail(args, str(exc))
    except Exception as exc:  # noqa: BLE001 - any other failure is "Redis unusable"
        return _fail(args, _redis_failed(exc, shown))
    if args.json:
        print(_operation_json(op, args))
    else:
        print(f"{_said(op, args)}; {_followers(op.followers, args.namespace, shown)}")
    raced = args.state is BreakerState.CLOSED and op.record.state is not BreakerState.CLOSED
    return EXIT_RACED if raced else EXIT_OK


def _redis_failed(exc: BaseException, shown_url: str) -> str:
    """Why Redis could not be used, without its password (the message is Redis's own)."""
    from redis.exceptions import ResponseError  # noqa: PLC0415 - loaded by operate already

    if isinstance(exc, ResponseError):  # it answered, but refused (full, an ACL)
        lines = str(exc).strip().splitlines()
        said = f": {lines[0][:ERROR_CHARS]}" if lines else ""
        return f"Redis at {shown_url} refused the command ({type(exc).__name__}{said})"
    return f"Redis at {shown_url} did not answer: {type(exc).__name__}"


def _run_check(args: argparse.Namespace) -> int:
    path: Path = args.config
    try:
        config = read_config_file(path)
        entries = resolved_entries(config)
        # The provider defaults LiteLLM reads at call time (OPENAI_API_KEY, a proxy)
        # see the config's environment_variables, as in the proxy.
        with environment_applied(config.environment):
            deployments = deployments_of(path, entries)
            rows = check(deployments, args.timeout)
    except ConfigFileError as exc:
        return _fail(args, str(exc))
    print(format_json(rows) if args.json else format_table(rows, wide=args.wide))
    if any(row.result is Result.CONFIG_ERROR for row in rows):
        return EXIT_USAGE
    return EXIT_DOWN if any(row.result is Result.DOWN for row in rows) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting, for in-process use."""
    # Probing needs no prices: keep LiteLLM from downloading its cost map when
    # the first probe target is built (the user's own setting wins).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
