"""A LiteLLM proxy config file, read the way the proxy reads it (for ``check``).

What the proxy does, verified on 1.108.7 and 1.110.2 (``tests/test_cli.py`` runs
the real proxy on such a config to keep this true):

1. ``include:`` files are merged in with LiteLLM's own merge
   (``litellm.proxy.common_utils.config_includes``: lists extended, other values
   replaced, each include resolved next to the file that names it).
2. ``os.environ/NAME`` strings are replaced with the process environment's value,
   or None when NAME is unset.
3. Only then is the ``environment_variables:`` block put into the environment.
   So a ``model_list`` reference to a variable that block alone sets is None in
   the Router (an unset api_base falls back to the provider's default host),
   while the provider defaults LiteLLM reads at call time (``OPENAI_API_KEY``,
   ``OPENAI_API_BASE``, ``HTTPS_PROXY``...) do see the block.

Why not ``ProxyConfig`` itself: it lives in ``litellm.proxy.proxy_server``,
which builds the whole FastAPI app on import (tens of seconds, and the proxy
extra), and it writes the block into ``os.environ`` for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# PyYAML ships no type hints and its stubs are not a dev dependency; the
# "unused-ignore" code keeps mypy quiet once they are.
import yaml  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "ConfigFile",
    "ConfigFileError",
    "environment_applied",
    "read_config_file",
    "unset_references",
]

ENV_PREFIX = "os.environ/"
# The keys the proxy refuses to take from environment_variables
# (ProxyConfig._BLOCKED_ENV_KEYS, the same on 1.108.7 and 1.110.2).
_BLOCKED_ENV_KEYS = frozenset(
    {
        "PATH",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "DYLD_LIBRARY_PATH",
        "DYLD_INSERT_LIBRARIES",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "HOME",
        "USER",
        "SHELL",
        "LOGNAME",
        "NO_PROXY",
        "no_proxy",
    }
)


class ConfigFileError(Exception):
    """The config file cannot be read as a LiteLLM config; the message says why."""


class _NotAMappingError(Exception):
    """The YAML document is no mapping; the message is the type it is."""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """What ``check`` needs of a proxy config, includes merged."""

    path: Path
    model_list: Sequence[Mapping[str, Any]]
    environment: Mapping[str, str]
    """What its ``environment_variables:`` block puts into the proxy's environment."""


def read_config_file(path: Path, environ: Mapping[str, str] | None = None) -> ConfigFile:
    """The config at ``path`` with its includes merged, or :class:`ConfigFileError`.

    ``environ`` (default ``os.environ``) resolves ``os.environ/`` values in the
    ``environment_variables:`` block.
    """
    try:
        config = _read_mapping(path, what=str(path))
    except _NotAMappingError as exc:
        raise ConfigFileError(
            f"{path} has no model_list: expected a LiteLLM proxy config, found a YAML {exc}"
        ) from None
    config = _with_includes(path, config)
    env = os.environ if environ is None else environ
    return ConfigFile(path, _model_list(path, config), _environment(path, config, env))


def _read_mapping(path: Path, what: str) -> dict[str, object]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"cannot read {what}: not UTF-8 text") from None
    document = _parse_yaml(what, text)
    if document is None:  # an empty file: the proxy reads it as {}
        return {}
    if not isinstance(document, Mapping):
        raise _NotAMappingError(type(document).__name__)
    return dict(document)


def _parse_yaml(what: str, text: str) -> object:
    """The YAML document in ``text``; errors name the line, never quote it (it may hold a key)."""
    try:
        return yaml.safe_load(text)  # type: ignore[no-any-return, unused-ignore]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigFileError(f"{what} is not valid YAML: {exc.problem}{where}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML forbids, e.g. a control character
        where = f"{exc.reason} at character {exc.position + 1}"
        raise ConfigFileError(f"{what} is not valid YAML: {where}") from None
    except yaml.YAMLError as exc:  # pragma: no cover - safe_load raises only the two above
        raise ConfigFileError(f"{what} is not valid YAML: {type(exc).__name__}") from None


