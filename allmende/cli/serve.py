"""`allmende serve`: the OpenAI-compatible server."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from .options import build_engines, load_settings, settings_options, setup_logging

# Engines that hold no model in the process, so that several worker processes may share them.
SHAREABLE_ENGINES = ("upstream", "fake")


@click.command()
@settings_options
def serve(config_file: Path | None, **flags: Any) -> None:
    """Serve models behind the OpenAI API (default: the packaged SmolLM2 and MiniLM).

    \b
    Examples:
      allmende serve
      allmende serve --port 9000 --model ./my-model.Q4_K_M.gguf
      allmende serve -m chat=bartowski/SmolLM2-360M-Instruct-GGUF:Q4_K_M
      allmende serve -m big=http://gpu-box:8000/v1   # front a vLLM deployment
      allmende serve --no-default-models --workers 2 # a gateway of contributed nodes
    """
    import uvicorn

    from ..api import create_app
    from ..gateway.context import new_instance

    settings = load_settings(config_file, flags)
    setup_logging(settings.log_level)
    if settings.binds_beyond_loopback():
        from ..api.gate import active_keys, open_commons

        database = open_commons(settings)
        try:
            has_keys = active_keys(database) > 0
        finally:
            database.dispose()
        if not has_keys and not settings.insecure:
            raise click.ClickException(
                f"Refusing to serve on {settings.host} without authentication: anyone who can "
                "reach the port could use it. Create a key first (allmende members add NAME; "
                "allmende keys create --member NAME), or pass --insecure."
            )
        if not has_keys:
            click.secho(
                f"WARNING: serving on {settings.host} without authentication (--insecure).",
                fg="yellow",
                err=True,
            )
    click.echo("Models:")
    try:
        engines = build_engines(settings, click.echo)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    embedded = [e.model_id for e in engines if e.name not in SHAREABLE_ENGINES]
    if settings.workers > 1 and embedded:
        raise click.ClickException(
            f"--workers {settings.workers} would load {', '.join(embedded)} once per process; "
            "serve embedded models with one worker (their engine batches requests itself), "
            "or use more workers for a gateway of nodes and upstream models "
            "(--no-default-models)."
        )
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        raise click.ClickException(
            f"Cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{port}"
    click.echo(f"Listening on {url} (loading models; {url}/health says when ready)")
    sys.stdout.flush()

    def ready() -> None:
        names = ", ".join(e.model_id for e in engines)
        click.echo(f"Allmende ready: {url}/v1 (models: {names})")
        sys.stdout.flush()

    instance = new_instance()  # one id for every worker of this server (Allmende-Via)

    def run() -> None:
        app = create_app(settings, engines, on_ready=ready, instance=instance)
        config = uvicorn.Config(
            app, log_level=settings.log_level, access_log=settings.log_level == "debug"
        )
        uvicorn.Server(config).run(sockets=[sock])

    if settings.workers == 1:
        run()
        return
    from .workers import run_workers

    click.echo(f"Starting {settings.workers} worker processes")
    run_workers(settings.workers, sock, run)
