"""Core statements compiled once per dialect and run straight on the DBAPI cursor.

The gateway's group commit writes a few rows for every request (limit counters, a ledger row,
audit records). Through `Connection.execute` each statement costs SQLAlchemy's execution
machinery, about 60-80 µs on a 2-core machine, more than SQLite itself takes. A `Prepared`
statement keeps what SQLAlchemy already does well (the SQL text and parameter style for the
dialect, the bind processors of the column types, such as `db.UTCDateTime`) and skips the rest:
it compiles the statement once per dialect and hands the DBAPI cursor the processed parameters.

It runs inside a transaction the caller opened on the SQLAlchemy `Connection` (`db.write`), so
commit, rollback and the SQLite write lock are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]


class Compiled:
    """One statement compiled for one dialect: its SQL text and how to build its parameters."""

    def __init__(self, stmt: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect))
        self.sql = str(compiled)
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        # Values the statement carries itself (literals such as `id == 1`); the rest are required.
        self.defaults = {name: b.effective_value for name, b in binds.items() if not b.required}
        self.positional = compiled.positiontup is not None
        self.names: list[str] = list(compiled.positiontup or binds)
        types = {name: bind.type for name, bind in binds.items()}
        self.processors: dict[str, Processor] = {}
        for name in self.names:
            # The dialect's own implementation of the type: it formats what the driver cannot
            # take as is (a datetime as SQLite's text, after `UTCDateTime` made it naive UTC).
            processor = types[name].dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor

    def parameters(self, row: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = self.defaults | dict(row)
        missing = [n for n in self.names if n not in values]
        if missing:
            raise KeyError(f"no value for {', '.join(missing)} in {self.sql!r}")
        for name, processor in self.processors.items():
            values[name] = processor(values[name])
        if self.positional:
            return [values[n] for n in self.names]
        return {n: values[n] for n in self.names}


class Prepared:
    """A Core statement to run on the DBAPI cursor of a connection in a transaction."""

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._compiled: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        key = f"{dialect.name}+{dialect.driver}"  # drivers differ in parameter style
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = Compiled(self.stmt, dialect)
        return found

    def execute(self, conn: Connection, row: Mapping[str, Any] | None = None) -> list[Any]:
        """Run the statement with one row of parameters; the rows it returns (if any)."""
        c = self.compiled(conn.dialect)
        params = c.parameters(row or {})
        cursor = _cursor(conn)
        try:
            cursor.execute(c.sql, params)
            return list(cursor.fetchall()) if cursor.description is not None else []
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, cursor, c.sql, params, exc, many=False) from exc
        finally:
            cursor.close()

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per row (DBAPI ``executemany``); returns nothing."""
        if not rows:
            return
        c = self.compiled(conn.dialect)
        params = [c.parameters(r) for r in rows]
        cursor = _cursor(conn)
        try:
            cursor.executemany(c.sql, params)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, cursor, c.sql, params, exc, many=True) from exc
        finally:
            cursor.close()


class RowsInsert:
    """An INSERT of many rows into one table in few statements: multi-row ``VALUES`` lists of
    1, 2, 4, ... `MAX_ROWS` rows (the binary digits of the count), each compiled once.

    Statements are what counts in the group commit, more than rows: SQLite's driver releases
    the GIL for every statement it steps (``executemany`` steps once per row), and under load
    the writer thread then waits for the event loop to hand the GIL back, once per statement.

    `upsert`, if given, finishes each statement built with the dialect's own ``insert`` (SQLite
    or PostgreSQL, for ``on_conflict_do_update`` and ``returning``); `execute` then returns the
    rows the statements return."""

    MAX_ROWS = 64

    def __init__(self, table: sa.Table, upsert: Callable[[Any], Any] | None = None) -> None:
        self.table = table
        self.upsert = upsert
        self._statements: dict[tuple[str, tuple[str, ...], int], Prepared] = {}

    def _statement(self, dialect: str, columns: tuple[str, ...], size: int) -> Prepared:
        key = (dialect if self.upsert is not None else "", columns, size)
        found = self._statements.get(key)
        if found is None:
            values = [
                {c: sa.bindparam(f"{c}_{i}", type_=self.table.c[c].type) for c in columns}
                for i in range(size)
            ]
            if self.upsert is None:
                stmt = sa.insert(self.table).values(values)
            else:
                insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
                stmt = self.upsert(insert(self.table).values(values))
            found = self._statements[key] = Prepared(stmt)
        return found

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Insert `rows` (all with the same keys: the columns they set), in their order; the
        rows the statements return, if any."""
        returned: list[Any] = []
        if not rows:
            return returned
        columns = tuple(rows[0])
        start = 0
        while start < len(rows):
            left = len(rows) - start
            size = min(self.MAX_ROWS, 1 << (left.bit_length() - 1))
            part = rows[start : start + size]
            params = {f"{c}_{i}": row[c] for i, row in enumerate(part) for c in columns}
            returned += self._statement(conn.dialect.name, columns, size).execute(conn, params)
            start += size
        return returned


def _wrapped(
    conn: Connection, cursor: Any, sql: str, params: Any, exc: Exception, *, many: bool
) -> Exception:
    """The DBAPI error as SQLAlchemy raises it (`IntegrityError`, `OperationalError`, ...), so
    callers see one hierarchy whichever path ran the statement. A lost connection is
    invalidated, as SQLAlchemy's own execution does, so the pool does not hand it out again."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(exc)
    return DBAPIError.instance(
        sql,
        params,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=conn.engine.hide_parameters,
        connection_invalidated=lost,
        dialect=dialect,
        ismulti=many,
    )


def _cursor(conn: Connection) -> Any:
    if not conn.in_transaction():
        # Without SQLAlchemy's BEGIN the DBAPI would run each statement on its own.
        raise RuntimeError("a prepared statement runs only inside the caller's transaction")
    return conn.connection.cursor()


__all__ = ["Compiled", "Prepared", "RowsInsert"]
