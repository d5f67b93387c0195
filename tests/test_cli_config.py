"""The command line and the settings model."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from allmende import __version__
from allmende.cli import cli
from allmende.config import ModelSpec, Settings
from allmende.errors import ConfigError

from .conftest import fake_engine, live_server

DOCS = Path(__file__).parent.parent / "docs" / "config.md"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", [[], ["serve"], ["models"], ["chat"]])
def test_help_everywhere(command: list[str]) -> None:
    code, out = run(*command, "--help")
    assert code == 0 and "Usage:" in out


def test_version() -> None:
    assert run("--version") == (0, f"allmende, version {__version__}\n")


def test_serve_flags_are_generated_from_settings() -> None:
    _, out = run("serve", "--help")
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting '{name}' has no description"
        if name == "openness_policy":
            continue  # a structured block: config file or environment (JSON) only
        flag = "--model" if name == "models" else "--" + name.replace("_", "-")
        assert flag in out, flag


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    for name in Settings.model_fields:
        assert re.search(rf"`{name}`", text), f"docs/config.md does not document '{name}'"


def test_precedence_defaults_file_env_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "allmende.yaml"
    config.write_text(
        "port: 9001\nmax_queue: 7\nretry_after: 9\nmodels:\n  - {id: a, source: fake}\n"
    )
    monkeypatch.setenv("ALLMENDE_MAX_QUEUE", "8")
    monkeypatch.setenv("ALLMENDE_RETRY_AFTER", "10")
    settings = Settings.load(config, retry_after=11)
    assert settings.host == "127.0.0.1"  # default
    assert settings.port == 9001  # file
    assert settings.max_queue == 8  # env beats file
    assert settings.retry_after == 11  # flag beats env
    assert [m.id for m in settings.models] == ["a"]


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Settings.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: -3\n")
    with pytest.raises(ConfigError, match="port"):
        Settings.load(bad)
    bad.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        Settings.load(bad)


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("smollm2", {"source": "smollm2"}),
        ("chat=smollm2", {"id": "chat", "source": "smollm2"}),
        ("big=http://gpu:8000/v1", {"id": "big", "source": "http://gpu:8000/v1"}),
        ("http://h/v1?a=b", {"source": "http://h/v1?a=b"}),
        ("./models/x=y.gguf", {"source": "./models/x=y.gguf"}),
    ],
)
def test_model_flag_parsing(flag: str, expected: dict[str, str]) -> None:
    assert ModelSpec.parse_flag(flag) == expected


def test_models_table_lists_configured_and_packaged() -> None:
    code, out = run("models", "--model", "demo=fake", "--model", "./nowhere.gguf")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "ENGINE", "STATUS", "SOURCE"]
    assert re.search(r"^demo\s+fake\s+ready", out, re.M)
    assert re.search(r"unavailable\s+Model file or directory not found", out)
    assert "smollm2-135m-instruct" in out and "all-minilm-l6-v2" in out


def test_serve_rejects_bad_model_before_binding() -> None:
    code, out = run("serve", "--model", "./nowhere.gguf", "--port", "0")
    assert code != 0 and "not found" in out


def test_chat_embedded_with_fake_engine() -> None:
    code, out = run("chat", "Hello", "--model", "fake")
    assert code == 0
    assert out.strip() == "Hello! I am the fake engine."


async def test_chat_and_models_against_a_running_server() -> None:
    engine = fake_engine("demo", responses=["Remote answer."])
    async with live_server([engine]) as url:
        code, out = await asyncio.to_thread(run, "chat", "Hi", "--url", url)
        assert (code, out.strip()) == (0, "Remote answer.")
        code, out = await asyncio.to_thread(run, "models", "--url", url)
        assert code == 0 and re.search(r"^demo\s+fake\s+2048", out, re.M)
        code, out = await asyncio.to_thread(run, "chat", "Hi", "--url", url, "-m", "nope")
        assert code != 0 and "does not exist" in out


def test_chat_against_unreachable_server() -> None:
    code, out = run("chat", "Hi", "--url", "http://127.0.0.1:9")
    assert code != 0 and "failed" in out


def test_binding_beyond_loopback_needs_a_key(tmp_path: Path) -> None:
    env = {"ALLMENDE_DATA_DIR": str(tmp_path)}
    code, out = run("serve", "--host", "0.0.0.0", "--model", "./nowhere.gguf", env=env)
    assert code != 0 and "Refusing to serve on 0.0.0.0 without authentication" in out
    code, out = run(
        "serve", "--host", "0.0.0.0", "--insecure", "--model", "./nowhere.gguf", env=env
    )
    assert "WARNING: serving on 0.0.0.0 without authentication" in out
    assert "not found" in out  # it went on to resolve the model
    assert run("members", "add", "acme", env=env)[0] == 0
    assert run("keys", "create", "--member", "acme", env=env)[0] == 0
    code, out = run("serve", "--host", "0.0.0.0", "--model", "./nowhere.gguf", env=env)
    assert "Refusing" not in out and "WARNING" not in out and "not found" in out


def test_openness_policy_refuses_models_at_start(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(
        "models:\n  - {id: mystery, source: fake}\n"
        "openness_policy:\n  require_license_known: true\n"
    )
    code, out = run("serve", "--config", str(config), "--port", "0")
    assert code != 0
    assert "Refusing to serve 'mystery' under the openness policy" in out
    assert "require_license_known" in out
    config.write_text(
        "models:\n  - {id: mystery, source: fake}\n"
        "openness_policy:\n  require_license_known: true\n  allow_models: [mystery]\n"
    )
    settings = Settings.load(config)
    assert settings.openness_policy is not None
    assert settings.openness_policy.allow_models == ["mystery"]
    from allmende.cli.options import enforce_policy

    lines: list[str] = []
    enforce_policy(settings.openness_policy, [fake_engine("mystery")], lines.append)
    assert lines and "policy ok: mystery" in lines[0]
