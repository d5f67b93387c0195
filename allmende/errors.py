"""The one error hierarchy of Allmende.

Every failure a client can see is one of these; `allmende.api.errors` renders them, in one place,
as the OpenAI envelope ``{"error": {"message", "type", "param", "code"}}`` with ``status``.

    AllmendeError                      500 server_error
    ├── InvalidRequestError            400 invalid_request_error
    │   ├── ContextLengthExceededError 400 code=context_length_exceeded
    │   ├── UnsupportedParameterError  400 code=unsupported_parameter
    │   └── RequestTooLargeError       413 code=request_too_large
    ├── AuthenticationError            401 authentication_error code=invalid_api_key
    ├── PermissionDeniedError          403 permission_error code=permission_denied
    ├── ConflictError                  409 invalid_request_error code=conflict
    ├── NotFoundError                  404 invalid_request_error (code=not_found)
    │   └── ModelNotFoundError         404 code=model_not_found
    ├── RateLimitError                 429 rate_limit_error (Retry-After)
    ├── OverloadedError                503 server_error code=server_overloaded (Retry-After)
    ├── EngineError                    500 server_error (message never carries internals)
    │   ├── UpstreamError              502 server_error code=upstream_error
    │   └── UpstreamTimeoutError       504 server_error code=upstream_timeout
    ├── LoopDetectedError              508 server_error code=loop_detected (Allmende-Via)
    └── ConfigError                    (start-up only: bad settings or model sources)
"""

from __future__ import annotations


class AllmendeError(Exception):
    """Base of every error Allmende raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class InvalidRequestError(AllmendeError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    code = "context_length_exceeded"


class UnsupportedParameterError(InvalidRequestError):
    code = "unsupported_parameter"


class RequestTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"


class AuthenticationError(AllmendeError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(AllmendeError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ConflictError(AllmendeError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class NotFoundError(AllmendeError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class RateLimitError(AllmendeError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class OverloadedError(AllmendeError):
    status = 503
    type = "server_error"
    code = "server_overloaded"


class EngineError(AllmendeError):
    """The engine failed. The message is shown to clients, so it must not carry internals."""


class UpstreamError(EngineError):
    status = 502
    code = "upstream_error"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"


class LoopDetectedError(AllmendeError):
    """The request came back to a server it had passed (a node that leads to its gateway)."""

    status = 508
    type = "server_error"
    code = "loop_detected"


class ConfigError(AllmendeError):
    """Settings or a model source are wrong; raised before serving starts."""
