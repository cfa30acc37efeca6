"""Model providers (Ollama, OpenAI-compatible) behind one protocol, and the router over them."""

from agent33.llm.ollama import OllamaProvider
from agent33.llm.openai_compat import OpenAICompatProvider, normalise_base_url
from agent33.llm.provider import (
    LLMError,
    ModelNotFound,
    Provider,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from agent33.llm.router import Route, Router, default_router, route_call, router_for
from agent33.llm.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    Options,
    ResponseFormat,
    Role,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "FinishReason",
    "LLMError",
    "Message",
    "ModelNotFound",
    "OllamaProvider",
    "OpenAICompatProvider",
    "Options",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "ResponseFormat",
    "Role",
    "Route",
    "Router",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "default_router",
    "normalise_base_url",
    "route_call",
    "router_for",
]
