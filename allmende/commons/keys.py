"""API keys: ``alm-`` followed by 43 url-safe characters (32 random bytes).

Only the SHA-256 of a key is stored, with its first `PREFIX_LEN` characters as the lookup
prefix; `create_key` returns the plaintext once. `authenticate` finds the key by prefix, compares
hashes in constant time and returns a `Principal`. Unknown keys and wrong secrets get the same
answer; revoked and expired keys get their own message, which only the key's holder can see.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..errors import AuthenticationError, InvalidRequestError, NotFoundError, PermissionDeniedError
from . import db
from .members import get_member

T = TypeVar("T")
KEY_PREFIX = "alm-"
PREFIX_LEN = len(KEY_PREFIX) + 8  # 48 random bits: unique enough to find one row
Scope = Literal["member", "admin"]
SCOPES: tuple[Scope, ...] = ("member", "admin")
_UNKNOWN = "Incorrect API key provided."
_DUMMY_HASH = "0" * 64


@dataclass(frozen=True)
class Limits:
    """Per-key limits; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    tpd: int | None = None

    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.tpd is not None


@dataclass(frozen=True)
class Principal:
    """Who is calling: the member, the key and its scope and limits."""

    member_id: int
    member: str
    key_id: int
    scope: Scope
    limits: Limits = Limits()

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


@dataclass(frozen=True)
class KeyInfo:
    id: int
    member: str
    prefix: str
    scope: Scope
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    limits: Limits


@dataclass(frozen=True)
class NewKey:
    """A freshly created key; `secret` is the only copy of the plaintext."""

    info: KeyInfo
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_limits(limits: Limits) -> None:
    for name in ("rpm", "tpm", "tpd"):
        value = getattr(limits, name)
        if value is not None and value < 0:
            raise InvalidRequestError(f"{name} must be 0 or more", param=name)


def create_key(
    engine: Engine,
    member: str,
    *,
    scope: Scope = "member",
    expires: datetime | None = None,
    limits: Limits = Limits(),
) -> NewKey:
    """A new key for the active member `member`."""
    if scope not in SCOPES:
        raise InvalidRequestError(f"scope must be one of {', '.join(SCOPES)}", param="scope")
    _check_limits(limits)
    created = db.now()
    if expires is not None and expires <= created:
        raise InvalidRequestError("expiry must be in the future", param="expires")

    def insert(conn: Connection, secret: str) -> KeyInfo:
        owner = get_member(conn, member)
        key_id = conn.execute(
            sa.insert(db.api_keys)
            .values(
                member_id=owner.id,
                prefix=secret[:PREFIX_LEN],
                hash=hash_key(secret),
                scope=scope,
                created=created,
                expires=expires,
            )
            .returning(db.api_keys.c.id)
        ).scalar_one()
        if limits.any():
            conn.execute(
                sa.insert(db.key_limits).values(
                    key_id=key_id, rpm=limits.rpm, tpm=limits.tpm, tpd=limits.tpd
                )
            )
        return KeyInfo(
            key_id, owner.name, secret[:PREFIX_LEN], scope, created, expires, None, limits
        )

    info, secret = store_secret(engine, KEY_PREFIX, insert)
    return NewKey(info, secret)


def store_secret(
    engine: Engine, prefix: str, insert: Callable[[Connection, str], T]
) -> tuple[T, str]:
    """Draw a secret (`prefix` + 32 random bytes, url-safe) and `insert` it in a write
    transaction; a collision of its lookup prefix (a unique column) draws again."""
    for _ in range(5):
        secret = prefix + secrets.token_urlsafe(32)
        try:
            with db.write(engine) as conn:
                return insert(conn, secret), secret
        except IntegrityError:  # a prefix collision: draw again
            continue
    raise RuntimeError("could not draw a unique secret prefix")


def _key_query() -> sa.Select[tuple[object, ...]]:
    k, m, lim = db.api_keys, db.members, db.key_limits
    return (
        sa.select(
            k.c.id,
            m.c.name,
            k.c.prefix,
            k.c.scope,
            k.c.created,
            k.c.expires,
            k.c.revoked,
            lim.c.rpm,
            lim.c.tpm,
            lim.c.tpd,
            k.c.hash,
            k.c.member_id,
        )
        .join(m, m.c.id == k.c.member_id)
        .outerjoin(lim, lim.c.key_id == k.c.id)
    )


