"""Schema migrations and connection settings on both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from allmende.commons import db

TABLES = {
    "alembic_version",
    "api_keys",
    "audit",
    "audit_head",
    "join_tokens",
    "key_limits",
    "ledger",
    "members",
    "nodes",
    "rate_counters",
}


HEAD = "0003"


def test_migrations_create_the_schema(engine: Engine) -> None:
    assert set(sa.inspect(engine).get_table_names()) == TABLES
    assert db.schema_revision(engine) == HEAD
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        head = conn.execute(sa.select(db.audit_head)).all()
    assert [tuple(row) for row in head] == [(1, 0, "0" * 64)]


def test_upgrade_is_idempotent(db_url: str) -> None:
    for _ in range(2):
        engine = db.open_database(db_url)
        assert db.schema_revision(engine) == HEAD
        engine.dispose()


def test_a_fresh_database_has_no_revision(db_url: str) -> None:
    engine = db.create_db_engine(db_url)
    assert db.schema_revision(engine) is None
    db.upgrade(engine)
    assert db.schema_revision(engine) == HEAD
    engine.dispose()


def test_upgrade_from_0001_keeps_nodes_and_gives_them_slots(db_url: str) -> None:
    engine = db.create_db_engine(db_url)
    db.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO members (id, name, created) VALUES (1, 'acme', '2026-01-01 00:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO nodes (id, member_id, name, url, created) "
            "VALUES (1, 1, 'a', 'http://a:8000', '2026-01-01 00:00:00')"
        )
    db.upgrade(engine)
    assert db.schema_revision(engine) == HEAD
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.nodes.c.name, db.nodes.c.slots, db.nodes.c.api_key))
        assert [tuple(r) for r in rows] == [("a", 4, None)]
    engine.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = db.open_database(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.BUSY_TIMEOUT_MS
    engine.dispose()


@pytest.mark.parametrize(
    ("sync", "sqlite_value", "postgresql_value"), [("full", 2, "on"), ("normal", 1, "off")]
)
def test_database_sync(db_url: str, sync: str, sqlite_value: int, postgresql_value: str) -> None:
    engine = db.open_database(db_url, sync=sync)
    try:
        with db.write(engine) as conn:  # the setting holds inside write transactions too
            if db.is_postgresql(conn):
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == postgresql_value
            else:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == sqlite_value
    finally:
        engine.dispose()


def test_a_refused_begin_is_an_sqlalchemy_error(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = db.open_database(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _impatient(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=1")

    engine.dispose()  # new connections get the short timeout
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, outside Allmende's lock file
    try:
        with pytest.raises(sa.exc.OperationalError, match="locked"), db.write(engine):
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()


def test_unknown_database_sync(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="full, normal"):
        db.create_db_engine(f"sqlite:///{tmp_path / 'x.db'}", sync="off")


def test_sqlite_transactions_roll_back_ddl_and_dml(tmp_path: Path) -> None:
    engine = db.create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(RuntimeError), db.write(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        raise RuntimeError
    assert "t" not in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_default_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ALLMENDE_DATABASE_URL", raising=False)
    monkeypatch.setenv("ALLMENDE_DATA_DIR", str(tmp_path))
    assert db.default_database_url() == f"sqlite:///{tmp_path / 'allmende.db'}"
    monkeypatch.delenv("ALLMENDE_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert db.default_database_url() == f"sqlite:///{tmp_path / 'xdg' / 'allmende' / 'allmende.db'}"
    monkeypatch.setenv("ALLMENDE_DATABASE_URL", "postgresql+psycopg://u@h/d")
    assert db.default_database_url() == "postgresql+psycopg://u@h/d"
    assert db.default_database_url(tmp_path) == f"sqlite:///{tmp_path / 'allmende.db'}"


def test_unsupported_url() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        db.create_db_engine("mysql://u@h/d")


def test_plain_postgresql_url_uses_psycopg() -> None:
    engine = db.create_db_engine("postgresql://u@localhost/d")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()
