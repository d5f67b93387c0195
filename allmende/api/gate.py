"""The commons at the API's door: API keys, per-key limits, the ledger and the audit log.

Until the first key exists the API is open (a loopback server is one person's tool). Once any
active key exists, every `/v1` route needs `Authorization: Bearer <key>`. Each authenticated
request is counted against its key's limits before it runs, and when it ends it leaves a ledger
entry and an audit record, both committed before the client sees the end of the response.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy import Engine

from ..commons import db, keys, ledger, limits
from ..commons.audit import AuditLog
from ..commons.keys import Principal
from ..config import Settings
from ..errors import AuthenticationError, OverloadedError

log = logging.getLogger("allmende.api")

KEY_CHECK_SECONDS = 1.0  # how long "are there any keys?" is cached


@dataclass
class Outcome:
    """What a finished request leaves in the ledger and audit log."""

    model: str
    endpoint: str
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    request_id: str = ""
    node_id: int | None = None  # the contributed node that served it, if any
    content: dict[str, Any] | None = None  # prompt and answer, kept only if audit_content


def open_commons(settings: Settings) -> Engine:
    data_dir = Path(settings.data_dir).expanduser() if settings.data_dir else None
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    elif settings.database_url is None:
        db.default_data_dir().mkdir(parents=True, exist_ok=True)
    return db.open_database(settings.database_url, data_dir=data_dir)


def active_keys(engine: Engine) -> int:
    table = db.api_keys
    with db.read(engine) as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.revoked.is_(None))
        return int(conn.execute(query).scalar_one())


class Gate:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.audit: AuditLog | None = None
        self._keys_seen_at = 0.0
        self._keys_exist = False

    async def open(self) -> None:
        self.engine = await asyncio.to_thread(open_commons, self.settings)
        self.audit = AuditLog(self.engine, record_content=self.settings.audit_content)

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    async def _auth_required(self, engine: Engine) -> bool:
        now = time.monotonic()
        if now - self._keys_seen_at > KEY_CHECK_SECONDS:
            self._keys_exist = await asyncio.to_thread(active_keys, engine) > 0
            self._keys_seen_at = now
        return self._keys_exist

    async def admit(self, request: Request) -> Principal | None:
        """The caller, checked against its limits; None while no key exists (open API)."""
        engine = self.engine
        if engine is None:
            raise OverloadedError("The server is still starting.", retry_after=1)
        if not await self._auth_required(engine):
            return None
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError(
                "This server needs an API key: send 'Authorization: Bearer <key>'."
            )
        principal = await asyncio.to_thread(keys.authenticate, engine, secret.strip())
        if principal.limits.any():
            await asyncio.to_thread(limits.admit_principal, engine, principal)
        return principal

    async def account(self, principal: Principal | None, outcome: Outcome) -> None:
        """Ledger entry, token charge and audit record for one finished request."""
        if principal is None or self.engine is None or self.audit is None:
            return
        await asyncio.to_thread(self._account, self.engine, self.audit, principal, outcome)

    @staticmethod
    def _account(engine: Engine, audit: AuditLog, principal: Principal, o: Outcome) -> None:
        entry = ledger.LedgerEntry(
            member_id=principal.member_id,
            key_id=principal.key_id,
            model=o.model,
            prompt_tokens=o.prompt_tokens,
            completion_tokens=o.completion_tokens,
            latency_ms=o.latency_ms,
            status=o.status,
            request_id=o.request_id or f"req-{uuid.uuid4().hex}",
            node_id=o.node_id,
        )
        ledger.record(engine, entry)
        tokens = o.prompt_tokens + o.completion_tokens
        if principal.limits.any() and tokens:
            limits.charge_principal(engine, principal, tokens)
        data: dict[str, Any] = {
            "request_id": entry.request_id,
            "endpoint": o.endpoint,
            "model": o.model,
            "status": o.status,
            "prompt_tokens": o.prompt_tokens,
            "completion_tokens": o.completion_tokens,
            "node_id": o.node_id,
        }
        audit.append(
            "request",
            data,
            member_id=principal.member_id,
            key_id=principal.key_id,
            content=o.content,
        )
