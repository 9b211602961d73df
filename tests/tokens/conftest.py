"""Fixtures for the token tests: a real KEK file and an initialized barrier on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.clock import FakeClock
from control_plane.storage.db import Database
from control_plane.vault.barrier import Barrier
from control_plane.vault.kek import FileKekProvider


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kek_path(tmp_path: Path) -> Path:
    path = tmp_path / "kek" / "keyring.json"
    FileKekProvider.create(path)
    return path


@pytest.fixture
async def barrier(db: Database, kek_path: Path, clock: FakeClock) -> Barrier:
    b = Barrier(db, FileKekProvider(kek_path), clock=clock)
    await b.initialize(allow_create=True)
    return b
