"""`allmende chat`: one question, answered by a running server or an embedded model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import httpx

from ..config import ModelSpec
from ..errors import AllmendeError
from ..protocol import ChatCompletionRequest
from .options import build_engines, load_settings, settings_options


@click.command()
@click.argument("prompt")
@click.option("--url", default=None, help="A running server (e.g. http://127.0.0.1:8000).")
@click.option("--system", "system", default=None, help="A system message.")
@click.option("--max-tokens", type=int, default=256, show_default=True, help="Answer length cap.")
@click.option("--temperature", type=float, default=None, help="Sampling temperature.")
@click.option("--seed", type=int, default=None, help="Seed for reproducible sampling.")
@settings_options
def chat(
    prompt: str,
    url: str | None,
    system: str | None,
    max_tokens: int,
    temperature: float | None,
    seed: int | None,
    config_file: Path | None,
    **flags: Any,
) -> None:
    """Ask PROMPT and stream the answer to standard output.

    Without --url the first configured model (default: packaged SmolLM2) runs in this process.
    """
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "stream": True}
    if temperature is not None:
        body["temperature"] = temperature
    if seed is not None:
        body["seed"] = seed
    if url:
        _remote(url, body, flags.get("models") or ())
    else:
        asyncio.run(_embedded(body, config_file, flags))
    click.echo()


def _remote(url: str, body: dict[str, Any], models: tuple[str, ...]) -> None:
    base = url.rstrip("/").removesuffix("/v1")
    try:
        if models:
            body["model"] = ModelSpec.model_validate(models[0]).id or models[0]
        else:
            listed = httpx.get(f"{base}/v1/models", timeout=10).json()["data"]
            chat_models = [m["id"] for m in listed if m.get("capabilities", {}).get("chat", True)]
            body["model"] = chat_models[0]
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as r:
            if r.status_code != 200:
                r.read()
                raise click.ClickException(r.json()["error"]["message"])
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    raise click.ClickException(event["error"]["message"])
                for choice in event["choices"]:
                    click.echo(choice["delta"].get("content") or "", nl=False)
    except (httpx.HTTPError, IndexError, KeyError) as exc:
        raise click.ClickException(f"Chat with {url} failed: {exc}") from None


async def _embedded(body: dict[str, Any], config_file: Path | None, flags: dict[str, Any]) -> None:
    settings = load_settings(config_file, flags)
    if not settings.models:
        settings = settings.model_copy(update={"models": [ModelSpec(source="smollm2")]})
    try:
        engines = build_engines(
            settings.model_copy(update={"models": settings.models[:1]}), lambda _: None
        )
        engine = engines[0]
        await engine.start()
        request = ChatCompletionRequest.model_validate({**body, "model": engine.model_id})
        async for event in engine.chat(request):
            text = getattr(event, "text", None)
            if text:
                click.echo(text, nl=False)
        await engine.aclose()
    except AllmendeError as exc:
        raise click.ClickException(exc.message) from None