def _with_includes(path: Path, config: dict[str, object]) -> dict[str, object]:
    """``config`` with its ``include:`` files merged in by LiteLLM's own merge."""
    if "include" not in config:
        return config
    from litellm.proxy.common_utils.config_includes import (  # noqa: PLC0415 - imports litellm
        resolve_include_file_path,
        resolve_includes,
    )

    root = os.path.abspath(path)

    def resolve(entry: str, declared_in: str) -> str:
        return resolve_include_file_path(entry, declared_in, root)

    async def read(location: str) -> Mapping[str, object]:
        what = f"included file {location}"
        try:
            return _read_mapping(Path(location), what=what)
        except _NotAMappingError as exc:
            raise ConfigFileError(f"{what} is a YAML {exc}, expected a mapping") from None

    try:
        return asyncio.run(resolve_includes(config, root, resolve, read))
    except ValueError as exc:  # LiteLLM's own words: "'include' must be a list of file paths"
        raise ConfigFileError(f"{path}: {exc}") from None


def _model_list(path: Path, config: Mapping[str, object]) -> list[Mapping[str, Any]]:
    model_list = config.get("model_list")
    if model_list is None:
        raise ConfigFileError(f"{path} has no model_list: expected a LiteLLM proxy config")
    if not isinstance(model_list, list):
        # Named by its type only: the value may hold keys.
        found = type(model_list).__name__
        raise ConfigFileError(f"{path}: model_list is a {found}, expected a list of deployments")
    if not model_list:
        raise ConfigFileError(f"{path}: model_list is empty, so there is nothing to check")
    for index, entry in enumerate(model_list):
        if not isinstance(entry, Mapping):
            raise ConfigFileError(f"{path}: model_list[{index}] is not a mapping")
    return model_list


def _environment(
    path: Path, config: Mapping[str, object], environ: Mapping[str, str]
) -> dict[str, str]:
    """The block as ``ProxyConfig._load_environment_variables`` applies it."""
    block = config.get("environment_variables")
    if not block:
        return {}
    if not isinstance(block, Mapping):
        found = type(block).__name__
        raise ConfigFileError(
            f"{path}: environment_variables is a {found}, expected a mapping of names to values"
        )
    applied: dict[str, str] = {}
    for name, value in block.items():
        if not isinstance(name, str) or name in _BLOCKED_ENV_KEYS:
            continue  # the proxy skips these too, with a warning
        if isinstance(value, str) and value.startswith(ENV_PREFIX):
            resolved = environ.get(value.removeprefix(ENV_PREFIX))
            if resolved is not None:  # an unset one is skipped, as the proxy does
                applied[name] = resolved
        elif value is not None:
            applied[name] = str(value)
    return applied


def unset_references(
    litellm_params: Mapping[str, Any], environ: Mapping[str, str], config: ConfigFile
) -> str | None:
    """Why the proxy would read some ``os.environ/NAME`` of a deployment as None, if it would.

    Only the process environment counts (see the module docstring): a name the
    ``environment_variables:`` block alone sets is unset too, and said so.
    """
    problems: list[str] = []
    for setting, value in litellm_params.items():
        if not isinstance(value, str) or not value.startswith(ENV_PREFIX):
            continue
        name = value.removeprefix(ENV_PREFIX)
        if environ.get(name):
            continue
        if name in config.environment:
            problems.append(
                f"{setting}: {value} is not set when the proxy reads model_list "
                "(environment_variables: sets it only afterwards; set it in the proxy's "
                "environment)"
            )
        else:
            state = "empty" if name in environ else "not set"
            problems.append(f"{setting}: {value} is {state}")
    return "; ".join(problems) or None


@contextlib.contextmanager
def environment_applied(environment: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``environment`` put in, as the proxy does, restored afterwards."""
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
