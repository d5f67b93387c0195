"""Storage fixtures: `engine`, a migrated database on each backend (`db_url`, from
``tests/databases.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from allmende.commons import db


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine with the schema migrated."""
    eng = db.open_database(db_url)
    try:
        yield eng
    finally:
        eng.dispose()
