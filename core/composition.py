"""Build an InfiMed checkpoint from a preset, or from a pretrained vision encoder + a pretrained causal LM.

Composition copies the encoder and the LM (embeddings, decoder, LM head) exactly; only the projector is new. The
`<image>` token is added to the LM's tokenizer; the embedding table grows only when the new id does not fit (Qwen3
checkpoints reserve spare rows, so their weights stay untouched).

    infimed init --preset infimed-foundation-1.7b --output ckpt \
        --vision-model google/siglip-so400m-patch14-384 --language-model Qwen/Qwen3-1.7B
"""

from __future__ import annotations

import copy
import json
import logging
import os

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import cached_file

from infimed.modeling.configuration_infimed import InfiMedConfig, vision_grid_side
from infimed.modeling.modeling_infimed import InfiMedForConditionalGeneration
from infimed.modeling.presets import TINY_QWEN_TOKENS, build_config, get_preset, model_class
from infimed.processing import CHAT_TEMPLATE, InfiMedImageProcessor, InfiMedProcessor, QwenVLImageTextProcessor
from infimed.processing.tiny_tokenizer import build_tiny_tokenizer

__all__ = ["QWEN_VL_CHAT_TEMPLATE", "compose_from_pretrained", "init_checkpoint"]

logger = logging.getLogger(__name__)

# Qwen2.5-VL's ChatML: InfiMed's template (the same `{% generation %}` markers, for assistant masks) with each image
# as <|vision_start|><|image_pad|><|vision_end|>, which Qwen's processor expands to the image's grid.
_INFIMED_IMAGE = "{{- '<image>\n' }}"  # as in CHAT_TEMPLATE: the Python escape, one newline character
QWEN_VL_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(_INFIMED_IMAGE, "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}")
# The tiny Qwen2.5-VL's pixel bounds: a 64x64 demo image stays 64x64 (16 visual tokens); 32x32 is the floor.
_TINY_QWEN_MIN_PIXELS, _TINY_QWEN_MAX_PIXELS = 32 * 32, 64 * 64


def _tiny_qwen_processor():
    """A Qwen2.5-VL processor over the tiny BPE plus Qwen's vision tokens, built offline (ids in TINY_QWEN_TOKENS)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = build_tiny_tokenizer()
    names = {"vision_start": "<|vision_start|>", "vision_end": "<|vision_end|>", "image": "<|image_pad|>",
             "video": "<|video_pad|>"}
    tokenizer.add_special_tokens({"additional_special_tokens": list(names.values())},
                                 replace_extra_special_tokens=False)
    got = {key: tokenizer.convert_tokens_to_ids(token) for key, token in names.items()}
    if got != TINY_QWEN_TOKENS:  # the preset's config names these ids; a tokenizer change must update both
        raise RuntimeError(f"Tiny Qwen tokenizer ids {got} differ from the preset's {TINY_QWEN_TOKENS}.")
    spec = get_preset("tiny-qwen2.5-vl")
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=spec.vision_config["patch_size"], merge_size=spec.vision_config["spatial_merge_size"],
        temporal_patch_size=spec.vision_config["temporal_patch_size"],
        min_pixels=_TINY_QWEN_MIN_PIXELS, max_pixels=_TINY_QWEN_MAX_PIXELS,
    )
    # Qwen's processor less its video part, which needs torchvision (see `processing_qwen_vl`)
    return QwenVLImageTextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    chat_template=QWEN_VL_CHAT_TEMPLATE)


def _vision_parts(vision_model: str, dtype):
    """(vision config, vision encoder) from a checkpoint that is either a vision model or a dual encoder (SigLIP)."""
    config = AutoConfig.from_pretrained(vision_model)
    vision_config = copy.deepcopy(getattr(config, "vision_config", config))
    if hasattr(vision_config, "vision_use_head"):
        vision_config.vision_use_head = False  # the MAP head is unused by a VLM
    encoder_class = MODEL_MAPPING[type(vision_config)]
    encoder = encoder_class.from_pretrained(vision_model, config=vision_config, dtype=dtype)
    return vision_config, encoder


def _image_processor_for(vision_model: str, vision_config):
    """InfiMedImageProcessor matching the encoder's own preprocessing (size, mean, std) when it ships one."""
    kwargs = {"image_size": getattr(vision_config, "image_size", 384)}
    try:
        path = cached_file(vision_model, "preprocessor_config.json")
        with open(path, encoding="utf-8") as handle:
            pre = json.load(handle)
        size = pre.get("size") or {}
        if isinstance(size, dict) and size.get("height"):
            kwargs["image_size"] = int(size["height"])
        if pre.get("image_mean"):
            kwargs["image_mean"], kwargs["image_std"] = pre["image_mean"], pre["image_std"]
    except (OSError, ValueError) as err:
        logger.warning("No usable preprocessor_config.json in %s (%s); using SigLIP defaults.", vision_model, err)
    return InfiMedImageProcessor(**kwargs)


