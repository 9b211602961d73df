"""Apply and check Alembic migrations programmatically (``control-plane migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from control_plane.storage.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str = "") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(url: str) -> None:
    """Migrate to head on an owner connection (not the RLS-bound runtime role)."""
    db = Database(url, app_role=None)
    try:
        async with db.engine.begin() as conn:

            def _up(sync_conn: Connection) -> None:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "head")

            await conn.run_sync(_up)
    finally:
        await db.dispose()


async def current_revision(db: Database) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    async with db.engine.connect() as conn:

        def _cur(sync_conn: Connection) -> str | None:
            return MigrationContext.configure(sync_conn).get_current_revision()

        return await conn.run_sync(_cur)
