"""Shared fixtures: a private data folder per test, and one resident Studio on the embedded model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets" / "models" / "flux-mini"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: longer integration tests (run in CI too)")
    config.addinivalue_line("markers", "browser: real Chromium via Playwright")


# Fixtures that start ``python app.py`` (tests/server.py) or a ZeroGPU worker: the tests using them are slow.
SERVER_FIXTURES = {"server", "pose_server", "picker_server", "guarded", "zero_gpu"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast lane (``-m "not slow"``) leaves out real-browser tests and tests against a served app."""
    for item in items:
        if item.get_closest_marker("browser") or SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty STUDIO_DATA_DIR."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def engine():
    """One Engine for the whole session: the embedded model is loaded once."""
    from studio.core import settings as settings_mod
    from studio.engine.engine import Engine

    settings = settings_mod.from_env({"STUDIO_MODEL": str(MODEL)}, threads=1)
    eng = Engine(settings)
    eng.ensure()
    return eng


@pytest.fixture
def studio(engine, data_dir: Path):
    """A Studio on the shared engine with a fresh history in ``data_dir``."""
    from studio.core import settings as settings_mod
    from studio.service import Studio
    from studio.store.store import Store

    settings = settings_mod.from_env({"STUDIO_MODEL": str(MODEL), "STUDIO_DATA_DIR": str(data_dir)})
    store = Store(settings.db_url, settings.data_dir)
    yield Studio(settings, engine=engine, store=store)
    store.close()
