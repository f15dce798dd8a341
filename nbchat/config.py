"""The settings users set as `c.ChatMagics.<name>` or `%config ChatMagics.<name> = ...`.

Traits live on a Configurable mixin so IPython's config system, `%config` and
the help text all come for free; `Settings` is the frozen snapshot that the
shell-free layers (session, client) read, so they never import traitlets' users.
The API key is held as a `Secret`: `%config ChatMagics` and reprs show it masked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Int,
    TraitError,
    TraitType,
    Unicode,
    default,
    validate,
)
from traitlets.config import Configurable

from .pricing import DEFAULT_PRICES

if TYPE_CHECKING:  # types.py is imported on first use: its dataclasses cost at %load_ext
    from .types import Secret

__all__ = [
    "DEFAULT_BASE_URL",
    "LIMIT_FIELDS",
    "ChatSettings",
    "SecretTrait",
    "Settings",
    "limit_field",
    "one_limit",
    "with_limit_field",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: The two names of the reply length limit: OpenAI's current one (its reasoning models
#: refuse the other) and the one most other servers know (llama.cpp, Ollama, vLLM...).
LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")


def limit_field(base_url: str, choice: str = "auto") -> str:
    """The request field `--max-tokens` is sent as: `choice`, or for `auto` by the host.

    OpenAI (`api.openai.com`) and Azure OpenAI (`*.openai.azure.com`) get
    `max_completion_tokens`; every other server `max_tokens`.
    """
    if choice in LIMIT_FIELDS:
        return choice
    from urllib.parse import urlsplit

    host = (urlsplit(base_url).hostname or "").lower()
    openai = host == "api.openai.com" or host.endswith(".openai.azure.com")
    return "max_completion_tokens" if openai else "max_tokens"


def with_limit_field(fields: dict[str, Any], field: str) -> dict[str, Any]:
    """`fields` with one reply length limit, named `field`.

    Both names given: the value under `field` wins (the caller merged its sources
    into one name first, see `one_limit`, so that is the one the user chose last).
    """
    other = LIMIT_FIELDS[0] if field == LIMIT_FIELDS[1] else LIMIT_FIELDS[1]
    if other not in fields:
        return fields
    value = fields[field] if field in fields else fields[other]
    return {
        (field if k == other else k): (value if k == other else v)
        for k, v in fields.items()
        if k != field
    }


def one_limit(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with a `max_tokens` renamed `max_completion_tokens`, so that merging
    layers (settings < --params < flags) keeps the last one's limit, whichever name it
    used; `with_limit_field` names it for the server when the request is built."""
    if "max_tokens" not in fields:
        return fields
    out = {k: v for k, v in fields.items() if k != "max_tokens"}
    out.setdefault("max_completion_tokens", fields["max_tokens"])
    return out


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


class SecretTrait(TraitType["Secret | None", "Secret | str | None"]):
    """A trait that stores strings as `Secret`, so no repr can show the value."""

    default_value = None
    info_text = "an API key (a string)"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_none=True, **kwargs)

    def validate(self, obj: Any, value: Any) -> Secret | None:
        from .types import Secret

        if value is None or isinstance(value, Secret):
            return value or None
        if isinstance(value, str):
            value = value.strip()
            return Secret(value) if value else None
        self.error(obj, value)

    def from_string(self, s: str) -> Secret | None:
        from .types import Secret

        return Secret(s) if s else None

    def default_value_repr(self) -> str:
        return "None (falls back to $OPENAI_API_KEY)"


