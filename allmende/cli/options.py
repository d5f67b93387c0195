"""Click options generated from the settings model, and the shared set-up they feed."""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..config import ModelSpec, Settings
from ..engines import build_engine
from ..engines.base import Engine
from ..errors import ConfigError
from ..models.resolve import DEFAULT_MODELS, resolve
from ..openness.policy import OpennessPolicy

SCALARS: dict[Any, click.ParamType[Any]] = {
    str: click.STRING,
    int: click.INT,
    float: click.FLOAT,
    bool: click.BOOL,
}
# Settings with dedicated options (or none) rather than generated ones.
SPECIAL = {"models"}

F = Callable[..., Any]


def _click_type(annotation: Any) -> click.ParamType[Any] | None:
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    if typing.get_origin(annotation) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    return SCALARS.get(annotation)


def settings_options(func: F) -> F:
    """Add `--config`, `--model` and one flag per scalar setting, generated from `Settings`."""
    for name, field in reversed(list(Settings.model_fields.items())):
        if name in SPECIAL:
            continue
        kind = _click_type(field.annotation)
        if kind is None:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} [default: {field.default}; env ALLMENDE_{name.upper()}]"
        if kind is click.BOOL:
            func = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)(func)
        else:
            func = click.option(flag, name, type=kind, default=None, help=help_text)(func)
    func = click.option(
        "--model",
        "-m",
        "models",
        multiple=True,
        metavar="[ID=]SOURCE",
        help="A model to serve; repeat for several. SOURCE is "
        + str(ModelSpec.model_fields["source"].description),
    )(func)
    func = click.option(
        "--config",
        "-c",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="ALLMENDE_CONFIG",
        default=None,
        help="YAML config file (same keys as the settings). [env ALLMENDE_CONFIG]",
    )(func)
    return func


def load_settings(config_file: Path | None, flags: dict[str, Any]) -> Settings:
    models = flags.pop("models", ())
    if models:
        flags["models"] = [ModelSpec.model_validate(m) for m in models]
    try:
        return Settings.load(config_file, **flags)
    except ConfigError as exc:
        raise click.UsageError(exc.message) from None


def model_specs(settings: Settings) -> list[ModelSpec]:
    if settings.models or not settings.default_models:
        return settings.models
    return [ModelSpec(source=name) for name in DEFAULT_MODELS]


def build_engines(settings: Settings, echo: Callable[[str], None]) -> list[Engine]:
    """Resolve every configured model (downloading when allowed) and build its engine."""
    engines: list[Engine] = []
    seen: set[str] = set()
    for spec in model_specs(settings):
        resolved = resolve(spec, allow_download=settings.hub_download)
        if resolved.id in seen:
            raise ConfigError(f"Two models share the id '{resolved.id}'; give one an ID= prefix.")
        seen.add(resolved.id)
        echo(f"  {resolved.id:<28} {resolved.engine:<9} {resolved.location or '(scripted)'}")
        engines.append(build_engine(resolved, spec, settings))
    if settings.openness_policy is not None:
        enforce_policy(settings.openness_policy, engines, echo)
    return engines


def enforce_policy(
    policy: OpennessPolicy, engines: list[Engine], echo: Callable[[str], None]
) -> None:
    """Refuse to serve any model whose openness report breaks the organisation's policy."""
    from ..api.openness import engine_report
    from ..openness.policy import check

    for engine in engines:
        report = engine_report(engine)
        violations = check(policy, report, engine.model_id)
        if violations:
            raise ConfigError(
                f"Refusing to serve '{engine.model_id}' under the openness policy: "
                + "; ".join(violations)
            )
        summary = report.get("mof", {}).get("class") or "none"
        echo(
            f"  policy ok: {engine.model_id} (MOF class {summary}, "
            f"OSAID {report.get('osaid', {}).get('verdict')})"
        )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
