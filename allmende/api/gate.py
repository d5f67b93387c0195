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

from ..commons import audit, db, keys, ledger, limits
from ..commons.audit import AuditLog
from ..commons.keys import Principal
from ..commons.recorder import Recorder
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
    return db.open_database(settings.database_url, data_dir=data_dir, sync=settings.database_sync)


def active_keys(engine: Engine) -> int:
    table = db.api_keys
    with db.read(engine) as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.revoked.is_(None))
        return int(conn.execute(query).scalar_one())


class Gate:
    """Authentication, admission and accounting for the API, with the database off the
    request's path where it can be: keys are checked against a short in-memory cache
    (`keys.KeyCache`: a revoked key stops working at once when revoked through this process,
    within `keys.CACHE_SECONDS` when revoked elsewhere), limits against this process's view of
    the shared counters (`limits.Limiter`), and a finished request's ledger entry, token charge
    and audit record go to one writer thread that commits many requests in one transaction
    (`recorder.Recorder`); `account` returns only after that commit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.audit: AuditLog | None = None
        self.keys: keys.KeyCache | None = None
        self.limiter = limits.Limiter()
        self.recorder: Recorder | None = None
        self._keys_seen_at = 0.0
        self._keys_exist = False
        self._keys_check: asyncio.Future[bool] | None = None

    async def open(self) -> None:
        self.engine = await asyncio.to_thread(open_commons, self.settings)
        self.audit = AuditLog(self.engine, record_content=self.settings.audit_content)
        self.keys = keys.KeyCache(self.engine)
        self.recorder = Recorder(self.engine, self.audit, self.limiter)

    async def close(self) -> None:
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            await asyncio.to_thread(recorder.close)
        if self.keys is not None:
            self.keys.close()
            self.keys = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    async def _auth_required(self, engine: Engine) -> bool:
        if time.monotonic() - self._keys_seen_at <= KEY_CHECK_SECONDS:
            return self._keys_exist
        if self._keys_check is None:  # one look for all the requests that arrive meanwhile
            self._keys_check = asyncio.ensure_future(self._check_keys(engine))
        return await asyncio.shield(self._keys_check)

    async def _check_keys(self, engine: Engine) -> bool:
        try:
            self._keys_exist = await asyncio.to_thread(active_keys, engine) > 0
            self._keys_seen_at = time.monotonic()
            return self._keys_exist
        finally:
            self._keys_check = None

    async def admit(self, request: Request) -> Principal | None:
        """The caller, checked against its limits; None while no key exists (open API)."""
        engine, cache = self.engine, self.keys
        if engine is None or cache is None:
            raise OverloadedError("The server is still starting.", retry_after=1)
        if not await self._auth_required(engine):
            return None
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise AuthenticationError(
                "This server needs an API key: send 'Authorization: Bearer <key>'."
            )
        principal = cache.lookup(secret)
        if principal is None:
            principal = await asyncio.to_thread(cache.authenticate, secret)
        if principal.limits.any() and not self.limiter.admit(principal):
            # No current view of this key's windows here: the database decides and tells.
            states = await asyncio.to_thread(limits.admit_principal, engine, principal)
            self.limiter.merge(principal.key_id, states)
        return principal

    async def account(self, principal: Principal | None, o: Outcome) -> None:
        """Ledger entry, token charge and audit record for one finished request, committed
        when this returns."""
        recorder = self.recorder
        if principal is None or recorder is None:
            return
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
        tokens = o.prompt_tokens + o.completion_tokens
        if principal.limits.any() and tokens:
            self.limiter.charge(principal, tokens)
        data: dict[str, Any] = {
            "request_id": entry.request_id,
            "endpoint": o.endpoint,
            "model": o.model,
            "status": o.status,
            "prompt_tokens": o.prompt_tokens,
            "completion_tokens": o.completion_tokens,
            "node_id": o.node_id,
        }
        record = audit.Entry("request", data, principal.member_id, principal.key_id, o.content)
        await recorder.record(entry, record)
