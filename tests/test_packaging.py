"""What a user installs: the wheel's metadata, its license, its version, its README."""

from __future__ import annotations

import email
import email.message
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import litellm_circuit_breaker
from litellm_circuit_breaker._cli import main

ROOT = Path(__file__).resolve().parents[1]
PYTEST_PLUGIN = "litellm_circuit_breaker.pytest_plugin"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel pip builds from this checkout, the way a user without the index would."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(  # noqa: S603 - pip of this interpreter, fixed arguments
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("litellm_circuit_breaker-*.whl")
    return zipfile.ZipFile(path)


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_the_wheel_carries_its_mit_license(wheel: zipfile.ZipFile) -> None:
    """The SPDX expression pyproject promises, and the license text itself."""
    meta = metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(name).decode()
    assert text.startswith("MIT License")
    assert text == (ROOT / "LICENSE").read_text()


def test_the_wheel_names_its_pythons_and_its_maturity(wheel: zipfile.ZipFile) -> None:
    """Classifiers for every supported Python and the development status."""
    classifiers = metadata(wheel).get_all("Classifier") or []
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert "Typing :: Typed" in classifiers


def test_one_version_everywhere(wheel: zipfile.ZipFile, capsys: pytest.CaptureFixture[str]) -> None:
    """``__version__``, the wheel's metadata and ``--version`` agree."""
    assert metadata(wheel)["Version"] == litellm_circuit_breaker.__version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.split() == [
        "litellm-circuit-breaker",
        litellm_circuit_breaker.__version__,
    ]


def test_the_readme_has_no_link_that_only_works_inside_the_repository(
    wheel: zipfile.ZipFile,
) -> None:
    """PyPI renders the README on its own: no relative file links, images or heading anchors."""
    description = metadata(wheel).get_payload()
    assert isinstance(description, str)
    assert description.startswith("# litellm-circuit-breaker")
    targets = re.findall(r"\]\(([^)]*)\)", description)
    relative = [t for t in targets if not t.startswith(("https://", "http://"))]
    assert relative == [], relative


@pytest.fixture(scope="module")
def unpacked_wheel(wheel: zipfile.ZipFile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked into a directory: on ``sys.path``, that is the installed package."""
    target = tmp_path_factory.mktemp("site")
    wheel.extractall(target)
    return target


def test_the_wheel_registers_its_pytest_plugin(unpacked_wheel: Path) -> None:
    """Its metadata, read as pytest reads it, names the plugin module under ``pytest11``."""
    (dist_info,) = unpacked_wheel.glob("litellm_circuit_breaker-*.dist-info")
    found = importlib.metadata.Distribution.at(dist_info).entry_points.select(group="pytest11")
    assert [(ep.name, ep.value) for ep in found] == [(PYTEST_PLUGIN, PYTEST_PLUGIN)]
    assert (unpacked_wheel / "litellm_circuit_breaker" / "pytest_plugin.py").is_file()


@pytest.mark.parametrize(
    ("args", "autoload"),
    [
        pytest.param((), True, id="autoloaded"),
        pytest.param(("-p", PYTEST_PLUGIN), True, id="named-and-autoloaded"),
        pytest.param(("-p", PYTEST_PLUGIN), False, id="named-autoload-off"),
    ],
)
def test_pytest_finds_the_installed_plugins_fixtures(
    unpacked_wheel: Path, tmp_path: Path, args: tuple[str, ...], autoload: bool
) -> None:
    """Installed, the fixtures are there by themselves, and naming the plugin as well is fine."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            import {PYTEST_PLUGIN} as plugin

            def test_clock(cb_clock):
                assert Path(plugin.__file__).is_relative_to({str(unpacked_wheel)!r})
                before = cb_clock()
                cb_clock.advance(60)
                assert cb_clock() == before + 60
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = str(unpacked_wheel)
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    done = subprocess.run(  # noqa: S603 - pytest of this interpreter, fixed arguments
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