def _info(row: sa.Row[tuple[object, ...]]) -> KeyInfo:
    v = row._mapping
    return KeyInfo(
        id=cast(int, v["id"]),
        member=cast(str, v["name"]),
        prefix=cast(str, v["prefix"]),
        scope=cast(Scope, v["scope"]),
        created=cast(datetime, v["created"]),
        expires=cast("datetime | None", v["expires"]),
        revoked=cast("datetime | None", v["revoked"]),
        limits=Limits(
            cast("int | None", v["rpm"]), cast("int | None", v["tpm"]), cast("int | None", v["tpd"])
        ),
    )


def list_keys(engine: Engine, member: str | None = None) -> list[KeyInfo]:
    query = _key_query().order_by(db.api_keys.c.id)
    if member is not None:
        query = query.where(db.members.c.name == member, db.members.c.removed.is_(None))
    with db.read(engine) as conn:
        return [_info(row) for row in conn.execute(query)]


def _find(conn: sa.Connection, key: str | int) -> sa.Row[tuple[object, ...]]:
    column = db.api_keys.c.id if isinstance(key, int) else db.api_keys.c.prefix
    row = conn.execute(_key_query().where(column == key)).first()
    if row is None:
        raise NotFoundError(f"No API key '{key}'.")
    return row


def get_key(engine: Engine, key: str | int) -> KeyInfo:
    """A key by id or by prefix."""
    with db.read(engine) as conn:
        return _info(_find(conn, key))


def revoke_key(engine: Engine, key: str | int) -> KeyInfo:
    """Revoke a key by id or prefix (idempotent: the first revocation time stays)."""
    with db.write(engine) as conn:
        row = _find(conn, key)
        conn.execute(
            sa.update(db.api_keys)
            .where(db.api_keys.c.id == row.id, db.api_keys.c.revoked.is_(None))
            .values(revoked=db.now())
        )
        return _info(_find(conn, cast(int, row.id)))


def set_limits(engine: Engine, key: str | int, limits: Limits) -> KeyInfo:
    """Replace a key's limits (all None removes them)."""
    _check_limits(limits)
    with db.write(engine) as conn:
        key_id = cast(int, _find(conn, key).id)
        conn.execute(sa.delete(db.key_limits).where(db.key_limits.c.key_id == key_id))
        if limits.any():
            conn.execute(
                sa.insert(db.key_limits).values(
                    key_id=key_id, rpm=limits.rpm, tpm=limits.tpm, tpd=limits.tpd
                )
            )
        return _info(_find(conn, key_id))


def authenticate(engine: Engine, secret: str, *, at: datetime | None = None) -> Principal:
    """The principal for a presented key, or `AuthenticationError` (401)."""
    return _authenticate(engine, secret, at)[0]


def _authenticate(
    engine: Engine, secret: str, at: datetime | None
) -> tuple[Principal, datetime | None]:
    """`authenticate`, and the key's expiry."""
    at = at or db.now()
    row = None
    if secret.startswith(KEY_PREFIX) and len(secret) > PREFIX_LEN:
        with db.read(engine) as conn:
            row = conn.execute(
                _key_query().where(db.api_keys.c.prefix == secret[:PREFIX_LEN])
            ).first()
    stored = cast(str, row.hash) if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(stored, hash_key(secret))
    if row is None or not matches:
        raise AuthenticationError(_UNKNOWN)
    info = _info(row)
    if info.revoked is not None:
        raise AuthenticationError("This API key has been revoked.")
    if info.expires is not None and info.expires <= at:
        raise AuthenticationError("This API key has expired.")
    principal = Principal(cast(int, row.member_id), info.member, info.id, info.scope, info.limits)
    return principal, info.expires


CACHE_SECONDS = 1.0  # how long a process may go on trusting an authenticated key
# Statements that may change what `authenticate` answers: revocation, limits, member removal.
_KEY_CHANGE = re.compile(r"^\s*(UPDATE|DELETE)\b.*\b(api_keys|key_limits|members)\b", re.I | re.S)
_DIRTY = "allmende_keys_changed"


