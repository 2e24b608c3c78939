"""Test isolation: no test writes to the developer's MLflow store, DVC analytics stay off."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point MLflow at a throwaway sqlite store for every test."""
    store = tmp_path_factory.mktemp("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")


@pytest.fixture()
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def ray_cluster():  # type: ignore[no-untyped-def]
    """One real local Ray (2 CPUs) for every test that asks for it (library and stage tests alike), started on
    first use and shut down when the session ends: starting Ray costs seconds, so it starts once."""
    from support.ray_cluster import local_ray

    yield from local_ray()


# Property-based tests run the same examples on every machine (no example database, no random seed), so the suite
# is reproducible in CI; HYPOTHESIS_PROFILE=explore draws fresh examples for a longer local search.
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("reproducible", derandomize=True, database=None)
    _hypothesis_settings.register_profile("explore", database=None, max_examples=1000)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))
except ImportError:  # pragma: no cover - hypothesis is in requirements.lock
    pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with tests marked slow run first (each file keeps its order): under pytest-xdist's ``--dist loadfile``
    the long end-to-end files then start at once instead of leaving one worker busy at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: collection order otherwise
