"""The one place where errors become HTTP responses: the OpenAI error envelope."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AllmendeError, EngineError, InvalidRequestError, NotFoundError

log = logging.getLogger("allmende.api")


def envelope(error: AllmendeError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }


def error_response(error: AllmendeError) -> JSONResponse:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return JSONResponse(envelope(error), status_code=error.status, headers=headers)


def sse_error(error: AllmendeError) -> str:
    """An error as a Server-Sent Event, for failures after a stream has begun."""
    return f"data: {json.dumps(envelope(error))}\n\n"


def as_allmende_error(exc: BaseException) -> AllmendeError:
    """Any exception as an Allmende error; unexpected ones are logged and hidden."""
    if isinstance(exc, AllmendeError):
        return exc
    log.exception("Unexpected error", exc_info=exc)
    return EngineError("The server had an internal error while processing the request.")


def _param(loc: tuple[int | str, ...]) -> str | None:
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-after", "function-before", "tagged-union")):
            out += f".{part}" if out else str(part)
    return out or None


def validation_error(exc: RequestValidationError) -> InvalidRequestError:
    errors = exc.errors()
    if not errors:
        return InvalidRequestError("The request body is invalid.")
    first = errors[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidRequestError(
            "The request body is not valid JSON: " + str(first.get("msg", "")), param=None
        )
    if kind == "model_attributes_type" and tuple(first.get("loc", ())) == ("body",):
        if isinstance(first.get("input"), bytes):  # not read as JSON, for its content type
            return InvalidRequestError(
                "The request body must be JSON, sent with 'Content-Type: application/json'."
            )
        return InvalidRequestError("The request body must be a JSON object.")
    if tuple(first.get("loc", ())) == ("body",) and kind == "missing":
        return InvalidRequestError("The request needs a JSON body.")
    param = _param(tuple(first.get("loc", ())))
    message = str(first.get("msg", "Invalid value")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return InvalidRequestError(f"Invalid '{param}': {message}{more}", param=param)


def install(app: FastAPI) -> None:
    """Register the handlers that render every error as the OpenAI envelope."""

    async def on_allmende(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AllmendeError)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error: AllmendeError
        if exc.status_code == 404:
            error = NotFoundError("Not found.")
        elif exc.status_code == 405:
            error = InvalidRequestError("Method not allowed.")
            error.status = 405
        elif exc.status_code == 400 and "parsing the body" in str(exc.detail):
            error = InvalidRequestError("The request body is not valid UTF-8 JSON.")
        elif exc.status_code < 500:
            error = InvalidRequestError(str(exc.detail))
            error.status = exc.status_code
        else:
            error = EngineError("The server had an internal error while processing the request.")
        return error_response(error)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(as_allmende_error(exc))

    app.add_exception_handler(AllmendeError, on_allmende)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
