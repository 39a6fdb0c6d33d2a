"""InfiMed-Foundation model: vision encoder -> adaptive-average-pooled 2-layer MLP projector -> causal LM.

    pixel_values (I, 3, H, W)                                  input_ids (B, S) with num_image_tokens x <image> per image
        -> vision_tower            (I, G*G, Dv)                        -> embed_tokens (B, S, Dt)
        -> adaptive avg pool       (I, s*s, Dv)   s*s = num_image_tokens       |
        -> Linear, GELU, Linear    (I, s*s, Dt)  ---- scattered at <image> ----+
                                                                               -> language_model -> lm_head

`num_image_tokens` can change per call with the same weights: the low-to-high resolution schedule trains with few
visual tokens first (e.g. 144) and many later (729). This file travels with saved checkpoints (remote code), so it
imports only torch, transformers and its relative sibling, and it runs on every transformers release the package
supports (see `docs/compatibility.md`): the KV cache is `past_key_values` up to 5.23 and `cache` from 5.24, so the
forward methods accept both names and the outputs use transformers' own output dataclasses, which follow the rename.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn
from transformers import AutoModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import PreTrainedModel

from .configuration_infimed import InfiMedConfig

__all__ = [
    "InfiMedCausalLMOutputWithPast",
    "InfiMedForConditionalGeneration",
    "InfiMedModel",
    "InfiMedModelOutputWithPast",
    "InfiMedPreTrainedModel",
    "InfiMedProjector",
]


# The name the installed transformers gives the KV cache, in forward arguments and in output fields: read off its
# own output dataclass rather than compared with a version number, so a checkpoint's copy of this file follows the
# release its user has. "past_key_values" up to 5.23; "cache" from 5.24 (the old name is deprecated until 5.40).
CACHE_NAME = "cache" if "cache" in {f.name for f in fields(BaseModelOutputWithPast)} else "past_key_values"


def _pick_cache(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The one KV cache a caller passed, under either name (generation passes the installed release's name)."""
    if cache is not None and past_key_values is not None:
        raise ValueError("Pass the KV cache once: `cache` (transformers >= 5.24) or `past_key_values`, not both.")
    return cache if cache is not None else past_key_values


@dataclass
class InfiMedModelOutputWithPast(BaseModelOutputWithPast):
    """`BaseModelOutputWithPast` plus `image_hidden_states` of shape `(num_images, num_image_tokens, text_hidden)`."""

    image_hidden_states: torch.Tensor | None = None


@dataclass
class InfiMedCausalLMOutputWithPast(CausalLMOutputWithPast):
    """`CausalLMOutputWithPast` (`loss`, `logits` (B, S, V), the KV cache, ...) plus `image_hidden_states`."""

    image_hidden_states: torch.Tensor | None = None


class InfiMedProjector(nn.Module):
    """Adaptive average pool of the patch grid to `num_image_tokens`, then Linear -> GELU -> Linear.

    Pooling before the MLP keeps the projector's cost proportional to the pooled token count; it has no parameters,
    so one projector serves every `num_image_tokens`.
    """

    def __init__(self, config: InfiMedConfig):
        super().__init__()
        vision_hidden = config.vision_config.hidden_size
        text_hidden = config.text_config.hidden_size
        self.linear_1 = nn.Linear(vision_hidden, text_hidden, bias=config.projector_bias)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(text_hidden, text_hidden, bias=config.projector_bias)

    def forward(self, patch_features: torch.Tensor, pooled_side: int) -> torch.Tensor:
        num_images, num_patches, hidden = patch_features.shape  # (I, G*G, Dv)
        grid = int(round(num_patches**0.5))
        if grid * grid != num_patches:
            raise ValueError(f"The vision encoder returned {num_patches} patches per image, not a square grid.")
        if pooled_side != grid:
            # (I, G*G, Dv) -> (I, Dv, G, G) -> pool -> (I, Dv, s, s) -> (I, s*s, Dv); pool in fp32 for bf16 stability
            grid_features = patch_features.transpose(1, 2).reshape(num_images, hidden, grid, grid)
            pooled = nn.functional.adaptive_avg_pool2d(grid_features.float(), pooled_side).to(patch_features.dtype)
            patch_features = pooled.flatten(2).transpose(1, 2)
        return self.linear_2(self.act(self.linear_1(patch_features)))  # (I, s*s, Dt)


class InfiMedPreTrainedModel(PreTrainedModel):
    config_class = InfiMedConfig
    config: InfiMedConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False  # the image/placeholder count check reads a tensor value

    def save_pretrained(self, save_directory, *args, **kwargs):
        # transformers writes only the saved class's own `auto_map` entry; add the base model so that
        # `AutoModel.from_pretrained(dir, trust_remote_code=True)` resolves too.
        if getattr(self, "_auto_class", None) is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoModel", f"{type(self).__module__.rsplit('.', 1)[-1]}.InfiMedModel")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)


