"""Shared fixtures: real datasets from ../shared/data (never written to) and isolated caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def shared_data() -> Path:
    """The read-only real-data root; tests using it skip when it is absent."""
    if not (SHARED_DATA / "Cora" / "raw").is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """No AGC_* variable from the developer's shell leaks into a test; caches are private."""
    for key in list(os.environ):
        if key.startswith("AGC_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AGC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """A cache directory shared by the whole session, for datasets slow to process."""
    return tmp_path_factory.mktemp("session-cache")
