"""The `allmende` command line: one module per command group."""

from __future__ import annotations

import click

from .. import __version__
from ..commons.cli import audit, keys_group, members, nodes, usage
from .chat import chat
from .models import models
from .openness import catalog, openness
from .serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="allmende")
def cli() -> None:
    """Allmende: serve open models behind the OpenAI API."""


cli.add_command(serve)
cli.add_command(models)
cli.add_command(chat)
cli.add_command(openness)
cli.add_command(catalog)
cli.add_command(members)
cli.add_command(keys_group)
cli.add_command(nodes)
cli.add_command(usage)
cli.add_command(audit)


def main() -> None:
    cli()


__all__ = ["cli", "main"]