class InfiMedModel(InfiMedPreTrainedModel):
    """Vision tower + projector + language model (no LM head): the multimodal wrapper at `model.model`."""

    def __init__(self, config: InfiMedConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = InfiMedProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model

    def set_decoder(self, decoder: nn.Module) -> None:
        self.language_model = decoder

    def _encode_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(I, 3, H, W) -> patch features (I, G*G, Dv) from `config.vision_feature_layer`."""
        vision_config = self.config.vision_config
        pixel_values = pixel_values.to(self.vision_tower.dtype)
        want_hidden = self.config.vision_feature_layer != -1
        if vision_config.model_type == "siglip2_vision_model":
            # SigLIP2 (NaFlex) takes pre-patchified pixels: (I, 3, H, W) -> (I, Gh*Gw, P*P*3) in (row, col, P, P, C)
            patch = vision_config.patch_size
            num_images, channels, height, width = pixel_values.shape
            grid_h, grid_w = height // patch, width // patch
            patches = pixel_values.reshape(num_images, channels, grid_h, patch, grid_w, patch)
            patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(num_images, grid_h * grid_w, -1)
            outputs = self.vision_tower(
                pixel_values=patches,
                pixel_attention_mask=torch.ones(patches.shape[:2], dtype=torch.long, device=patches.device),
                spatial_shapes=torch.tensor([[grid_h, grid_w]] * num_images, device=patches.device),
                output_hidden_states=want_hidden,
            )
        else:
            outputs = self.vision_tower(pixel_values=pixel_values, output_hidden_states=want_hidden)
        if want_hidden:
            return outputs.hidden_states[self.config.vision_feature_layer]
        return outputs.last_hidden_state

    def get_image_features(self, pixel_values: torch.Tensor, num_image_tokens: int | None = None) -> torch.Tensor:
        """Encode images into projected visual tokens: (I, 3, H, W) -> (I, num_image_tokens, text_hidden)."""
        num_image_tokens = num_image_tokens or self.config.num_image_tokens
        pooled_side = self.config.validate_num_image_tokens(num_image_tokens)
        return self.multi_modal_projector(self._encode_patches(pixel_values), pooled_side)

    def get_placeholder_mask(self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, image_features):
        """Boolean mask (B, S, 1) of image-token positions; raises when tokens and features disagree in number."""
        if input_ids is None:
            image_embedding = self.get_input_embeddings()(
                torch.tensor(self.config.image_token_id, dtype=torch.long, device=inputs_embeds.device)
            )
            mask = (inputs_embeds == image_embedding).all(-1)
        else:
            mask = input_ids == self.config.image_token_id
        num_tokens = int(mask.sum())
        num_features = image_features.shape[0] * image_features.shape[1]
        if num_tokens != num_features:
            raise ValueError(
                f"Image features and image tokens do not match: tokens {num_tokens}, features {num_features} "
                f"({image_features.shape[0]} images x {image_features.shape[1]} tokens each). Each image needs exactly "
                "`num_image_tokens` image tokens in the text: build inputs with InfiMedProcessor using the same "
                "`num_image_tokens` as the model call, and never truncate a sample through its image tokens."
            )
        return mask.unsqueeze(-1).to(inputs_embeds.device)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        num_image_tokens: int | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> InfiMedModelOutputWithPast:
        cache = _pick_cache(cache, past_key_values)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, S, Dt)

        image_features = None
        if pixel_values is not None and pixel_values.shape[0] > 0:
            # No per-call count: the config's, the one a run (e.g. a recipe stage or a GRPO trainer) set.
            image_features = self.get_image_features(pixel_values, num_image_tokens or self.config.num_image_tokens)
            image_features = image_features.to(inputs_embeds.device, inputs_embeds.dtype)
            mask = self.get_placeholder_mask(input_ids, inputs_embeds, image_features)
            inputs_embeds = inputs_embeds.masked_scatter(mask, image_features.reshape(-1, image_features.shape[-1]))
        elif input_ids is not None and cache is None and bool((input_ids == self.config.image_token_id).any()):
            raise ValueError(
                "Image features and image tokens do not match: tokens "
                f"{int((input_ids == self.config.image_token_id).sum())}, features 0. Pass `pixel_values` for the "
                "images whose placeholders are in the text."
            )

        if attention_mask is None and cache is None and position_ids is not None:
            # Packed rows (position_ids restart per sample, no attention mask): transformers derives the per-sample
            # block mask from position_ids only when no cache object exists. A cache would make samples attend to
            # each other silently (docs/packing.md), so packed forwards never build one.
            use_cache = False

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **{CACHE_NAME: cache},
            **kwargs,
        )
        return InfiMedModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
            **{CACHE_NAME: outputs.get(CACHE_NAME)},
        )


class InfiMedForConditionalGeneration(InfiMedPreTrainedModel, GenerationMixin):
    """InfiMed with a language-modeling head; the class `AutoModelForImageTextToText` resolves to."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: InfiMedConfig):
        super().__init__(config)
        self.model = InfiMedModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    def get_decoder(self) -> nn.Module:
        return self.model.get_decoder()

    def set_decoder(self, decoder: nn.Module) -> None:
        self.model.set_decoder(decoder)

    def get_image_features(self, pixel_values: torch.Tensor, num_image_tokens: int | None = None) -> torch.Tensor:
        return self.model.get_image_features(pixel_values, num_image_tokens)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_image_tokens: int | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> InfiMedCausalLMOutputWithPast:
        r"""
        cache / past_key_values (`Cache`, *optional*): the KV cache, under the name of either transformers release
            (`cache` from 5.24, `past_key_values` before); pass it once.
        labels (`torch.LongTensor` of shape `(B, S)`): next-token targets, `-100` where no loss is taken. The shift
            happens inside the loss, as in every transformers causal LM.
        num_image_tokens (`int`, *optional*): visual tokens per image for this call (default `config.num_image_tokens`).
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=_pick_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            num_image_tokens=num_image_tokens,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])  # (B, S_keep, V)

        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return InfiMedCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
            **{CACHE_NAME: outputs.get(CACHE_NAME)},
        )
