"""Test databases: every test that takes `db_url` runs against SQLite (a temporary file) and
PostgreSQL.

PostgreSQL comes from ``$ALLMENDE_TEST_POSTGRES_URL`` (a server where the user may create
databases), or else this session starts a throwaway cluster with the distribution's ``initdb``
and ``pg_ctl`` (Debian: ``apt-get install -y postgresql``), listening only on a Unix socket in a
temporary directory. As root it runs the server as the ``postgres`` user, since PostgreSQL
refuses to run as root. Without PostgreSQL the tests fail when ``CI=true`` and skip otherwise.
The fixtures are imported into ``tests/conftest.py``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_PORT = 5432
_counter = itertools.count()


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temporary directory."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError(
                "PostgreSQL's initdb/pg_ctl not found (apt-get install -y postgresql), "
                "and ALLMENDE_TEST_POSTGRES_URL is not set"
            )
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="allmende-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            try:
                entry = pwd.getpwnam(self.user)
            except KeyError:
                raise RuntimeError("running as root, but there is no 'postgres' user") from None
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        try:
            self._run(
                [initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
                + ["--locale=C", "--no-sync"]
            )
            options = f"-k {self.root} -p {PG_PORT} -c listen_addresses='' -c fsync=off"
            self._run(
                [pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", options]
                + ["start"]
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.url = f"postgresql+psycopg://postgres@/postgres?host={self.root}&port={PG_PORT}"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=self.root,
            check=False,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
        )
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}\n{tail}")

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str | None | Exception]:
    """A URL to a PostgreSQL database from which test databases are created, else the error."""
    if url := os.environ.get("ALLMENDE_TEST_POSTGRES_URL"):
        yield url
        return
    try:
        cluster = PostgresCluster()
    except (RuntimeError, OSError) as exc:
        yield exc
        return
    try:
        yield cluster.url
    finally:
        cluster.stop()


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL unavailable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'allmende.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    if isinstance(admin_url, Exception) or admin_url is None:
        _unavailable(str(admin_url))
    assert isinstance(admin_url, str)
    name = f"allmende_test_{os.getpid()}_{next(_counter)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _unavailable(str(exc))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
