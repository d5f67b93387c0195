"""The commons: members, API keys, rate limits, nodes, the usage ledger and the audit log,
stored in SQLite (default) or PostgreSQL. See docs/commons.md."""
