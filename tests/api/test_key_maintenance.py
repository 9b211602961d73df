"""The serve loop's key maintenance: scheduled rotation, reload, prune."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from control_plane.app import key_maintenance, open_runtime
from control_plane.clock import FakeClock
from control_plane.config import Settings


async def test_scheduled_rotation_and_cross_replica_reload(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        kek_provider="file",
        signing_rotation=dt.timedelta(days=1),
        key_reload_seconds=0.02,
    )
    clock = FakeClock(dt.datetime.now(dt.UTC))
    first = await open_runtime(settings, clock=clock)
    second = await open_runtime(settings, clock=clock)  # another replica, same database
    try:
        assert len(first.keys.keys_summary()) == 1
        clock.advance(dt.timedelta(days=1, seconds=1))
        task = asyncio.create_task(key_maintenance(first))
        reload_other = asyncio.create_task(key_maintenance(second))
        for _ in range(200):
            await asyncio.sleep(0.02)
            # Both: the rotating replica reloads its own keys after committing the new
            # one; cancelling it before that reload finishes left it a key behind.
            if len(second.keys.keys_summary()) == 2 and len(first.keys.keys_summary()) == 2:
                break
        task.cancel()
        reload_other.cancel()
        await asyncio.gather(task, reload_other, return_exceptions=True)
        states = sorted(k.state for k in second.keys.keys_summary())
        assert states == ["active", "pending"]  # exactly one rotation across both replicas
        assert second.keys.jwks_json() == first.keys.jwks_json()
    finally:
        await first.close()
        await second.close()
