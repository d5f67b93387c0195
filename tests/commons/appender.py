"""Appends audit records and prints each seq once its commit returned ("acknowledged").

Usage: python appender.py DATABASE_URL COUNT TAG
"""

from __future__ import annotations

import sys

from allmende.commons import db
from allmende.commons.audit import AuditLog


def main() -> None:
    url, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    engine = db.create_db_engine(url)  # the schema is already migrated by the test
    log = AuditLog(engine)
    for i in range(count):
        record = log.append("test.append", {"writer": tag, "i": i}, member_id=None)
        print(record.seq, flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()
