"""InfiMed configuration: a vision encoder config, a causal-LM config and the pooled-projector settings.

This file travels with saved checkpoints (remote code), so it imports only transformers and relative siblings.
"""

from __future__ import annotations

import math

from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

__all__ = ["InfiMedConfig", "vision_grid_side"]


def vision_grid_side(vision_config: PreTrainedConfig) -> int:
    """Side of the square patch grid the vision encoder produces for one image.

    SigLIP: image_size // patch_size (384 // 14 = 27 for SO400M-384). SigLIP2 (NaFlex) is used here at a fixed square
    resolution of `sqrt(num_patches)` patches per side (16 for the default 256 patches).
    """
    if getattr(vision_config, "model_type", "") == "siglip2_vision_model":
        side = math.isqrt(vision_config.num_patches)
        if side * side != vision_config.num_patches:
            raise ValueError(
                f"SigLIP2 `num_patches={vision_config.num_patches}` is not a square number; InfiMed feeds SigLIP2 "
                "square images, so set `num_patches` to a square such as 256 or 729."
            )
        return side
    image_size, patch_size = getattr(vision_config, "image_size", None), getattr(vision_config, "patch_size", None)
    if not image_size or not patch_size:
        raise ValueError(
            f"Cannot derive the patch grid of vision config `{type(vision_config).__name__}`: it has no "
            "`image_size`/`patch_size`. Use a ViT-style encoder config (SigLIP, SigLIP2, CLIP vision)."
        )
    return image_size // patch_size


class InfiMedConfig(PreTrainedConfig):
    r"""
    Configuration of an InfiMed-Foundation model: vision encoder -> adaptive average pool -> 2-layer MLP projector ->
    causal language model (LLaVA-style; Open-Qwen2VL lineage).

    Args:
        vision_config (`dict` or `PreTrainedConfig`): any transformers ViT-style vision encoder config; SigLIP
            (`siglip_vision_model`, default, SO400M-patch14-384 shape) and SigLIP2 (`siglip2_vision_model`).
        text_config (`dict` or `PreTrainedConfig`): any decoder-only causal LM config (Qwen3 default; Qwen2, Llama).
        image_token_id (`int`): id of the image placeholder token in the tokenizer.
        num_image_tokens (`int`): visual tokens per image after pooling; a square number whose side is at most the
            encoder's patch grid side (e.g. 144 = 12x12 for pretraining or 729 = 27x27 for SFT on a 27x27 grid).
            Overridable per call (`forward(num_image_tokens=...)`) so one set of weights serves every stage.
        projector_hidden_act (`str`): activation between the projector's two Linear layers.
        projector_bias (`bool`): whether the projector's Linear layers have biases.
        vision_feature_layer (`int`): encoder layer whose output is projected; -1 is the final (post-norm) output.

    Example:

    ```python
    >>> from infimed.modeling import InfiMedConfig
    >>> config = InfiMedConfig(num_image_tokens=144)
    >>> config.vision_config.model_type, config.text_config.model_type
    ('siglip_vision_model', 'qwen3')
    ```
    """

    model_type = "infimed"
    sub_configs_defaults = {
        # SigLIP-SO400M-patch14-384 (27x27 = 729 patches), the encoder the 1.7B/4B presets use.
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="siglip_vision_model",
            init_kwargs={
                "hidden_size": 1152,
                "intermediate_size": 4304,
                "num_hidden_layers": 27,
                "num_attention_heads": 16,
                "image_size": 384,
                "patch_size": 14,
                "vision_use_head": False,  # the MAP pooling head is unused by a VLM
            },
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen3"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 151655  # Qwen tokenizers' <|image_pad|>; the presets set their tokenizer's id
    num_image_tokens: int = 729  # full 27x27 grid of SigLIP-SO400M-384: the SFT setting
    projector_hidden_act: str = "gelu"
    projector_bias: bool = True
    vision_feature_layer: int = -1
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Qwen3-1.7B ties its input and output embeddings; the flag lives in the text config of such checkpoints.
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        self.validate_num_image_tokens(self.num_image_tokens)

    @property
    def vision_grid_side(self) -> int:
        return vision_grid_side(self.vision_config)

    def validate_num_image_tokens(self, num_image_tokens: int) -> int:
        """Return the pooled grid side for `num_image_tokens`, or raise if the encoder cannot produce that many."""
        side = math.isqrt(int(num_image_tokens)) if num_image_tokens and num_image_tokens > 0 else 0
        grid = self.vision_grid_side
        if side * side != num_image_tokens or side > grid:
            raise ValueError(
                f"`num_image_tokens={num_image_tokens}` is not allowed: it must be a square number whose side is at "
                f"most the vision encoder's {grid}x{grid} patch grid, e.g. {(grid // 2) ** 2} for pretraining or "
                f"{grid * grid} (no pooling) for SFT."
            )
        return side