@dataclass(frozen=True)
class Settings:
    """Everything one request needs from the configuration, read once per turn."""

    base_url: str = DEFAULT_BASE_URL
    api_key: Secret | None = None
    organization: str | None = None
    project: str | None = None
    model: str = "gpt-4o-mini"
    system_prompt: str | None = None
    timeout: float = 60.0
    max_retries: int = 2
    show_usage: bool = True
    update_interval: float = 0.1
    load_remote_images: bool = False
    prices: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    max_tokens_field: str = "auto"

    @property
    def limit_field(self) -> str:
        """`max_tokens` or `max_completion_tokens`: how this server is sent the limit."""
        return limit_field(self.base_url, self.max_tokens_field)

    @property
    def connection(self) -> dict[str, Any]:
        """The keyword arguments of the HTTP client; a change means a new client."""
        return {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "organization": self.organization,
            "project": self.project,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    @property
    def needs_key(self) -> bool:
        """OpenAI itself needs a key; local servers (Ollama, vLLM, LM Studio) may not."""
        return self.base_url.rstrip("/") == DEFAULT_BASE_URL

    @property
    def key_missing(self) -> bool:
        """Whether a request would be refused for want of a key (OpenAI, no key set)."""
        return self.needs_key and not self.api_key

    def require_key(self) -> None:
        """ConfigError before any request that OpenAI would refuse for want of a key."""
        if self.key_missing:
            from .errors import ConfigError

            raise ConfigError(
                "no API key set for the OpenAI API",
                hint="set the OPENAI_API_KEY environment variable, c.ChatMagics.api_key in "
                "ipython_config.py, or run %chat login; for a local server set ChatMagics.base_url",
            )


class ChatSettings(Configurable):
    """Mixin with every user-facing setting of nbchat (see `%config ChatMagics`)."""

    api_key = SecretTrait(
        help="API key sent as 'Authorization: Bearer'. Falls back to $OPENAI_API_KEY. "
        "Prefer the environment or ipython_config.py over typing it in a notebook; "
        "it is always shown masked."
    ).tag(config=True)
    organization = Unicode(
        None, allow_none=True, help="Sent as 'OpenAI-Organization'. Falls back to $OPENAI_ORG_ID."
    ).tag(config=True)
    project = Unicode(
        None, allow_none=True, help="Sent as 'OpenAI-Project'. Falls back to $OPENAI_PROJECT_ID."
    ).tag(config=True)
    base_url = Unicode(
        DEFAULT_BASE_URL,
        help="Base URL of an OpenAI-compatible API (ending in /v1), e.g. "
        "http://localhost:11434/v1 for Ollama. Falls back to $OPENAI_BASE_URL.",
    ).tag(config=True)
    model = Unicode("gpt-4o-mini", help="Model used when a cell gives no -m/--model.").tag(
        config=True
    )
    system_prompt = Unicode(
        None, allow_none=True, help="System prompt for new conversations (-s/--system overrides)."
    ).tag(config=True)
    timeout = Float(
        60.0, help="Seconds to wait for the server (connect and each read) before giving up."
    ).tag(config=True)
    max_retries = Int(
        2, help="Retries before the first token on 408/409/429/5xx and connection errors."
    ).tag(config=True)
    show_usage = Bool(
        True, help="Show the usage footer (tokens, time to first token, latency, tok/s, cost)."
    ).tag(config=True)
    update_interval = Float(
        0.1, help="Seconds between display updates while a reply streams (0.1 = 10 per second)."
    ).tag(config=True)
    load_remote_images = Bool(
        False,
        help="Load images a reply links to (http/https). Off by default: a reply may carry "
        "text planted by someone else (prompt injection), and an image URL the browser fetches "
        "can carry your data to its host. Off, each is a placeholder naming the host.",
    ).tag(config=True)
    max_tokens_field = CaselessStrEnum(
        ["auto", "max_tokens", "max_completion_tokens"],
        "auto",
        help="The request field --max-tokens (and ChatMagics.max_tokens) is sent as: "
        "'auto' sends max_completion_tokens to OpenAI and Azure OpenAI (api.openai.com, "
        "*.openai.azure.com) and max_tokens to every other server (llama.cpp, Ollama, vLLM, "
        "LM Studio); or name one of the two.",
    ).tag(config=True)
    prices = Dict(
        help="Extra or overriding prices: {model: (input, cached_input, output)} in USD per "
        "1M tokens. Costs are estimates; models not listed get no cost."
    ).tag(config=True)

    @default("api_key")
    def _default_api_key(self) -> Secret | None:
        from .types import Secret

        key = _env("OPENAI_API_KEY")
        return Secret(key) if key else None

    @default("organization")
    def _default_organization(self) -> str | None:
        return _env("OPENAI_ORG_ID")

    @default("project")
    def _default_project(self) -> str | None:
        return _env("OPENAI_PROJECT_ID")

    @default("base_url")
    def _default_base_url(self) -> str:
        return _env("OPENAI_BASE_URL") or DEFAULT_BASE_URL

    @validate("base_url")
    def _check_base_url(self, proposal: Any) -> str:
        value = str(proposal["value"]).strip()
        if not value.startswith(("http://", "https://")):
            raise TraitError(f"base_url must start with http:// or https://, not {value!r}")
        return value.rstrip("/")

    @validate("model")
    def _check_model(self, proposal: Any) -> str:
        value = str(proposal["value"]).strip()
        if not value:
            raise TraitError("model must not be empty")
        return value

    @validate("timeout")
    def _check_timeout(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value > 0:
            raise TraitError(f"timeout must be a positive number of seconds, not {value}")
        return value

    @validate("max_retries")
    def _check_max_retries(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 0 <= value <= 10:
            raise TraitError(f"max_retries must be between 0 and 10, not {value}")
        return value

    @validate("update_interval")
    def _check_update_interval(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 10:
            raise TraitError(f"update_interval must be between 0 and 10 seconds, not {value}")
        return value

    @validate("prices")
    def _check_prices(self, proposal: Any) -> dict[str, Any]:
        value = dict(proposal["value"])
        for model, row in value.items():
            if not (
                isinstance(row, (list, tuple))
                and len(row) in (2, 3)
                and all(isinstance(v, (int, float)) and v >= 0 for v in row)
            ):
                raise TraitError(
                    f"prices[{model!r}] must be (input, cached_input, output) USD per 1M tokens"
                )
        return value

    def settings(self) -> Settings:
        """A frozen snapshot of the current settings for one turn."""
        return Settings(
            base_url=self.base_url,
            api_key=self.api_key,
            organization=self.organization,
            project=self.project,
            model=self.model,
            system_prompt=self.system_prompt,
            timeout=self.timeout,
            max_retries=self.max_retries,
            show_usage=self.show_usage,
            update_interval=self.update_interval,
            load_remote_images=self.load_remote_images,
            prices={**DEFAULT_PRICES, **self.prices},
            max_tokens_field=str(self.max_tokens_field).lower(),
        )
