"""Tiny, seeded InfiMed models and processors for tests, examples and benchmarks (nothing downloaded).

    from infimed.testing import tiny_model, tiny_processor
    model, processor = tiny_model(), tiny_processor()
"""

from __future__ import annotations

import copy
import functools

import torch

from infimed.modeling import InfiMedForConditionalGeneration
from infimed.modeling.presets import PRESETS, build_config
from infimed.processing import InfiMedImageProcessor, InfiMedProcessor
from infimed.processing.tiny_tokenizer import build_tiny_tokenizer

__all__ = ["tiny_config", "tiny_model", "tiny_processor"]


def tiny_config(**overrides):
    """The `tiny` preset's InfiMedConfig; `vision_config`/`text_config` dicts merge into the preset's."""
    return build_config("tiny", **overrides)


def tiny_model(seed: int = 0, **config_overrides):
    """A seeded fp32 tiny InfiMedForConditionalGeneration in eval mode (`attn_implementation` may be overridden)."""
    attn = config_overrides.pop("attn_implementation", "sdpa")
    config = tiny_config(**config_overrides)
    config._attn_implementation = attn
    torch.manual_seed(seed)
    return InfiMedForConditionalGeneration(config).eval()


@functools.lru_cache(maxsize=1)
def _tiny_tokenizer():
    return build_tiny_tokenizer()


def tiny_processor(num_image_tokens: int | None = None):
    """The tiny preset's InfiMedProcessor (64 px images; 64 image tokens unless `num_image_tokens` is given)."""
    preset = PRESETS["tiny"]
    return InfiMedProcessor(
        image_processor=InfiMedImageProcessor(image_size=preset.vision_config["image_size"]),
        tokenizer=copy.deepcopy(_tiny_tokenizer()),
        num_image_tokens=num_image_tokens or preset.num_image_tokens,
    )
