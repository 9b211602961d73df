"""The schema stays distributable by ``org_id`` (Citus: distribute every tenant table on
``org_id``, colocated; organizations and platform tables become reference tables).

Citus requires every primary key and unique constraint of a distributed table to
contain the distribution column, and foreign keys between distributed tables to
include it. So: every tenant table's primary key, unique constraints and foreign
keys include ``org_id``, in the models and in the migrated database alike.
"""

from __future__ import annotations

from sqlalchemy import ForeignKeyConstraint, UniqueConstraint, inspect

from control_plane.storage.db import Database
from control_plane.storage.models import TENANT_TABLES, Base

# Tables whose primary key leaves org_id out, and why that is safe to convert.
EXCEPTIONS = {
    "revocation_events": (
        "append-only feed keyed by a global sequence: seq is the watchers' resume cursor "
        "and SQLite can only AUTOINCREMENT a single-column key. seq is unique on its own, "
        "so on Citus the key is re-declared as (org_id, seq) without changing any value "
        "(README: Scaling out)."
    ),
    "account_events": "the same design as revocation_events (a resume-cursor sequence)",
}


def test_every_tenant_key_includes_org_id_in_the_models() -> None:
    problems = []
    for table in Base.metadata.sorted_tables:
        if table.name not in TENANT_TABLES:
            continue
        pk = {c.name for c in table.primary_key.columns}
        if "org_id" not in pk and table.name not in EXCEPTIONS:
            problems.append(f"{table.name}: primary key {sorted(pk)}")
        for constraint in table.constraints:
            cols = {c.name for c in constraint.columns}
            if isinstance(constraint, UniqueConstraint) and "org_id" not in cols:
                problems.append(f"{table.name}: unique {sorted(cols)}")
            if isinstance(constraint, ForeignKeyConstraint):
                referred = constraint.referred_table.name
                if "org_id" not in cols:
                    problems.append(f"{table.name}: foreign key {sorted(cols)} -> {referred}")
        for index in table.indexes:
            cols = {c.name for c in index.columns}
            if index.unique and "org_id" not in cols:
                problems.append(f"{table.name}: unique index {sorted(cols)}")
    assert problems == []
    assert set(EXCEPTIONS) <= set(TENANT_TABLES)


async def test_the_migrated_database_agrees(db: Database) -> None:
    owner = Database(db.url, app_role=None)
    try:
        async with owner.engine.connect() as conn:

            def keys(sync_conn: object) -> list[str]:
                insp = inspect(sync_conn)
                problems = []
                for table in TENANT_TABLES:
                    pk = set(insp.get_pk_constraint(table)["constrained_columns"])
                    if "org_id" not in pk and table not in EXCEPTIONS:
                        problems.append(f"{table}: pk {sorted(pk)}")
                    for uq in insp.get_unique_constraints(table):
                        if "org_id" not in uq["column_names"]:
                            problems.append(f"{table}: unique {uq['column_names']}")
                    for fk in insp.get_foreign_keys(table):
                        if "org_id" not in fk["constrained_columns"]:
                            problems.append(f"{table}: fk {fk['constrained_columns']}")
                    for ix in insp.get_indexes(table):
                        if ix.get("unique") and "org_id" not in ix["column_names"]:
                            problems.append(f"{table}: unique index {ix['column_names']}")
                return problems

            assert await conn.run_sync(keys) == []
    finally:
        await owner.dispose()
