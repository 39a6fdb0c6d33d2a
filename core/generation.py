"""The one batched, left-padded ``generate`` path: evaluation, the local chat client and ``infimed generate`` use it.

    answers = generate_batch(model, processor, [messages_a, messages_b], [[image_a], []], max_new_tokens=32)

Each conversation is rendered by the processor's chat template (TRL-style messages with ``{"type": "image"}``
placeholders, or plain-string contents for a text-only tokenizer), the batch is left-padded so every row's last prompt
token sits at the same position, and ``generate`` appends after it::

    input_ids  (B, T):  [pad pad  p  p  p ] -> generate -> [pad pad  p  p  p | a  a  <eos>]
                        [ p   p   p  p  p ]                [ p   p   p  p  p | a  <eos> pad]
                                                                               ^ new tokens (B, N) decoded

Images of the batch are passed flat, in placeholder order. ``processor`` may be a multimodal processor or a bare
tokenizer (a text-only LM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import infimed

from .errors import InputFileError

__all__ = ["generate_batch", "load_for_generation", "stop_token_ids"]


def load_for_generation(name_or_path: str, device: str | None = None):
    """``(model, processor)`` of a checkpoint folder or Hub id, in eval mode on ``device`` (default: cuda when
    available), bfloat16 on GPU and float32 on CPU (bf16 matmuls are slow there)."""
    path = Path(name_or_path).expanduser()
    # `runs/tiny` could be a Hub id too; `./runs/tiny`, `/abs/path` or `a/b/c` cannot, so name the missing folder.
    if not path.exists() and (name_or_path.startswith((".", "/", "~")) or name_or_path.strip("/").count("/") > 1):
        raise InputFileError(f"`--model` folder {str(path)!r} does not exist; point it at a checkpoint folder "
                             "(written by `infimed init` or training) or give a Hub id ORG/NAME.")
    import torch  # heavy: only callers that actually generate pay for it
    from transformers import AutoModelForImageTextToText, AutoProcessor

    infimed.register()  # InfiMed checkpoints load through the Auto classes, without remote code
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, dtype=dtype).to(device).eval()
    return model, AutoProcessor.from_pretrained(name_or_path)


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The model's end-of-sequence ids plus the chat end-of-turn tokens its tokenizer knows (``<|im_end|>``,
    ``<end_of_turn>``): a chat model ends its answer with those even where the generation config names only one."""
    generation_config = getattr(model, "generation_config", None)  # any object with `generate` may stand in
    ids = generation_config.eos_token_id if generation_config is not None else None
    ids = list(ids) if isinstance(ids, (list, tuple)) else ([ids] if ids is not None else [])
    for token in (tokenizer.eos_token, "<|im_end|>", "<end_of_turn>"):
        token_id = tokenizer.convert_tokens_to_ids(token) if token else None
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in ids:
            ids.append(token_id)
    return ids


def generate_batch(
    model: Any,
    processor: Any,
    conversations: list[list[dict]],
    images: list[list] | None = None,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    num_image_tokens: int | None = None,
) -> list[str]:
    """One decoded answer (new tokens only, stripped) per conversation.

    Args:
        conversations: chat messages per row, rendered with ``processor.apply_chat_template``.
        images: the loaded images of each row, in placeholder order (``None``: no images).
        temperature: 0 decodes greedily (reproducible benchmark numbers); above 0 samples.
        num_image_tokens: visual tokens per image for InfiMed processors (``None``: the checkpoint's).
    """
    import torch  # heavy: only callers that actually generate pay for it

    tokenizer = getattr(processor, "tokenizer", processor)
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in conversations]
    flat = [image for row in images or [] for image in row]
    extra = {"num_image_tokens": num_image_tokens} if num_image_tokens else {}
    multimodal = processor is not tokenizer
    if flat and not multimodal:
        raise ValueError("This model has a text-only tokenizer, but the request carries images.")
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # every row ends at the same position, so new tokens append after the prompt
    try:
        kwargs = {"images": flat or None, **extra} if multimodal else {}
        inputs = processor(text=texts, padding=True, return_tensors="pt", **kwargs)
    finally:
        tokenizer.padding_side = previous_side  # the caller's processor is left as it was given
    # PreTrainedModel has `device`/`dtype`; a bare module with `generate` (a scripted stand-in) keeps the inputs as is
    if getattr(model, "device", None) is not None:
        inputs = inputs.to(model.device)
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point() and hasattr(model, "dtype"):
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    stop = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
    sampling = {"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}
    with torch.inference_mode():
        output = model.generate(
            **inputs, **extra, max_new_tokens=max_new_tokens, num_beams=1, eos_token_id=stop or None,
            pad_token_id=pad_id, **sampling,
        )
    new_tokens = output[:, inputs["input_ids"].shape[1]:]  # (B, N) after the left-padded prompt (B, T)
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
