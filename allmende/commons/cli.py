"""Command groups of the commons: ``members``, ``keys``, ``nodes``, ``usage`` and ``audit``.

Each takes ``--database-url`` (default: ``$ALLMENDE_DATABASE_URL``, else SQLite ``allmende.db`` in
``$ALLMENDE_DATA_DIR`` or ``~/.local/share/allmende``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import AllmendeError
from . import db, joins, keys, ledger
from . import members as members_mod
from . import nodes as nodes_mod
from .audit import AuditLog, format_ts

F = TypeVar("F", bound=Callable[..., Any])
DURATION_RE = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def database_option(func: F) -> F:
    return click.option(
        "--database-url",
        envvar="ALLMENDE_DATABASE_URL",
        default=None,
        metavar="URL",
        help="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
        "[default: $ALLMENDE_DATABASE_URL, else allmende.db in the data directory]",
    )(func)


def _open(ctx: click.Context) -> Engine:
    url = ctx.obj.get("database_url") if isinstance(ctx.obj, dict) else None
    try:
        engine = db.open_database(url or db.default_database_url())
    except (SQLAlchemyError, ValueError, OSError) as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from None
    ctx.call_on_close(engine.dispose)
    return engine


def _group_setup(ctx: click.Context, database_url: str | None) -> None:
    ctx.ensure_object(dict)
    ctx.obj["database_url"] = database_url


def _fail(exc: AllmendeError) -> click.ClickException:
    return click.ClickException(exc.message)


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """``30d``/``12h``/``90m``/``2w``/``45s`` from now, or an ISO date or time (UTC if naive)."""
    now = now or db.now()
    if match := DURATION_RE.match(text.strip()):
        return now + timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"'{text}' is neither a duration (30d) nor an ISO date") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ts(value: datetime | None) -> str:
    return "" if value is None else format_ts(value)


# ---- members -------------------------------------------------------------------------------


@click.group()
@database_option
@click.pass_context
def members(ctx: click.Context, database_url: str | None) -> None:
    """Members of the commons (organisations, teams)."""
    _group_setup(ctx, database_url)


@members.command("add")
@click.argument("name")
@click.pass_context
def members_add(ctx: click.Context, name: str) -> None:
    """Add a member."""
    try:
        member = members_mod.add_member(_open(ctx), name)
    except AllmendeError as exc:
        raise _fail(exc) from None
    click.echo(f"Added member {member.name} (id {member.id}).")


@members.command("list")
@click.option("--all", "include_removed", is_flag=True, help="Include removed members.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def members_list(ctx: click.Context, include_removed: bool, as_json: bool) -> None:
    """List members."""
    found = members_mod.list_members(_open(ctx), include_removed=include_removed)
    rows = [
        {"id": m.id, "name": m.name, "created": _ts(m.created), "removed": _ts(m.removed) or None}
        for m in found
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        removed = f"  removed {row['removed']}" if row["removed"] else ""
        click.echo(f"{row['id']:>5}  {row['name']:<32} created {row['created']}{removed}")


@members.command("remove")
@click.argument("name")
@click.pass_context
def members_remove(ctx: click.Context, name: str) -> None:
    """Remove a member: its keys are revoked, its nodes retired, its history kept."""
    try:
        member = members_mod.remove_member(_open(ctx), name)
    except AllmendeError as exc:
        raise _fail(exc) from None
    click.echo(f"Removed member {member.name}; its keys are revoked, its history is kept.")


# ---- keys ----------------------------------------------------------------------------------


@click.group("keys")
@database_option
@click.pass_context
def keys_group(ctx: click.Context, database_url: str | None) -> None:
    """API keys (stored only as hashes)."""
    _group_setup(ctx, database_url)


def _key_ref(ref: str) -> str | int:
    return int(ref) if ref.isdigit() else ref


@keys_group.command("create")
@click.option("--member", required=True, help="The member the key belongs to.")
@click.option("--scope", type=click.Choice(keys.SCOPES), default="member", show_default=True)
@click.option("--expires", default=None, help="A duration (30d, 12h) or an ISO date.")
@click.option("--rpm", type=click.IntRange(min=0), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=0), default=None, help="Tokens per minute.")
@click.option("--tpd", type=click.IntRange(min=0), default=None, help="Tokens per day.")
@click.pass_context
def keys_create(
    ctx: click.Context,
    member: str,
    scope: keys.Scope,
    expires: str | None,
    rpm: int | None,
    tpm: int | None,
    tpd: int | None,
) -> None:
    """Create a key and print it. It is shown this once; only its hash is stored."""
    when = parse_when(expires) if expires else None
    try:
        new = keys.create_key(
            _open(ctx), member, scope=scope, expires=when, limits=keys.Limits(rpm, tpm, tpd)
        )
    except AllmendeError as exc:
        raise _fail(exc) from None
    click.echo(new.secret)
    click.echo(
        f"Key {new.info.id} ({new.info.prefix}..., scope {scope}) for {member}. "
        "Store it now: it cannot be shown again.",
        err=True,
    )


def _key_dict(info: keys.KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "member": info.member,
        "prefix": info.prefix,
        "scope": info.scope,
        "created": _ts(info.created),
        "expires": _ts(info.expires) or None,
        "revoked": _ts(info.revoked) or None,
        "rpm": info.limits.rpm,
        "tpm": info.limits.tpm,
        "tpd": info.limits.tpd,
    }


@keys_group.command("list")
@click.option("--member", default=None, help="Only this member's keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def keys_list(ctx: click.Context, member: str | None, as_json: bool) -> None:
    """List keys (prefixes only; the keys themselves are not stored)."""
    rows = [_key_dict(info) for info in keys.list_keys(_open(ctx), member)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "revoked" if r["revoked"] else f"expires {r['expires']}" if r["expires"] else ""
        click.echo(f"{r['id']:>5}  {r['prefix']}...  {r['member']:<24} {r['scope']:<7} {state}")


@keys_group.command("revoke")
@click.argument("key")
@click.pass_context
def keys_revoke(ctx: click.Context, key: str) -> None:
    """Revoke a key, given its id or prefix."""
    try:
        info = keys.revoke_key(_open(ctx), _key_ref(key))
    except AllmendeError as exc:
        raise _fail(exc) from None
    click.echo(f"Revoked key {info.id} ({info.prefix}...) of {info.member}.")


@keys_group.command("limits")
@click.argument("key")
@click.option("--rpm", type=click.IntRange(min=0), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=0), default=None, help="Tokens per minute.")
@click.option("--tpd", type=click.IntRange(min=0), default=None, help="Tokens per day.")
@click.pass_context
def keys_limits(
    ctx: click.Context, key: str, rpm: int | None, tpm: int | None, tpd: int | None
) -> None:
    """Set a key's limits (those not given become unlimited)."""
    try:
        info = keys.set_limits(_open(ctx), _key_ref(key), keys.Limits(rpm, tpm, tpd))
    except AllmendeError as exc:
        raise _fail(exc) from None
    click.echo(json.dumps(_key_dict(info)))


