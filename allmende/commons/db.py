"""Storage of the commons: SQLite by default, PostgreSQL for several gateway replicas.

`open_database(url)` creates the SQLAlchemy engine and brings the schema to the newest Alembic
revision (the migrations live in ``allmende/commons/migrations``). Writers use `write(engine)`:
on SQLite it opens the transaction with ``BEGIN IMMEDIATE``, so writers queue on the database
lock (bounded by ``busy_timeout``) instead of failing half-way with ``SQLITE_BUSY``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Dialect, Engine

try:
    import fcntl
except ImportError:  # not on POSIX: SQLite's own busy handler only
    fcntl = None  # type: ignore[assignment]

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
# Any fixed number: the PostgreSQL advisory lock that serialises migrations across replicas.
MIGRATION_LOCK = 0x616C6D65


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timestamps stored as naive UTC (same text on SQLite, `timestamp` on PostgreSQL),
    read back as aware UTC datetimes with microsecond precision."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData()

members = sa.Table(
    "members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("removed", UTCDateTime, nullable=True),
    sa.Index(
        "ix_members_active_name",
        "name",
        unique=True,
        sqlite_where=sa.text("removed IS NULL"),
        postgresql_where=sa.text("removed IS NULL"),
    ),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("prefix", sa.String(32), nullable=False, unique=True),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=True),
    sa.Column("revoked", UTCDateTime, nullable=True),
)

key_limits = sa.Table(
    "key_limits",
    metadata,
    sa.Column("key_id", sa.Integer, sa.ForeignKey("api_keys.id"), primary_key=True),
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("tpd", sa.Integer, nullable=True),
)

# One row per key and span ("minute", "day"): the fixed window it counts and its totals.
rate_counters = sa.Table(
    "rate_counters",
    metadata,
    sa.Column("key_id", sa.Integer, sa.ForeignKey("api_keys.id"), primary_key=True),
    sa.Column("span", sa.String(8), primary_key=True),
    sa.Column("window_start", sa.BigInteger, nullable=False),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("tokens", sa.BigInteger, nullable=False),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("removed", UTCDateTime, nullable=True),
    # Requests the gateway sends the node at once; beyond them requests wait (fair share).
    sa.Column("slots", sa.Integer, nullable=False, server_default="4"),
    # The key the gateway sends the node as Bearer (a node with its own keys); None: none.
    sa.Column("api_key", sa.String(512), nullable=True),
)

# One-time credentials a member's node joins with (`joins.py`); only hashes are stored.
join_tokens = sa.Table(
    "join_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("prefix", sa.String(32), nullable=False, unique=True),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("slots", sa.Integer, nullable=True),  # the most slots the node may ask for
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False),
    sa.Column("used", UTCDateTime, nullable=True),
    sa.Column("revoked", UTCDateTime, nullable=True),
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), nullable=True),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("ts", UTCDateTime, nullable=False, index=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id"), nullable=False, index=True),
    sa.Column("key_id", sa.Integer, sa.ForeignKey("api_keys.id"), nullable=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), nullable=True, index=True),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("member_id", sa.Integer, nullable=True, index=True),
    sa.Column("key_id", sa.Integer, nullable=True),
    sa.Column("data", sa.Text, nullable=False),
)

# Exactly one row (id=1): the newest record's seq and hash. Appenders lock it.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


def now() -> datetime:
    """The current time as stored: aware UTC, microseconds."""
    return datetime.now(UTC)


def default_data_dir() -> Path:
    """``$ALLMENDE_DATA_DIR``, else ``$XDG_DATA_HOME/allmende`` (``~/.local/share/allmende``)."""
    if env := os.environ.get("ALLMENDE_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "allmende"


def default_database_url(data_dir: Path | None = None) -> str:
    """``$ALLMENDE_DATABASE_URL``, else a SQLite file ``allmende.db`` in the data directory."""
    if data_dir is None and (env := os.environ.get("ALLMENDE_DATABASE_URL")):
        return env
    path = (data_dir or default_data_dir()) / "allmende.db"
    return f"sqlite:///{path}"


SYNC_MODES = ("full", "normal")


def create_db_engine(url: str, *, sync: str = "full") -> Engine:
    """An engine for ``sqlite:///PATH`` or ``postgresql+psycopg://...`` (no migrations run).

    `sync` says when a commit returns: ``full``, once it is on disk (SQLite ``synchronous=FULL``;
    PostgreSQL's default ``synchronous_commit=on``); ``normal``, once it is in the database's
    log (SQLite ``synchronous=NORMAL`` in WAL mode, written to the OS but not fsynced;
    PostgreSQL ``synchronous_commit=off``). Either survives this process being killed; only
    ``full`` survives a power cut or OS crash, after which ``normal`` can lose the newest
    commits (never half of one)."""
    if sync not in SYNC_MODES:
        raise ValueError(f"database sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine, sync)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed, pool_pre_ping=True)
        if sync == "normal":
            _configure_postgresql_async_commit(engine)
        return engine
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)}")


def _configure_postgresql_async_commit(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
        dbapi_connection.commit()


def _configure_sqlite(engine: Engine, sync: str) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN, so DDL is transactional too.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sync.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("allmende_write") else "DEFERRED"
        # Straight on the DBAPI connection: SQLAlchemy's execution path costs more than BEGIN.
        # Its errors (a locked or read-only database) still come as SQLAlchemy's.
        driver = conn.connection.driver_connection
        try:
            driver.execute(f"BEGIN {mode}")  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(
                f"BEGIN {mode}", (), exc, sqlite3.Error, dialect=conn.dialect
            ) from exc


_WRITE_LOCKS: dict[str, tuple[threading.Lock, int]] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


@contextmanager
def write_lock(engine: Engine) -> Iterator[None]:
    """On a SQLite file: hold the database's writer lock file (``PATH-writelock``) for the
    block. Writers in every process and thread queue on it in the kernel and wake the moment it
    is free, instead of polling SQLite's lock with growing sleeps (which gave writers of several
    worker processes latency spikes of hundreds of milliseconds). Elsewhere: nothing."""
    path = engine.dialect.name == "sqlite" and engine.url.database
    if not path or path == ":memory:" or fcntl is None:
        yield
        return
    with _WRITE_LOCKS_GUARD:
        if path not in _WRITE_LOCKS:
            fd = os.open(f"{path}-writelock", os.O_RDWR | os.O_CREAT, 0o600)
            _WRITE_LOCKS[path] = (threading.Lock(), fd)
        local, fd = _WRITE_LOCKS[path]
    with local:  # flock is per open file: threads of this process queue here first
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction, committed (durably) when the block ends without an exception."""
    with write_lock(engine), engine.connect() as conn:
        conn = conn.execution_options(allmende_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read transaction (a consistent snapshot)."""
    with engine.connect() as conn, conn.begin():
        yield conn


def is_postgresql(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe when several replicas start at once."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with write(engine) as conn:
        if is_postgresql(conn):
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def open_database(
    url: str | None = None, *, data_dir: Path | None = None, sync: str = "full"
) -> Engine:
    """The engine for `url` (default: `default_database_url`), with the schema up to date;
    `sync` as for `create_db_engine`."""
    engine = create_db_engine(url or default_database_url(data_dir), sync=sync)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


__all__ = [
    "api_keys",
    "audit",
    "audit_head",
    "create_db_engine",
    "default_data_dir",
    "default_database_url",
    "join_tokens",
    "key_limits",
    "ledger",
    "members",
    "metadata",
    "nodes",
    "now",
    "open_database",
    "rate_counters",
    "read",
    "schema_revision",
    "upgrade",
    "write",
]
