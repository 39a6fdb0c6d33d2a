"""The one LLM endpoint config and client factory: the curation judge, the CoT teacher and the evaluation judge.

    judge:                               # YAML, e.g. a curation config's `judge` or a CoT config's `teacher`
      kind: openai                       # or `local`: a transformers model in this process
      base_url: http://localhost:8000/v1
      model: Qwen/Qwen2.5-VL-72B-Instruct

    client = make_client(config.judge, cache_dir="runs/curated/judge_cache")
    [result] = client.complete([[{"role": "user", "content": "Say OK"}]])

Each role subclasses ``EndpointConfig`` only to change defaults (a teacher samples, a judge is greedy) or to add its
own fields, so every endpoint is written with the same keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from infimed.core.config import ConfigError
from infimed.core.llm_client import ChatClient, LocalChatClient, OpenAIChatClient

__all__ = ["EndpointConfig", "make_client"]


@dataclass
class EndpointConfig:
    """Which language model answers: an OpenAI-compatible endpoint or a local transformers model."""

    kind: Literal["openai", "local"] = field(
        default="openai", metadata={"help": "`openai` (any OpenAI-compatible endpoint) or `local` (a transformers "
                                            "model in this process)."}
    )
    model: str | None = field(
        default=None, metadata={"help": "Model name at the endpoint, or a local checkpoint path / Hub id."}
    )
    base_url: str | None = field(
        default=None, metadata={"help": "Endpoint root with its version, e.g. http://localhost:8000/v1 (`openai`)."}
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the API key (unset: no key sent)."}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature; 0 is greedy (None: the server's default, not sent)."}
    )
    max_tokens: int | None = field(
        default=None, metadata={"help": "Answer token budget (None: the server's default; 256 for a local model)."}
    )
    # 60 s: a 72B model answering a few hundred tokens under load takes well under a minute; longer means stuck.
    timeout: float = field(default=60.0, metadata={"help": "Seconds per HTTP attempt."})
    # 3 with 0.5/1/2 s back-off rides out a short overload and still fails a dead endpoint within seconds.
    max_retries: int = field(
        default=3, metadata={"help": "Retries per request after the first attempt (connection errors, 429/5xx)."}
    )
    # 8 keeps one vLLM/TGI replica's batch full without tripping hosted APIs' per-key rate limits.
    max_concurrency: int = field(default=8, metadata={"help": "Endpoint requests in flight at once (`openai`)."})
    # 8 keeps CPU memory small for the tiny and 1-2B models.
    batch_size: int = field(default=8, metadata={"help": "Requests per `generate` call of a `local` model."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Answer cache folder (content-hash keyed), so re-runs never pay twice."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run a `local` checkpoint's own modelling code; only for authors you "
                                         "trust (InfiMed checkpoints load without it)."}
    )

    def __post_init__(self):
        if self.kind not in ("openai", "local"):
            raise ValueError(f"`kind` must be 'openai' or 'local', got {self.kind!r}.")
        if self.max_retries < 0 or self.max_concurrency < 1 or self.batch_size < 1:
            raise ValueError(
                "`max_retries` must be >= 0, `max_concurrency` and `batch_size` >= 1; got "
                f"{self.max_retries}, {self.max_concurrency} and {self.batch_size}."
            )

    def check(self, where: str = "endpoint") -> None:
        """Raise unless a client can be built: a model, and a `base_url` for the `openai` kind."""
        if not self.model:
            raise ValueError(f"`{where}.model` is required: the endpoint's model name, or a local checkpoint path.")
        if self.kind == "openai" and not self.base_url:
            raise ValueError(
                f"`{where}.base_url` is required for an `openai` endpoint, e.g. http://localhost:8000/v1 "
                f"(or set `{where}.kind: local` to run `{where}.model` in this process)."
            )


def make_client(
    config: EndpointConfig, cache_dir: str | os.PathLike | None = None, *, where: str = "endpoint"
) -> ChatClient:
    """The chat client for ``config``; ``cache_dir`` is the answer cache used when ``config.cache_dir`` is unset.

    ``where`` names the YAML block the settings came from (``judge``, ``teacher``, ...) in errors, e.g. when a local
    model folder ships its own code and ``trust_remote_code`` is off.
    """
    config.check()
    cache_dir = config.cache_dir or cache_dir
    sampling = {"temperature": config.temperature, "max_tokens": config.max_tokens}
    params = {name: value for name, value in sampling.items() if value is not None}  # None: the server's default
    if config.kind == "openai":
        return OpenAIChatClient(
            config.base_url, config.model, api_key_env=config.api_key_env, max_retries=config.max_retries,
            timeout=config.timeout, cache_dir=cache_dir, max_concurrency=config.max_concurrency, **params,
        )
    budget = {"max_new_tokens": config.max_tokens} if config.max_tokens is not None else {}
    try:
        return LocalChatClient(
            config.model, batch_size=config.batch_size, cache_dir=cache_dir,
            trust_remote_code=config.trust_remote_code, **budget, **params,
        )
    except ValueError as err:
        if config.trust_remote_code or "trust_remote_code" not in str(err):
            raise
        raise ConfigError(
            f"{where}: {config.model} ships its own model code (`auto_map` in config.json), which runs only with an "
            f"opt-in. If you trust its author, set `trust_remote_code: true` in the `{where}:` block; InfiMed "
            "checkpoints load without it."
        ) from err
