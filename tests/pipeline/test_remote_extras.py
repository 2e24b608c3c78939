"""Cloud DVC remotes: each extra of pyproject.toml is pinned, with its dependencies, in its own lock file that
adds to requirements.lock without re-pinning any package of it (the default install stays as it is)."""
from __future__ import annotations

import re
import tomllib

import pytest

from support import REPO

EXTRAS = ("s3", "gs", "azure")


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.split(";")[0].strip()
    return pins


@pytest.mark.parametrize("extra", EXTRAS)
def test_extra_is_pinned_in_its_own_lock_file(extra: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (requirement,) = project["optional-dependencies"][extra]
    name, version = requirement.split("==")
    extra_pins, base_pins = _pins(REPO / f"requirements-{extra}.lock"), _pins(REPO / "requirements.lock")
    assert extra_pins[name] == version
    assert not set(extra_pins) & set(base_pins), "an extra lock must not re-pin a package of requirements.lock"
    assert name not in base_pins  # the default install does not carry cloud plugins


def test_readme_says_how_to_add_a_cloud_remote() -> None:
    text = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "requirements-s3.lock" in text and "dvc remote add -d storage s3://" in text
