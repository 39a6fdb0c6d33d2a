"""Named architectures: `tiny` (tests, demo), `infimed-foundation-1.7b`, `infimed-foundation-4b`, and
`tiny-qwen2.5-vl`, a Qwen2.5-VL of the InfiMed-SFT/RL-3B recipes' architecture at test size (CPU, seconds).

The two paper presets pair SigLIP-SO400M-patch14-384 (27x27 = 729 patches) with Qwen3-1.7B / Qwen3-4B; their shapes
are copied from the public config.json files of those checkpoints. With no pretrained parts they give randomly
initialised models of the right shape (benchmarks); `infimed init --vision-model ... --language-model ...` composes
real weights (see `composition.py`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .configuration_infimed import InfiMedConfig

__all__ = ["PRESETS", "Preset", "build_config", "build_model", "count_parameters", "model_class"]

# The config's default encoder is SigLIP-SO400M-patch14-384; one definition serves both.
SIGLIP_SO400M_384 = {
    "model_type": "siglip_vision_model",
    **InfiMedConfig.sub_configs_defaults["vision_config"].init_kwargs,
}

QWEN3_COMMON = {
    "model_type": "qwen3",
    "vocab_size": 151936,
    "head_dim": 128,
    "num_key_value_heads": 8,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "eos_token_id": 151645,  # <|im_end|>
    "pad_token_id": 151643,  # <|endoftext|>
}


# The tiny Qwen2.5-VL's special tokens, added after the tiny BPE's 766 entries (ids 766-769, see
# `infimed.core.composition`); the vocabulary is rounded up to a multiple of 64 as for `tiny`.
TINY_QWEN_TOKENS = {"vision_start": 766, "vision_end": 767, "image": 768, "video": 769}


@dataclass(frozen=True)
class Preset:
    name: str
    vision_config: dict
    text_config: dict
    num_image_tokens: int
    image_token_id: int
    description: str
    default_vision_model: str | None = None
    default_language_model: str | None = None
    projector: dict = field(default_factory=dict)
    # "infimed": an InfiMedConfig; "qwen2_5_vl": transformers' Qwen2_5_VLConfig (dynamic resolution: the image
    # processor's min/max pixels, not `num_image_tokens`, set the visual tokens per image)
    model_type: str = "infimed"


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        description="A ~1M-parameter SigLIP + Qwen3 model for tests and the offline demo (CPU, minutes).",
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 64,  # 8x8 patches of 8 px: enough for the demo's lesion layouts
            "patch_size": 8,
            "vision_use_head": False,
        },
        text_config={
            "model_type": "qwen3",
            "vocab_size": 768,  # the tiny byte-level BPE has 766 entries; rounded up to a multiple of 64
            "hidden_size": 128,
            "intermediate_size": 384,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,
            "eos_token_id": 2,  # <|im_end|> in the tiny tokenizer
            "pad_token_id": 0,  # <|endoftext|>
        },
        num_image_tokens=64,  # the full 8x8 grid, no pooling; recipes/demo.yaml pools to 4 (2x2), then 16 (4x4)
        image_token_id=3,  # <image> in the tiny tokenizer
    ),
    "infimed-foundation-1.7b": Preset(
        name="infimed-foundation-1.7b",
        description="SigLIP-SO400M-patch14-384 + Qwen3-1.7B (InfiMed-Foundation-1.7B architecture).",
        vision_config=SIGLIP_SO400M_384,
        text_config={
            **QWEN3_COMMON,
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
        },
        num_image_tokens=729,
        image_token_id=151669,  # first free id after Qwen3's 151669 tokenizer entries, where `<image>` is added
        default_vision_model="google/siglip-so400m-patch14-384",
        default_language_model="Qwen/Qwen3-1.7B",
    ),
    "infimed-foundation-4b": Preset(
        name="infimed-foundation-4b",
        description="SigLIP-SO400M-patch14-384 + Qwen3-4B (InfiMed-Foundation-4B architecture).",
        vision_config=SIGLIP_SO400M_384,
        text_config={
            **QWEN3_COMMON,
            "hidden_size": 2560,
            "intermediate_size": 9728,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
        },
        num_image_tokens=729,
        image_token_id=151669,
        default_vision_model="google/siglip-so400m-patch14-384",
        default_language_model="Qwen/Qwen3-4B",
    ),
    "tiny-qwen2.5-vl": Preset(
        name="tiny-qwen2.5-vl",
        description="A ~1M-parameter Qwen2.5-VL (M-RoPE, dynamic resolution) for running the 3B recipes on CPU.",
        model_type="qwen2_5_vl",
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "patch_size": 8,  # a 64 px demo image is 8x8 patches, 4x4 = 16 tokens after the 2x2 merge
            "spatial_merge_size": 2,  # as Qwen2.5-VL-3B
            "temporal_patch_size": 2,  # as Qwen2.5-VL-3B (an image is repeated to 2 frames)
            "out_hidden_size": 128,  # = the LM's hidden size
            "window_size": 32,  # a multiple of patch_size * spatial_merge_size (16), as 112 = 7 x 16 in the 3B
            "fullatt_block_indexes": [1],  # the last block attends globally, as every 8th block of the 3B
        },
        text_config={
            "vocab_size": 832,  # tiny BPE (766) + the 4 vision tokens, rounded up to a multiple of 64
            "hidden_size": 128,
            "intermediate_size": 384,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,  # as Qwen2.5-VL-3B
            "eos_token_id": 2,  # <|im_end|> in the tiny tokenizer
            "pad_token_id": 0,  # <|endoftext|>
            "bos_token_id": None,  # the tiny tokenizer has none (Qwen's default id is outside this vocabulary)
            # head_dim 32 = 2 x (4 + 6 + 6): the 3B's [16, 24, 24] M-RoPE split of its 128-wide heads, scaled by 1/4
            "rope_parameters": {"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1000000.0},
        },
        num_image_tokens=16,  # of a 64x64 image at the preset's pixel bounds; not fixed (dynamic resolution)
        image_token_id=TINY_QWEN_TOKENS["image"],
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset `{name}`. Choose one of: {', '.join(PRESETS)}.")
    return PRESETS[name]


def build_config(preset: str, **overrides):
    """The preset's config (`InfiMedConfig`, or `Qwen2_5_VLConfig` for `tiny-qwen2.5-vl`). `overrides` may set
    top-level fields or `vision_config`/`text_config` dicts, which are merged key by key into the preset's (the preset
    itself is never mutated)."""
    spec = get_preset(preset)
    vision = {**copy.deepcopy(spec.vision_config), **overrides.pop("vision_config", {})}
    text = {**copy.deepcopy(spec.text_config), **overrides.pop("text_config", {})}
    if spec.model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig  # only this preset needs it; keeps the import light

        overrides.pop("num_image_tokens", None)  # dynamic resolution: no fixed count per image
        kwargs = {"image_token_id": spec.image_token_id, "video_token_id": TINY_QWEN_TOKENS["video"],
                  "vision_start_token_id": TINY_QWEN_TOKENS["vision_start"],
                  "vision_end_token_id": TINY_QWEN_TOKENS["vision_end"], **overrides}
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **kwargs)
    kwargs = {"num_image_tokens": spec.num_image_tokens, "image_token_id": spec.image_token_id, **spec.projector}
    kwargs.update(overrides)
    return InfiMedConfig(vision_config=vision, text_config=text, **kwargs)


def model_class(config):
    """The conditional-generation class of a preset's config."""
    if config.model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration
    from .modeling_infimed import InfiMedForConditionalGeneration

    return InfiMedForConditionalGeneration