# ---- usage ---------------------------------------------------------------------------------


@click.command()
@database_option
@click.option("--member", default=None, help="Only this member.")
@click.option("--since", default=None, help="A duration back from now (7d) or an ISO date.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def usage(
    ctx: click.Context,
    database_url: str | None,
    member: str | None,
    since: str | None,
    as_json: bool,
) -> None:
    """Usage per member and model, and each member's contribution (tokens its nodes served)."""
    _group_setup(ctx, database_url)
    engine = _open(ctx)
    start = None
    if since:
        start = parse_when(since) if not DURATION_RE.match(since) else _ago(since)
    try:
        member_id = members_mod.find_member(engine, member).id if member else None
    except AllmendeError as exc:
        raise _fail(exc) from None
    rows = ledger.usage(engine, member_id=member_id, since=start)
    given = ledger.contribution(engine, member_id=member_id, since=start)
    if as_json:
        out = {
            "since": _ts(start) or None,
            "usage": [r.to_dict() for r in rows],
            "contribution": [c.to_dict() for c in given],
        }
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{'member':<24} {'model':<32} {'requests':>9} {'errors':>7} {'tokens':>12}")
    for r in rows:
        click.echo(
            f"{r.member:<24} {r.model:<32} {r.requests:>9} {r.errors:>7} {r.total_tokens:>12}"
        )
    if given:
        click.echo("\ncontribution (tokens served to other members by the member's nodes)")
        for c in given:
            click.echo(f"{c.member:<24} {c.requests:>9} requests {c.tokens:>12} tokens")


def _ago(text: str) -> datetime:
    now = db.now()
    return now - (parse_when(text, now=now) - now)


