"""Request models that mirror the OpenAI wire format.

They are tolerant but visibly so: unknown fields are kept (``extra="allow"``) and the API logs
them; fields OpenAI defines that Allmende does not implement are listed in ``UNSUPPORTED`` and
rejected with a 400 that names the parameter. Fields follow the order of OpenAI's reference.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InvalidRequestError, UnsupportedParameterError


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    def unknown_fields(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())


# -- shared fields ------------------------------------------------------------------------------

Temperature = Annotated[float | None, Field(default=None, ge=0.0, le=2.0)]
TopP = Annotated[float | None, Field(default=None, gt=0.0, le=1.0)]
Penalty = Annotated[float | None, Field(default=None, ge=-2.0, le=2.0)]
MaxTokens = Annotated[int | None, Field(default=None, ge=1)]
Seed = Annotated[int | None, Field(default=None, ge=-(2**63), le=2**64 - 1)]
ChoiceCount = Annotated[int, Field(default=1, ge=1, le=16)]


class StreamOptions(OpenAIModel):
    include_usage: bool = False


def _stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > 4:
        raise InvalidRequestError("At most 4 stop sequences are allowed.", param="stop")
    if any(s == "" for s in stops):
        raise InvalidRequestError("Stop sequences must not be empty.", param="stop")
    return stops


# -- chat ---------------------------------------------------------------------------------------


class TextPart(OpenAIModel):
    type: Literal["text"]
    text: str


class ImagePart(OpenAIModel):
    type: Literal["image_url", "input_audio", "file"]


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(OpenAIModel):
    name: str
    arguments: str


class ToolCall(OpenAIModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs 'tool_call_id'")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a message with role '{self.role}' needs 'content'")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self

    def text(self) -> str:
        """The message content as plain text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class FunctionDefinition(OpenAIModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


class Tool(OpenAIModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(OpenAIModel):
    name: str


class NamedToolChoice(OpenAIModel):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(OpenAIModel):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs 'json_schema'")
        return self


# Fields of the OpenAI API that Allmende recognises but does not implement, and the value that
# is harmless (the default). Any other value is a 400 naming the parameter.
UNSUPPORTED: dict[str, Any] = {
    "logprobs": False,
    "top_logprobs": None,
    "logit_bias": None,
    "audio": None,
    "prediction": None,
    "modalities": None,
    "web_search_options": None,
    "functions": None,
    "function_call": None,
    "best_of": 1,
    "echo": False,
    "suffix": None,
}


def reject_unsupported(model: OpenAIModel) -> None:
    extra = model.model_extra or {}
    for name, harmless in UNSUPPORTED.items():
        if name in extra and extra[name] not in (harmless, None):
            raise UnsupportedParameterError(
                f"The parameter '{name}' is not supported by this server.", param=name
            )


class ChatCompletionRequest(OpenAIModel):
    messages: list[ChatMessage] = Field(min_length=1)
    model: str = Field(min_length=1)
    frequency_penalty: Penalty = None
    max_completion_tokens: MaxTokens = None
    max_tokens: MaxTokens = None
    n: ChoiceCount = 1
    parallel_tool_calls: bool | None = None
    presence_penalty: Penalty = None
    response_format: ResponseFormat | None = None
    seed: Seed = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[Tool] | None = None
    top_p: TopP = None
    user: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ChatCompletionRequest:
        for i, message in enumerate(self.messages):
            if isinstance(message.content, list):
                for part in message.content:
                    if not isinstance(part, TextPart):
                        raise UnsupportedParameterError(
                            f"Content parts of type '{part.type}' are not supported; "
                            "this server takes text only.",
                            param=f"messages[{i}].content",
                        )
        return self

    def stops(self) -> list[str]:
        return _stop_list(self.stop)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def effective_tool_choice(self) -> str | NamedToolChoice:
        """`none`, `auto`, `required` or a named function, after OpenAI's defaults."""
        if not self.tools:
            if self.tool_choice not in (None, "none"):
                raise InvalidRequestError(
                    "'tool_choice' is set but no 'tools' are given.", param="tool_choice"
                )
            return "none"
        choice = self.tool_choice or "auto"
        if isinstance(choice, NamedToolChoice):
            names = {t.function.name for t in self.tools}
            if choice.function.name not in names:
                raise InvalidRequestError(
                    f"tool_choice names '{choice.function.name}', which is not in 'tools'.",
                    param="tool_choice",
                )
        return choice


# -- completions --------------------------------------------------------------------------------


class CompletionRequest(OpenAIModel):
    model: str = Field(min_length=1)
    prompt: str | list[str] = Field(min_length=1)
    frequency_penalty: Penalty = None
    max_tokens: MaxTokens = 16
    n: ChoiceCount = 1
    presence_penalty: Penalty = None
    seed: Seed = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature = None
    top_p: TopP = None
    user: str | None = None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stops(self) -> list[str]:
        return _stop_list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# -- embeddings ---------------------------------------------------------------------------------


class EmbeddingRequest(OpenAIModel):
    input: str | list[str] = Field(min_length=1)
    model: str = Field(min_length=1)
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
