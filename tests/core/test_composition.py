"""Composition from pretrained parts copies the backbones' weights exactly; only the projector is new."""

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.models.siglip2 import Siglip2VisionConfig, Siglip2VisionModel

from infimed.core.composition import compose_from_pretrained
from infimed.testing import tiny_processor

TEXT = dict(vocab_size=800, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)


def _save_lm(folder, kind):
    torch.manual_seed(1)
    if kind == "qwen3":
        lm = Qwen3ForCausalLM(Qwen3Config(head_dim=8, tie_word_embeddings=True, **TEXT))
    elif kind == "qwen2":
        lm = Qwen2ForCausalLM(Qwen2Config(**TEXT))
    else:
        lm = LlamaForCausalLM(LlamaConfig(**TEXT))
    lm.save_pretrained(folder)
    tiny_processor().tokenizer.save_pretrained(folder)  # any fast tokenizer; composition adds `<image>` if missing
    return lm


def _save_vision(folder, kind):
    torch.manual_seed(2)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=8)
    if kind == "siglip":
        encoder = SiglipVisionModel(SiglipVisionConfig(image_size=32, **common))
    else:
        encoder = Siglip2VisionModel(Siglip2VisionConfig(num_patches=16, **common))
    encoder.save_pretrained(folder)
    return encoder


@pytest.mark.parametrize("vision_kind,lm_kind", [("siglip", "qwen3"), ("siglip", "qwen2"), ("siglip2", "llama")])
def test_composition_copies_backbone_weights_exactly(tmp_path, vision_kind, lm_kind):
    encoder = _save_vision(tmp_path / "vision", vision_kind)
    lm = _save_lm(tmp_path / "lm", lm_kind)
    model, processor = compose_from_pretrained(str(tmp_path / "vision"), str(tmp_path / "lm"), num_image_tokens=4)

    vision_state = model.model.vision_tower.state_dict()
    for name, tensor in encoder.state_dict().items():
        if "head." not in name:  # the MAP pooling head is dropped on purpose (unused by a VLM)
            assert torch.equal(vision_state[name], tensor), name
    lm_state = model.model.language_model.state_dict()
    for name, tensor in lm.get_decoder().state_dict().items():
        assert torch.equal(lm_state[name], tensor), name
    assert torch.equal(model.lm_head.weight, lm.lm_head.weight)
    assert model.config.text_config.model_type == lm_kind
    assert processor.image_token_id == model.config.image_token_id

    # the composed model runs end to end with its processor
    image = torch.rand(3, 40, 40)
    inputs = processor(text="<image>\nlesion?", images=[image], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    assert out.image_hidden_states.shape == (1, 4, 32)