# ---- nodes ---------------------------------------------------------------------------------


@click.group()
@database_option
@click.pass_context
def nodes(ctx: click.Context, database_url: str | None) -> None:
    """Inference nodes members contribute (any OpenAI-compatible server).

    \b
    A running gateway re-reads this list at every health check (node_check_interval), so
    added and removed nodes take effect without a restart.
    """
    _group_setup(ctx, database_url)


def node_options(func: F) -> F:
    """--name, --slots and --api-key-env: how a node is registered (`add` and `join`)."""
    func = click.option(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="Environment variable holding a key the gateway sends to the node as Bearer.",
    )(func)
    func = click.option(
        "--slots",
        type=click.IntRange(1, nodes_mod.MAX_SLOTS),
        default=4,
        show_default=True,
        help="Requests the gateway sends the node at once.",
    )(func)
    return click.option("--name", default=None, help="A name for listings [default: HOST:PORT].")(
        func
    )


def _env_key(var: str | None) -> str | None:
    """The node key held in environment variable `var` (None when no variable is named)."""
    if not var:
        return None
    import os

    value = os.environ.get(var)
    if not value:
        raise click.BadParameter(f"${var} is not set", param_hint="--api-key-env")
    return value


@nodes.command("add")
@click.argument("url")
@click.option("--member", required=True, help="The member contributing the node.")
@node_options
@click.pass_context
def nodes_add(
    ctx: click.Context,
    url: str,
    member: str,
    name: str | None,
    slots: int,
    api_key_env: str | None,
) -> None:
    """Add a node by its base URL (http://HOST:PORT or http://HOST:PORT/v1)."""
    api_key = _env_key(api_key_env)
    try:
        node = nodes_mod.add_node(_open(ctx), member, name, url, slots=slots, api_key=api_key)
    except AllmendeError as exc:
        raise _fail(exc) from None
    click.echo(f"Added node {node.id} ({node.name}, {node.url}, {node.slots} slots) of {member}.")


