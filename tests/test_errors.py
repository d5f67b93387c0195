"""The error hierarchy's wire shape is pinned: status, OpenAI type and code per class."""

from __future__ import annotations

import pytest

from allmende import errors
from allmende.api.errors import envelope, error_response


@pytest.mark.parametrize(
    ("cls", "status", "type_", "code"),
    [
        (errors.InvalidRequestError, 400, "invalid_request_error", None),
        (
            errors.ContextLengthExceededError,
            400,
            "invalid_request_error",
            "context_length_exceeded",
        ),
        (errors.UnsupportedParameterError, 400, "invalid_request_error", "unsupported_parameter"),
        (errors.RequestTooLargeError, 413, "invalid_request_error", "request_too_large"),
        (errors.AuthenticationError, 401, "authentication_error", "invalid_api_key"),
        (errors.PermissionDeniedError, 403, "permission_error", "permission_denied"),
        (errors.ConflictError, 409, "invalid_request_error", "conflict"),
        (errors.NotFoundError, 404, "invalid_request_error", "not_found"),
        (errors.ModelNotFoundError, 404, "invalid_request_error", "model_not_found"),
        (errors.RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
        (errors.OverloadedError, 503, "server_error", "server_overloaded"),
        (errors.EngineError, 500, "server_error", None),
        (errors.UpstreamError, 502, "server_error", "upstream_error"),
        (errors.UpstreamTimeoutError, 504, "server_error", "upstream_timeout"),
    ],
)
def test_error_classes(
    cls: type[errors.AllmendeError], status: int, type_: str, code: str | None
) -> None:
    error = cls("Something is wrong.", param="p")
    assert envelope(error) == {
        "error": {"message": "Something is wrong.", "type": type_, "param": "p", "code": code}
    }
    response = error_response(error)
    assert response.status_code == status
    assert "retry-after" not in response.headers


def test_retry_after_header_rounds_up() -> None:
    response = error_response(errors.RateLimitError("Slow down.", retry_after=1.2))
    assert response.headers["retry-after"] == "2"


def test_every_error_class_is_in_the_documented_tree() -> None:
    doc = errors.__doc__ or ""
    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, errors.AllmendeError):
            assert name in doc, f"{name} is missing from the tree in errors.py's docstring"
