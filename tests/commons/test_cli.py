"""The members, keys, usage and audit commands."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from allmende.commons import db, keys, ledger
from allmende.commons.audit import AuditLog
from allmende.commons.cli import audit, keys_group, members, parse_when, usage


@click.group()
def cli() -> None:
    pass


for command in (members, keys_group, usage, audit):
    cli.add_command(command)


def run(db_url: str, *args: str, ok: bool = True) -> Result:
    group, rest = args[0], args[1:]
    argv: Sequence[str] = [group, "--database-url", db_url, *rest]
    result = CliRunner().invoke(cli, argv)
    if ok:
        assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


def test_members_and_keys(db_url: str) -> None:
    run(db_url, "members", "add", "acme")
    assert "already exists" in run(db_url, "members", "add", "acme", ok=False).output
    listed = json.loads(run(db_url, "members", "list", "--json").stdout)
    assert [m["name"] for m in listed] == ["acme"]

    created = run(db_url, "keys", "create", "--member", "acme", "--expires", "30d", "--rpm", "5")
    secret = created.stdout.strip()
    assert secret.startswith("alm-") and "\n" not in secret
    assert "cannot be shown again" in created.stderr
    engine = db.open_database(db_url)
    assert keys.authenticate(engine, secret).limits == keys.Limits(rpm=5)

    listed_keys = run(db_url, "keys", "list", "--json").stdout
    assert secret not in listed_keys
    (info,) = json.loads(listed_keys)
    assert info["prefix"] == secret[: keys.PREFIX_LEN] and info["expires"]
    assert secret not in run(db_url, "keys", "list").stdout

    run(db_url, "keys", "limits", str(info["id"]), "--tpd", "10")
    assert keys.get_key(engine, info["id"]).limits == keys.Limits(tpd=10)
    run(db_url, "keys", "revoke", info["prefix"])
    assert keys.get_key(engine, info["id"]).revoked is not None
    assert run(db_url, "keys", "revoke", "alm-nope", ok=False).exit_code == 1

    run(db_url, "keys", "create", "--member", "acme", "--scope", "admin")
    run(db_url, "members", "remove", "acme")
    assert all(k.revoked for k in keys.list_keys(engine))
    assert json.loads(run(db_url, "members", "list", "--json").stdout) == []
    assert run(db_url, "keys", "create", "--member", "acme", ok=False).exit_code == 1
    engine.dispose()


def test_usage_json(db_url: str) -> None:
    run(db_url, "members", "add", "acme")
    run(db_url, "members", "add", "beta")
    engine = db.open_database(db_url)
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(db.members.c.name, db.members.c.id)).all())
    for name in ("acme", "beta", "beta"):
        entry = ledger.LedgerEntry(ids[name], "m", 3, 4, 10, 200)
        ledger.record(engine, entry)
    engine.dispose()
    out = json.loads(run(db_url, "usage", "--json").stdout)
    assert [(u["member"], u["requests"], u["total_tokens"]) for u in out["usage"]] == [
        ("acme", 1, 7),
        ("beta", 2, 14),
    ]
    only = json.loads(run(db_url, "usage", "--member", "beta", "--since", "1d", "--json").stdout)
    assert [u["member"] for u in only["usage"]] == ["beta"]
    assert "beta" in run(db_url, "usage").stdout
    assert run(db_url, "usage", "--member", "nobody", ok=False).exit_code == 1


def test_audit_verify_and_list(db_url: str) -> None:
    engine = db.open_database(db_url)
    log = AuditLog(engine)
    for i in range(5):
        log.append("request", {"i": i}, member_id=1)
    assert "OK: 5 records" in run(db_url, "audit", "verify").stdout
    lines = run(db_url, "audit", "list", "--after", "2").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3, 4, 5]
    with db.write(engine) as conn:
        conn.execute(sa.update(db.audit).where(db.audit.c.seq == 3).values(kind="forged"))
    engine.dispose()
    result = run(db_url, "audit", "verify", ok=False)
    assert result.exit_code == 1
    assert "BROKEN at record 3" in result.stderr
    as_json = json.loads(run(db_url, "audit", "verify", "--json", ok=False).stdout)
    assert as_json["first_bad_seq"] == 3 and as_json["ok"] is False


def test_database_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALLMENDE_DATABASE_URL", raising=False)
    monkeypatch.setenv("ALLMENDE_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(cli, ["members", "add", "acme"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "allmende.db").exists()
    url = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("ALLMENDE_DATABASE_URL", url)
    assert CliRunner().invoke(cli, ["members", "add", "beta"]).exit_code == 0
    assert (tmp_path / "other.db").exists()


def test_bad_database_url() -> None:
    result = CliRunner().invoke(cli, ["members", "--database-url", "mysql://x/y", "list"])
    assert result.exit_code == 1 and "cannot open the database" in result.output


def test_parse_when() -> None:
    now = db.now()
    assert (parse_when("2d", now=now) - now).days == 2
    assert parse_when("2030-01-01").tzinfo is not None
    with pytest.raises(click.BadParameter):
        parse_when("soon")