@nodes.command("list")
@click.option("--member", default=None, help="Only this member's nodes.")
@click.option("--check", is_flag=True, help="Ask each node for its models now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def nodes_list(ctx: click.Context, member: str | None, check: bool, as_json: bool) -> None:
    """List active nodes."""
    rows = [n.to_dict() for n in nodes_mod.list_nodes(_open(ctx), member)]
    if check:
        for row in rows:
            row["models"], row["error"] = _probe(row["url"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        line = f"{row['id']:>5}  {row['member']:<20} {row['name']:<24} {row['url']}"
        line += f"  slots={row['slots']}"
        if check:
            line += f"  {'down: ' + row['error'] if row['error'] else ', '.join(row['models'])}"
        click.echo(line)


def _probe(url: str) -> tuple[list[str], str | None]:
    import httpx

    from ..engines.upstream import base_url

    try:
        response = httpx.get(base_url(url) + "/models", timeout=5)
        response.raise_for_status()
        return [str(m.get("id")) for m in response.json().get("data") or []], None
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return [], str(exc) or type(exc).__name__


@nodes.command("remove")
@click.argument("node_id", type=int)
@click.pass_context
def nodes_remove(ctx: click.Context, node_id: int) -> None:
    """Retire a node (its ledger history stays)."""
    try:
        nodes_mod.remove_node(_open(ctx), node_id)
    except AllmendeError as exc:
        raise _fail(exc) from None
    click.echo(f"Removed node {node_id}.")


@nodes.command("token")
@click.option("--member", required=True, help="The member whose node will join with it.")
@click.option(
    "--expires", default="24h", show_default=True, help="A duration (24h, 7d) or an ISO date."
)
@click.option(
    "--max-slots",
    type=click.IntRange(1, nodes_mod.MAX_SLOTS),
    default=None,
    help="The most slots the joining node may ask for [default: no cap].",
)
@click.pass_context
def nodes_token(ctx: click.Context, member: str, expires: str, max_slots: int | None) -> None:
    """Create a one-time join token for a member's node and print it.

    \b
    Whoever runs the node then registers it, from any machine that reaches the gateway:
      ALLMENDE_JOIN_TOKEN=alj-... allmende nodes join https://GATEWAY --url http://NODE:8000
    The token is shown this once; only its hash is stored.
    """
    try:
        new = joins.create_token(
            _open(ctx), member, expires=parse_when(expires), max_slots=max_slots
        )
    except AllmendeError as exc:
        raise _fail(exc) from None
    click.echo(new.secret)
    click.echo(
        f"Join token {new.info.id} ({new.info.prefix}...) for a node of {member}, valid until "
        f"{_ts(new.info.expires)}, once. Store it now: it cannot be shown again.",
        err=True,
    )


@nodes.command("tokens")
@click.option("--member", default=None, help="Only this member's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def nodes_tokens(ctx: click.Context, member: str | None, as_json: bool) -> None:
    """List join tokens (newest first) and the node each one added."""
    rows = [t.to_dict() for t in joins.list_tokens(_open(ctx), member)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        if row["used"]:
            state = f"used by node {row['node_id']}"
        elif row["revoked"]:
            state = f"revoked {row['revoked']}"
        else:
            state = f"expires {row['expires']}"
        click.echo(f"{row['id']:>5}  {row['member']:<20} {row['prefix']}...  {state}")


@nodes.command("revoke-token")
@click.argument("token_id", type=int)
@click.pass_context
def nodes_revoke_token(ctx: click.Context, token_id: int) -> None:
    """Make an unused join token unusable."""
    try:
        token = joins.revoke(_open(ctx), token_id)
    except AllmendeError as exc:
        raise _fail(exc) from None
    if token.used is not None:
        raise click.ClickException(
            f"join token {token_id} was already used by node {token.node_id}"
        )
    click.echo(f"Revoked join token {token_id} ({token.prefix}...).")


@nodes.command("join")
@click.argument("gateway")
@click.option(
    "--url", "node_url", required=True, help="This node's base URL, as the gateway reaches it."
)
@click.option(
    "--token",
    envvar="ALLMENDE_JOIN_TOKEN",
    required=True,
    help="The join token (better through $ALLMENDE_JOIN_TOKEN than on the command line).",
)
@node_options
def nodes_join(
    gateway: str,
    node_url: str,
    token: str,
    name: str | None,
    slots: int,
    api_key_env: str | None,
) -> None:
    """Register a node with the gateway at GATEWAY, using a join token.

    The gateway checks that it can list the node's models at --url before adding it.
    """
    import httpx

    from ..engines.upstream import base_url

    body: dict[str, Any] = {"url": node_url, "slots": slots}
    if name:
        body["name"] = name
    if api_key := _env_key(api_key_env):
        body["api_key"] = api_key
    target = base_url(gateway) + "/nodes/join"
    try:
        response = httpx.post(
            target, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the gateway at {target}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code != 201:
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else response.text[:300]
        raise click.ClickException(f"the gateway refused (HTTP {response.status_code}): {message}")
    models = ", ".join(answer.get("models") or []) or "no models yet"
    click.echo(
        f"Joined as node {answer.get('id')} ({answer.get('name')}) of {answer.get('member')}, "
        f"offering {models}."
    )


# ---- audit ---------------------------------------------------------------------------------


@click.group()
@database_option
@click.pass_context
def audit(ctx: click.Context, database_url: str | None) -> None:
    """The tamper-evident audit log."""
    _group_setup(ctx, database_url)


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Check the hash chain; exits 1 and names the first bad record if it is broken."""
    result = AuditLog(_open(ctx)).verify()
    if as_json:
        click.echo(json.dumps(result.__dict__))
    elif result.ok:
        click.echo(f"OK: {result.checked} records, head {result.head_seq} {result.head_hash}")
    else:
        click.echo(f"BROKEN at record {result.first_bad_seq}: {result.reason}", err=True)
    if not result.ok:
        ctx.exit(1)


@audit.command("list")
@click.option("--member", default=None, help="Only records about this member.")
@click.option("--after", "after_seq", type=int, default=0, help="Records after this seq.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.pass_context
def audit_list(ctx: click.Context, member: str | None, after_seq: int, limit: int) -> None:
    """Print records as JSON lines."""
    engine = _open(ctx)
    try:
        member_id = members_mod.find_member(engine, member).id if member else None
    except AllmendeError as exc:
        raise _fail(exc) from None
    log = AuditLog(engine)
    for record in log.records(member_id=member_id, after_seq=after_seq, limit=limit):
        click.echo(json.dumps(record.to_dict()))


__all__ = ["audit", "keys_group", "members", "usage"]
