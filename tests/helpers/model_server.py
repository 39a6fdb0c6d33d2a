"""A loopback OpenAI-compatible server that answers chat completions with a real (tiny) model, for offline tests of
served-model evaluation.

    with ModelServer(model, processor) as server:
        run_evaluation(EvalConfig(endpoint=server.base_url, served_model="tiny", ...))

Answers go through ``LocalChatClient`` -> ``infimed.core.generation.generate_batch``, one request at a time (a lock:
the model and its tokenizer are shared by the server's threads), so they equal the in-process run at batch size 1.
``finish_reason`` is "length" when the answer used the whole ``max_tokens`` budget, as vLLM reports it.
"""

from __future__ import annotations

import threading

from infimed.core.llm_client import LocalChatClient

from .openai_stub import OpenAIStub

__all__ = ["ModelServer"]


class ModelServer(OpenAIStub):
    """Serve ``model`` + ``processor`` at ``base_url`` (a context manager, like ``OpenAIStub``)."""

    def __init__(self, model, processor, default_max_tokens: int = 16):
        client = LocalChatClient((model, processor), batch_size=1)
        tokenizer = getattr(processor, "tokenizer", processor)
        lock = threading.Lock()

        def respond(request: dict):
            budget = request.get("max_tokens") or default_max_tokens
            with lock:
                [result] = client.complete([request["messages"]], max_tokens=budget,
                                           temperature=request.get("temperature") or 0.0)
                used = len(tokenizer(result.text or "", add_special_tokens=False)["input_ids"])
            if not result.ok:
                return 500
            choice = {"index": 0, "message": {"role": "assistant", "content": result.text},
                      "finish_reason": "length" if used >= budget else "stop"}
            return 200, {"object": "chat.completion", "model": request.get("model"), "choices": [choice]}

        super().__init__(respond)
