"""What a user installs: the wheel's metadata, its license, its version, its README."""

from __future__ import annotations

import email
import email.message
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import litellm_circuit_breaker
from litellm_circuit_breaker._cli import main

ROOT = Path(__file__).resolve().parents[1]


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
