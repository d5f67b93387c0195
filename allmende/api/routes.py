"""The OpenAI-compatible routes. Each is a few lines: resolve, call the service, render."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from ..commons.keys import Principal
from ..engines.base import Engine
from ..errors import InvalidRequestError
from ..gateway import context
from ..protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from .gate import Gate, Outcome
from .metrics import Metrics
from .openness import openness_summary
from .serving import Generation, ModelRegistry, check_request

router = APIRouter()


def _models(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.models
    return registry


def _gate(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


async def _admit(request: Request) -> Principal | None:
    return await _gate(request).admit(request)


def _via(request: Request) -> tuple[str, ...]:
    """The servers the request passed, this one added; 508 when it passed this one before."""
    instance: str = request.app.state.instance
    return context.passed(request.headers.get(context.VIA_HEADER), instance)


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def model_object(engine: Engine) -> dict[str, Any]:
    card = engine.card()
    return {
        "id": card.id,
        "object": "model",
        "created": card.created,
        "owned_by": card.owned_by,
        "context_length": card.context_length,
        "engine": card.engine,
        "capabilities": {k: v for k, v in vars(engine.capabilities).items() if isinstance(v, bool)},
        **card.extra,
        "openness": openness_summary(engine),
    }


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    _via(request)  # a gateway health-checking itself as a node hears 508
    await _admit(request)
    engines = _models(request).listed()
    return {"object": "list", "data": [model_object(e) for e in engines]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    _via(request)
    await _admit(request)
    registry = _models(request)
    engine = registry.find(model_id)
    if engine is None:
        registry.get(model_id)  # raises model_not_found
    assert engine is not None
    return model_object(engine)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> JSONResponse | StreamingResponse:
    via = _via(request)
    principal = await _admit(request)
    check_request(body, "chat")
    body.stops()  # validate early
    engine = _models(request).get(body.model)
    generation = Generation(
        "chat", engine, body, _metrics(request), _gate(request), principal, via=via
    )
    return await generation.respond()


@router.post("/v1/completions", response_model=None)
async def completions(
    body: CompletionRequest, request: Request
) -> JSONResponse | StreamingResponse:
    via = _via(request)
    principal = await _admit(request)
    check_request(body, "completions")
    body.stops()
    engine = _models(request).get(body.model)
    generation = Generation(
        "completion", engine, body, _metrics(request), _gate(request), principal, via=via
    )
    return await generation.respond()


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    via = _via(request)
    principal = await _admit(request)
    check_request(body, "embeddings")
    texts = body.inputs()
    if len(texts) > 2048:
        raise InvalidRequestError("At most 2048 inputs per request.", param="input")
    engine = _models(request).get(body.model)
    placed = context.RequestContext(principal.member_id if principal else None, via=via)
    token = context.current.set(placed)
    try:
        result = await engine.embed(texts)
    finally:
        context.current.reset(token)
    vectors = result.vectors
    if body.dimensions is not None:
        if body.dimensions > len(vectors[0]):
            raise InvalidRequestError(
                f"'dimensions' is at most {len(vectors[0])} for this model.", param="dimensions"
            )
        cut = np.asarray(vectors, dtype=np.float32)[:, : body.dimensions]
        cut /= np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)
        vectors = cut.tolist()
    metrics = _metrics(request)
    metrics.requests.labels(body.model, "/v1/embeddings", "200").inc()
    metrics.prompt_tokens.labels(body.model).inc(result.prompt_tokens)
    outcome = Outcome(body.model, "/v1/embeddings", 200, prompt_tokens=result.prompt_tokens)
    await _gate(request).account(principal, outcome)
    data: list[dict[str, Any]] = []
    for i, vector in enumerate(vectors):
        value: list[float] | str = vector
        if body.encoding_format == "base64":
            value = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    registry = _models(request)
    if registry.failed:
        return JSONResponse({"status": "error", "detail": registry.failed}, status_code=503)
    if not registry.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ok", "models": list(registry.engines)})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return PlainTextResponse(
        _metrics(request).render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