def build_model(preset: str, *, seed: int | None = None, **overrides):
    """A randomly initialised model of the preset's shape (`InfiMedForConditionalGeneration`, or Qwen2.5-VL's)."""
    import torch

    config = build_config(preset, **overrides)
    if seed is not None:
        torch.manual_seed(seed)
    return model_class(config)(config)


def count_parameters(preset: str, **overrides) -> dict[str, int]:
    """Parameter counts per component, computed on the meta device (no memory, no download)."""
    import torch

    config = build_config(preset, **overrides)
    with torch.device("meta"):
        model = model_class(config)(config)

    def numel(module) -> int:
        return sum(p.numel() for p in module.parameters())

    if config.model_type == "qwen2_5_vl":  # the patch merger is Qwen's projector, inside `model.visual`
        merger = numel(model.model.visual.merger)
        return {"vision_tower": numel(model.model.visual) - merger, "projector": merger,
                "language_model": numel(model.model.language_model),
                "lm_head_untied": 0 if config.tie_word_embeddings else numel(model.lm_head), "total": numel(model)}
    return {
        "vision_tower": numel(model.model.vision_tower),
        "projector": numel(model.model.multi_modal_projector),
        "language_model": numel(model.model.language_model),
        "lm_head_untied": 0 if config.tie_word_embeddings else numel(model.lm_head),
        "total": numel(model),
    }
