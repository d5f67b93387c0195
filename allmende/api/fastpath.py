"""The two generation routes on plain ASGI, in front of the FastAPI app.

``POST /v1/chat/completions`` and ``POST /v1/completions`` are a gateway's hot path. FastAPI's
middleware stack, routing and dependency solving cost about a quarter of the CPU a proxied request
takes (measured with py-spy: ~0.3 of ~1.3 ms), so these two are answered here, before the
FastAPI app sees them: the same endpoint functions (``routes.chat_completions`` and
``routes.completions``), the same request models and the same error rendering
(``errors.error_response``), without the layers between. Any other method or path goes on to
the FastAPI app, which also documents the two routes in its OpenAPI schema.

Request bodies are read here, so this also enforces the body size limit for every route (a 413
before anything parses the body).
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AllmendeError, InvalidRequestError, RequestTooLargeError
from ..protocol import ChatCompletionRequest, CompletionRequest
from . import routes
from .errors import as_allmende_error, error_response, validation_error

Endpoint = Callable[[Any, Request], Awaitable[Response]]

# path -> (body model, endpoint)
ROUTES: dict[str, tuple[type[BaseModel], Endpoint]] = {
    "/v1/chat/completions": (ChatCompletionRequest, routes.chat_completions),
    "/v1/completions": (CompletionRequest, routes.completions),
}


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"The request body is larger than {limit} bytes.", param=None)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body; None when the client went away. Over `limit` bytes: a 413."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (by default it reads none
    without a content type: ``strict_content_type``)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def parse(model: type[BaseModel], body: bytes, content_type: str | None) -> Any:
    """`body` as `model`, with the errors FastAPI gives for a JSON body parameter."""
    if not body:
        raise InvalidRequestError("The request needs a JSON body.")
    value: Any = body
    if _is_json(content_type):
        value = _json(body)
    try:
        return model.model_validate(value, from_attributes=True)  # as FastAPI validates
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise validation_error(RequestValidationError(errors)) from None


def _json(body: bytes) -> Any:
    """`body` parsed as FastAPI parses it (`json`: orjson would differ on NaN and long integers,
    and the request body is small)."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise validation_error(
            RequestValidationError(
                [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}]
            )
        ) from None
    except (ValueError, RecursionError):  # not UTF-8; nested too deep
        raise InvalidRequestError("The request body is not valid UTF-8 JSON.") from None


class FastPath:
    """ASGI middleware: the generation routes answered directly, the body limit for all."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._body(scope, receive)
        except AllmendeError as exc:
            await error_response(exc)(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        route = ROUTES.get(_route_path(scope)) if scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, _replay(body, receive), send)
            return
        response = await self._answer(scope, body, *route)
        await response(scope, receive, send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            raise _too_large(self.limit)
        return await read_body(receive, self.limit)

    async def _answer(
        self, scope: Scope, body: bytes, model: type[BaseModel], endpoint: Endpoint
    ) -> Response:
        request = Request(scope)  # scope["app"] is the FastAPI app, whose state has the services
        try:
            parsed = parse(model, body, request.headers.get("content-type"))
            return await endpoint(parsed, request)
        except Exception as exc:
            return error_response(as_allmende_error(exc))


def _route_path(scope: Scope) -> str:
    """The path the app routes on: without the server's root path (``--root-path``), which
    ASGI servers put in front of ``path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