class KeyCache:
    """`authenticate` with a short memory, so a request costs no database read.

    A key that authenticated is trusted for at most `ttl` seconds (`CACHE_SECONDS`), and never
    past its expiry. A change made through `engine` in this process (revoking a key, changing
    its limits, removing its member: any committed UPDATE or DELETE of ``api_keys``,
    ``key_limits`` or ``members``) empties the cache when it commits, so it holds at once; a
    change made elsewhere (the CLI, another replica) holds within `ttl`. Only keys that
    authenticated are kept (by the SHA-256 of the secret, never the secret), at most `size`.
    """

    def __init__(self, engine: Engine, *, ttl: float = CACHE_SECONDS, size: int = 10_000) -> None:
        self.engine = engine
        self.ttl = ttl
        self.size = size
        # sha256(secret) -> (monotonic time it was read, principal, expiry as a Unix time)
        self._entries: dict[bytes, tuple[float, Principal, float]] = {}
        self._generation = 0
        sa.event.listen(engine, "after_cursor_execute", self._executed)
        sa.event.listen(engine, "commit", self._committed)
        sa.event.listen(engine, "rollback", self._rolled_back)

    def close(self) -> None:
        sa.event.remove(self.engine, "after_cursor_execute", self._executed)
        sa.event.remove(self.engine, "commit", self._committed)
        sa.event.remove(self.engine, "rollback", self._rolled_back)
        self.invalidate()

    def invalidate(self) -> None:
        """Forget every key (the next request of each reads the database)."""
        self._generation += 1
        self._entries = {}

    def lookup(self, secret: str) -> Principal | None:
        """The principal of a key that authenticated less than `ttl` ago, else None (ask
        `authenticate`). Raises `AuthenticationError` once the cached key has expired."""
        digest = hashlib.sha256(secret.encode()).digest()
        entry = self._entries.get(digest)
        if entry is None:
            return None
        read_at, principal, expires = entry
        if time.monotonic() - read_at >= self.ttl:
            self._entries.pop(digest, None)
            return None
        if expires <= time.time():
            self._entries.pop(digest, None)
            raise AuthenticationError("This API key has expired.")
        return principal

    def authenticate(self, secret: str) -> Principal:
        """`lookup`, else `authenticate` against the database (blocking) and remember it."""
        principal = self.lookup(secret)
        if principal is not None:
            return principal
        generation, read_at = self._generation, time.monotonic()
        principal, expires = _authenticate(self.engine, secret, None)
        if generation == self._generation:  # no change committed while we read
            if len(self._entries) >= self.size:
                self._entries = {}
            ends = expires.timestamp() if expires is not None else math.inf
            digest = hashlib.sha256(secret.encode()).digest()
            self._entries[digest] = (read_at, principal, ends)
        return principal

    def _executed(self, conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if _KEY_CHANGE.match(statement):
            conn.info[_DIRTY] = True

    def _committed(self, conn: Connection) -> None:
        if conn.info.pop(_DIRTY, False):
            self.invalidate()

    def _rolled_back(self, conn: Connection) -> None:
        conn.info.pop(_DIRTY, None)


def visible_member(principal: Principal, requested: int | None) -> int | None:
    """The member id whose records `principal` may read, given the one it asked for.

    Admin keys see everyone (None = all members); a member key sees only its own member and
    gets 403 for anyone else's."""
    if principal.is_admin:
        return requested
    if requested is not None and requested != principal.member_id:
        raise PermissionDeniedError("A member key can only read its own member's records.")
    return principal.member_id


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise PermissionDeniedError("This operation needs an admin key.")


__all__: Sequence[str] = [
    "CACHE_SECONDS",
    "KEY_PREFIX",
    "KeyCache",
    "KeyInfo",
    "Limits",
    "NewKey",
    "Principal",
    "authenticate",
    "create_key",
    "get_key",
    "hash_key",
    "list_keys",
    "require_admin",
    "revoke_key",
    "set_limits",
    "visible_member",
]