def compose_from_pretrained(
    vision_model: str,
    language_model: str,
    *,
    num_image_tokens: int | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
):
    """Return `(model, processor)` built from two pretrained checkpoints (Hub ids or local folders)."""
    vision_config, encoder = _vision_parts(vision_model, dtype)
    lm = AutoModelForCausalLM.from_pretrained(language_model, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(language_model)
    if tokenizer.convert_tokens_to_ids("<image>") in (None, tokenizer.unk_token_id):
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    text_config = copy.deepcopy(lm.config)
    if image_token_id >= text_config.vocab_size:
        lm.resize_token_embeddings(image_token_id + 1, mean_resizing=True)
        text_config = copy.deepcopy(lm.config)
    grid = vision_grid_side(vision_config)
    config = InfiMedConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=image_token_id,
        num_image_tokens=num_image_tokens or grid * grid,  # default: the full patch grid, no pooling
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )
    torch.manual_seed(seed)
    model = InfiMedForConditionalGeneration(config).to(dtype)
    model.model.vision_tower.load_state_dict(encoder.state_dict())
    model.model.language_model.load_state_dict(lm.get_decoder().state_dict())
    model.lm_head.load_state_dict(lm.get_output_embeddings().state_dict())
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>") or tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    processor = InfiMedProcessor(
        image_processor=_image_processor_for(vision_model, vision_config),
        tokenizer=tokenizer,
        num_image_tokens=config.num_image_tokens,
    )
    return model, processor


def init_checkpoint(
    preset: str,
    output_dir: str,
    *,
    vision_model: str | None = None,
    language_model: str | None = None,
    num_image_tokens: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> str:
    """Write a loadable checkpoint (weights, config + code, processor, tokenizer, chat template) to `output_dir`.

    With `vision_model` and `language_model`, weights come from those checkpoints; otherwise the preset's architecture
    is initialised randomly (the `tiny` and `tiny-qwen2.5-vl` presets also build their tokenizer in code; the large
    presets then need `--language-model` for a tokenizer that matches their vocabulary).
    """
    spec = get_preset(preset)
    if (vision_model is None) != (language_model is None):
        raise ValueError("Pass both `--vision-model` and `--language-model` to compose, or neither for a random init.")
    if vision_model is not None and spec.model_type != "infimed":
        raise ValueError(f"Preset `{preset}` is a random-init test model and composes no pretrained parts; to start "
                         "from a pretrained Qwen2.5-VL, name its checkpoint (e.g. `Qwen/Qwen2.5-VL-3B-Instruct`) as "
                         "the recipe's `model`.")
    if vision_model is not None:
        model, processor = compose_from_pretrained(
            vision_model, language_model, num_image_tokens=num_image_tokens, dtype=dtype, seed=seed
        )
    else:
        if preset == "tiny-qwen2.5-vl":
            processor = _tiny_qwen_processor()
            tokenizer = processor.tokenizer
        elif preset == "tiny":
            tokenizer = build_tiny_tokenizer()
        else:
            raise ValueError(
                f"Preset `{preset}` without pretrained parts has no tokenizer of its vocabulary. Pass "
                f"`--vision-model {spec.default_vision_model} --language-model {spec.default_language_model}` "
                "(or local copies of them)."
            )
        config = build_config(preset, **({"num_image_tokens": num_image_tokens} if num_image_tokens else {}))
        torch.manual_seed(seed)
        model = model_class(config)(config).to(dtype)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        if spec.model_type == "infimed":
            processor = InfiMedProcessor(
                image_processor=InfiMedImageProcessor(image_size=config.vision_config.image_size),
                tokenizer=tokenizer,
                num_image_tokens=config.num_image_tokens,
            )
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir
