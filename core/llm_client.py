"""One chat client for every "ask a language model" job in InfiMed: the evaluation judge, the curation judge and the
chain-of-thought teacher. Build one from an ``EndpointConfig`` with ``infimed.core.endpoints.make_client``.

Two back ends share one interface:

- ``OpenAIChatClient``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, TGI, a hosted API), spoken over
  the standard library's HTTP client so no extra dependency is needed;
- ``LocalChatClient``: a transformers model in this process (a text LM with its tokenizer, or a vision-language model
  with its processor).

Both expose ``complete(requests, **params) -> list[ChatResult]``: one result per request, in order. A request is an
OpenAI-style message list; images go in as ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``
parts (see ``image_part``). A failure of one request is a ``ChatResult`` with ``error`` set, never an exception, so a
batch job can count it and move on. Successful answers are cached on disk under a content hash of
model + messages + params, so re-running a curation or an evaluation never pays twice.

    client = OpenAIChatClient("http://localhost:8000/v1", "Qwen/Qwen2.5-72B-Instruct", cache_dir="cache/judge",
                              temperature=0.0, max_tokens=256)
    [result] = client.complete([[{"role": "user", "content": "Say OK"}]])
    result.text, result.error, result.cached
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import logging
import os
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import infimed
from infimed.core.generation import generate_batch

__all__ = ["ChatResult", "ChatClient", "OpenAIChatClient", "LocalChatClient", "image_part", "cache_key"]

logger = logging.getLogger(__name__)

# HTTP statuses worth retrying: rate limiting, request timeout and server-side failures. Any other 4xx means the
# request itself is wrong, and sending it again cannot help.
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class ChatResult:
    """The answer to one request: ``text`` on success, ``error`` (a one-line reason) on failure.

    ``finish_reason`` is the server's (``"stop"``, ``"length"`` when the token limit cut the answer); None when
    unknown (a cached or local answer).
    """

    text: str | None
    error: str | None = None
    cached: bool = False
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def image_part(image: Any, format: str = "PNG") -> dict:
    """An OpenAI ``image_url`` content part carrying ``image`` (PIL, path, bytes, ...) inline as a base64 data URL."""
    from PIL import Image

    if isinstance(image, Image.Image):
        pil = image if image.mode in ("RGB", "L") else image.convert("RGB")
    else:
        from infimed.processing.image_io import load_image  # heavy: infimed.processing imports torch

        pil = load_image(image)
    buffer = io.BytesIO()
    pil.save(buffer, format=format)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/{format.lower()};base64,{data}"}}


def _content_digest(obj: Any) -> str:
    """JSON stand-in for non-JSON message content (raw bytes, PIL images, paths): a digest of the content itself."""
    if isinstance(obj, (bytes, bytearray)):
        return "bytes:" + hashlib.sha256(obj).hexdigest()
    if hasattr(obj, "tobytes") and hasattr(obj, "size"):  # PIL image (or array): pixels and shape
        return f"pixels:{getattr(obj, 'mode', '')}:{obj.size}:" + hashlib.sha256(obj.tobytes()).hexdigest()
    return f"{type(obj).__name__}:{obj}"


def cache_key(model: str, messages: list[dict], params: dict) -> str:
    """SHA-256 of the model name, messages and sampling params: equal content, equal key, whatever the dict order."""
    payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, ensure_ascii=False,
                         default=_content_digest)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class _DiskCache:
    """One small JSON file per answer under ``cache_dir/ab/abcdef....json``; only successes are stored."""

    def __init__(self, cache_dir: str | os.PathLike | None):
        self.root = Path(cache_dir) if cache_dir else None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        if self.root is None:
            return None
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["text"]
        except (OSError, ValueError, KeyError):
            return None  # missing or half-written entry: ask again

    def put(self, key: str, text: str) -> None:
        if self.root is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}-{uuid.uuid4().hex}")
        tmp.write_text(json.dumps({"text": text}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)  # atomic, so concurrent writers never leave a torn file


class ChatClient:
    """Shared behaviour: parameter merging, the disk cache and the ``identity`` record."""

    kind = "base"
    model: str = ""
    base_url: str | None = None

    def __init__(self, cache_dir: str | os.PathLike | None = None, **default_params: Any):
        self.cache = _DiskCache(cache_dir)
        self.default_params = dict(default_params)

    def identity(self) -> dict:
        """What to record next to results produced with this client."""
        return {"kind": self.kind, "model": self.model, "base_url": self.base_url, "params": dict(self.default_params)}

    def complete(self, requests: list[list[dict]], **params: Any) -> list[ChatResult]:
        """Answer every request; results are in request order and failures are results with ``error`` set."""
        if not isinstance(requests, (list, tuple)):
            raise TypeError(f"`requests` must be a list of message lists, got {type(requests).__name__}.")
        merged = {**self.default_params, **params}
        results: list[ChatResult | None] = [None] * len(requests)
        keys = [cache_key(self.model, list(messages), merged) for messages in requests]
        todo: list[int] = []
        for i, key in enumerate(keys):
            text = self.cache.get(key)
            if text is not None:
                results[i] = ChatResult(text=text, cached=True)
            else:
                todo.append(i)
        if todo:
            fresh = self._complete_uncached([requests[i] for i in todo], merged)
            for i, result in zip(todo, fresh):
                if result.ok:
                    self.cache.put(keys[i], result.text)
                results[i] = result
        return results  # type: ignore[return-value]

    def _complete_uncached(self, requests: list[list[dict]], params: dict) -> list[ChatResult]:
        raise NotImplementedError


class OpenAIChatClient(ChatClient):
    """Client for an OpenAI-compatible ``chat/completions`` endpoint.

    Args:
        base_url: endpoint root including the version, e.g. ``http://localhost:8000/v1``.
        model: model name the server expects.
        api_key_env: environment variable holding the key; unset means no ``Authorization`` header (local servers).
        max_retries: retries after the first attempt for connection errors and retryable statuses; 3 with 0.5/1/2 s
            back-off rides out a short overload but gives up on a dead endpoint within seconds.
        timeout: seconds per HTTP attempt; 60 covers a large judge writing a few hundred tokens under load.
        cache_dir: folder for the answer cache (``None``: no cache).
        max_concurrency: requests in flight at once; 8 keeps a single vLLM/TGI replica busy without queueing storms.
        **default_params: sampling parameters sent with every request (``temperature``, ``max_tokens``, ...).
    """

    kind = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_retries: int = 3,
        timeout: float = 60,
        cache_dir: str | os.PathLike | None = None,
        max_concurrency: int = 8,
        **default_params: Any,
    ):
        super().__init__(cache_dir=cache_dir, **default_params)
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"`base_url` must look like http://host:port/v1, got {base_url!r}.")
        if max_retries < 0 or max_concurrency < 1:
            raise ValueError(
                f"`max_retries` must be >= 0 and `max_concurrency` >= 1, got {max_retries} and {max_concurrency}."
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self._parsed = parsed
        # Seconds before retry k is backoff * 2**k: 0.5 s, 1 s, 2 s covers a typical rate-limit window quickly.
        self.backoff = 0.5

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post_once(self, body: bytes) -> tuple[int, bytes]:
        conn_cls = http.client.HTTPSConnection if self._parsed.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(self._parsed.netloc, timeout=self.timeout)
        try:
            conn.request("POST", f"{self._parsed.path.rstrip('/')}/chat/completions", body, self._headers())
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _one(self, messages: list[dict], params: dict) -> ChatResult:
        body = json.dumps({"model": self.model, "messages": messages, **params}, ensure_ascii=False).encode("utf-8")
        error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, raw = self._post_once(body)
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
                error = f"connection error: {type(exc).__name__}: {exc}"
                continue
            if status != 200:
                error = f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
                if status in _RETRYABLE_STATUS:
                    continue
                return ChatResult(text=None, error=error)
            try:
                payload = json.loads(raw)
                text = payload["choices"][0]["message"]["content"]
                finish_reason = payload["choices"][0].get("finish_reason")
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                return ChatResult(text=None, error=f"malformed response ({type(exc).__name__}): {raw[:200]!r}")
            if not isinstance(text, str):
                return ChatResult(text=None, error=f"response has no text content: {raw[:200]!r}")
            return ChatResult(text=text, finish_reason=finish_reason)
        return ChatResult(text=None, error=f"gave up after {self.max_retries + 1} attempts; last: {error}")

    def _complete_uncached(self, requests: list[list[dict]], params: dict) -> list[ChatResult]:
        if len(requests) == 1 or self.max_concurrency == 1:
            return [self._one(messages, params) for messages in requests]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(lambda messages: self._one(messages, params), requests))


def _split_openai_content(messages: list[dict]) -> tuple[list[dict], list[Any]]:
    """OpenAI messages -> (TRL-style messages with ``{"type": "image"}`` placeholders, images in placeholder order)."""
    from infimed.processing.image_io import load_image  # heavy: infimed.processing imports torch

    converted, images = [], []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            converted.append({"role": message["role"], "content": [{"type": "text", "text": content or ""}]})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                if not url.startswith("data:"):
                    raise ValueError(f"Local chat clients take inline data URLs only, got an image URL {url[:60]!r}.")
                images.append(load_image(base64.b64decode(url.split(",", 1)[1])))
                parts.append({"type": "image"})
            elif part.get("type") == "image":
                images.append(load_image(part["image"]) if "image" in part else None)
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part.get("text", "")})
        converted.append({"role": message["role"], "content": parts})
    return converted, images


class LocalChatClient(ChatClient):
    """Chat with a transformers model in this process (greedy by default, batched ``generate``).

    Pass a name/path (loaded with ``AutoProcessor``/``AutoTokenizer`` and ``AutoModelForImageTextToText`` or
    ``AutoModelForCausalLM``) or an already built ``(model, processor_or_tokenizer)`` pair, e.g. the tiny test model.

    Args:
        max_new_tokens: answer budget; 256 holds a JSON rubric verdict or a short chain of thought.
        batch_size: requests per ``generate`` call; 8 keeps CPU memory small for the tiny and 1-2B models.
        trust_remote_code: run a checkpoint's own modelling code; off unless you trust its author (InfiMed
            checkpoints load without it).
    """

    kind = "local"

    def __init__(
        self,
        model_name_or_path: Any,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        cache_dir: str | os.PathLike | None = None,
        trust_remote_code: bool = False,
        **default_params: Any,
    ):
        super().__init__(cache_dir=cache_dir, **default_params)
        if isinstance(model_name_or_path, (tuple, list)):
            if len(model_name_or_path) != 2:
                raise ValueError("Pass `model_name_or_path` as a name/path or as a (model, processor) pair.")
            self.hf_model, self.processor = model_name_or_path
            self.model = getattr(self.hf_model.config, "_name_or_path", "") or type(self.hf_model).__name__
        else:
            self.model = str(model_name_or_path)
            self.hf_model, self.processor = self._load(self.model, trust_remote_code)
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    @staticmethod
    def _load(name: str, trust_remote_code: bool):
        import transformers  # heavy: only a local client loads a model

        infimed.register()  # InfiMed checkpoints load through the Auto classes without remote code
        try:
            processor = transformers.AutoProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
            model = transformers.AutoModelForImageTextToText.from_pretrained(name, trust_remote_code=trust_remote_code)
        except (ValueError, OSError, KeyError) as err:
            if "trust_remote_code" in str(err):  # the folder ships code: the caller names where to opt in
                raise
            processor = transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            model = transformers.AutoModelForCausalLM.from_pretrained(name, trust_remote_code=trust_remote_code)
        return model.eval(), processor

    def identity(self) -> dict:
        return {**super().identity(), "max_new_tokens": self.max_new_tokens}

    def _generate_batch(self, requests: list[list[dict]], params: dict) -> list[str]:
        multimodal = hasattr(self.processor, "image_token")
        conversations, images = [], []
        for messages in requests:
            trl_messages, imgs = _split_openai_content(messages)
            if not multimodal:
                if imgs:
                    raise ValueError("This local model is text-only; the request carries images.")
                # text-only chat templates expect string contents
                trl_messages = [
                    {"role": m["role"], "content": "".join(p.get("text", "") for p in m["content"])}
                    for m in trl_messages
                ]
            conversations.append(trl_messages)
            images.append(imgs)
        return generate_batch(
            self.hf_model, self.processor, conversations, images if multimodal else None,
            max_new_tokens=params.get("max_tokens", self.max_new_tokens), temperature=params.get("temperature", 0.0),
        )

    def _complete_uncached(self, requests: list[list[dict]], params: dict) -> list[ChatResult]:
        results: list[ChatResult] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            try:
                texts = self._generate_batch(chunk, params)
                results.extend(ChatResult(text=t) for t in texts)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad request must not sink the batch; retry one by one
                logger.debug("batched generate failed (%s); retrying requests one by one", exc)
            for messages in chunk:
                try:
                    results.append(ChatResult(text=self._generate_batch([messages], params)[0]))
                except Exception as exc:  # noqa: BLE001 - reported in the result, counted by the caller
                    results.append(ChatResult(text=None, error=f"local generation failed: {type(exc).__name__}: {exc}"))
        return results
