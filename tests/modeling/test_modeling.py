"""Invariants of the InfiMed model: packed == alone, cache == no cache, one set of weights at any visual-token count."""

import numpy as np
import pytest
import torch
from PIL import Image

from infimed.testing import tiny_model, tiny_processor

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8"))


def _samples(processor, num_image_tokens=None):
    """Three samples: one image, two images, text only."""
    texts = ["<image>\nIs there a lesion in the left lung?", "Compare <image> with <image> please.", "What is a nodule?"]
    images = [[_image(0)], [_image(1), _image(2)], []]
    kwargs = {"num_image_tokens": num_image_tokens} if num_image_tokens else {}
    return [
        processor(text=t, images=im or None, return_tensors="pt", **kwargs) for t, im in zip(texts, images)
    ]


@pytest.mark.parametrize(
    "attn", ["eager", "sdpa", pytest.param("flex_attention", marks=pytest.mark.flex)]
)
def test_packed_row_matches_each_sample_alone(attn):
    model, processor = tiny_model(attn_implementation=attn), tiny_processor()
    samples = _samples(processor)
    with torch.no_grad():
        alone = [model(**s).logits[0] for s in samples]
        input_ids = torch.cat([s["input_ids"][0] for s in samples])[None]
        position_ids = torch.cat([torch.arange(s["input_ids"].shape[1]) for s in samples])[None]
        pixel_values = torch.cat([s["pixel_values"] for s in samples if "pixel_values" in s])
        packed = model(input_ids=input_ids, position_ids=position_ids, pixel_values=pixel_values).logits[0]
    start = 0
    for logits in alone:
        end = start + logits.shape[0]
        assert (packed[start:end] - logits).abs().max().item() < 1e-4
        start = end


def test_packed_row_does_not_attend_across_samples():
    """Changing the first sample must leave the second sample's logits in the packed row unchanged."""
    model, processor = tiny_model(), tiny_processor()
    a, b, _ = _samples(processor)
    other = processor(text="<image>\nHow many lesions are visible?", images=[_image(7)], return_tensors="pt")

    def packed(first):
        ids = torch.cat([first["input_ids"][0], b["input_ids"][0]])[None]
        pos = torch.cat([torch.arange(first["input_ids"].shape[1]), torch.arange(b["input_ids"].shape[1])])[None]
        px = torch.cat([first["pixel_values"], b["pixel_values"]])
        with torch.no_grad():
            return model(input_ids=ids, position_ids=pos, pixel_values=px).logits[0, -b["input_ids"].shape[1] :]

    assert (packed(a) - packed(other)).abs().max().item() < 1e-5


def test_cache_and_no_cache_generate_the_same_tokens():
    model, processor = tiny_model(), tiny_processor()
    inputs = processor(text="<image>\nIs there a lesion?", images=[_image(3)], return_tensors="pt")
    with torch.no_grad():
        cached = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=True)
        uncached = model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_batched_left_padded_generation_matches_single():
    model, processor = tiny_model(), tiny_processor()
    texts = ["<image>\nIs there a lesion?", "<image>\nHow many lesions are visible in this frontal radiograph?"]
    images = [_image(4), _image(5)]
    with torch.no_grad():
        singles = []
        for text, image in zip(texts, images):
            inputs = processor(text=text, images=[image], return_tensors="pt")
            out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
            singles.append(out[0, inputs["input_ids"].shape[1] :])
        batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
        assert processor.tokenizer.padding_side == "left"
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    for row, single in zip(out[:, batch["input_ids"].shape[1] :], singles):
        assert torch.equal(row, single)


def test_same_weights_run_at_two_visual_token_counts():
    model = tiny_model()
    low, high = tiny_processor(num_image_tokens=16), tiny_processor()
    image = _image(6)
    with torch.no_grad():
        out_low = model(**low(text="<image>\nlesion?", images=[image], return_tensors="pt"), num_image_tokens=16)
        out_high = model(**high(text="<image>\nlesion?", images=[image], return_tensors="pt"))
        features_16 = model.get_image_features(high.image_processor([image])["pixel_values"], 16)
    assert out_low.image_hidden_states.shape == (1, 16, model.config.text_config.hidden_size)
    assert out_high.image_hidden_states.shape == (1, 64, model.config.text_config.hidden_size)
    assert torch.allclose(out_low.image_hidden_states, features_16)
    assert out_low.logits.shape[1] == out_high.logits.shape[1] - 48


def test_image_token_mismatch_raises_with_both_counts():
    model, processor = tiny_model(), tiny_processor()
    inputs = processor(text="<image>\nlesion?", images=[_image(0)], return_tensors="pt")
    with pytest.raises(ValueError, match=r"tokens 64, features 16"):
        model(**inputs, num_image_tokens=16)
    with pytest.raises(ValueError, match=r"tokens 64, features 0"):
        model(input_ids=inputs["input_ids"])


def test_invalid_num_image_tokens_is_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match="square number"):
        model.get_image_features(torch.zeros(1, 3, 64, 64), 20)
    with pytest.raises(ValueError, match="8x8 patch grid"):
        model.get_image_features(torch.zeros(1, 3, 64, 64), 81)


def test_loss_ignores_minus_100_and_backpropagates_with_gradient_checkpointing():
    model, processor = tiny_model(), tiny_processor()
    model.train()
    model.gradient_checkpointing_enable()
    inputs = processor(text="<image>\nIs there a lesion? yes", images=[_image(0)], return_tensors="pt")
    labels = inputs["input_ids"].clone()
    labels[:, :-1] = -100  # only the last token is a target
    out = model(**inputs, labels=labels)
    out.loss.backward()
    # The loss is the mean over the one supervised (shifted) position: recompute it by hand.
    logits = out.logits[0, -2]
    expected = torch.nn.functional.cross_entropy(logits[None], inputs["input_ids"][:, -1])
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert model.model.multi_modal_projector.linear_1.weight.grad is not None
    assert model.model.vision_tower.get_input_embeddings().weight.grad is not None


def test_bf16_forward_runs_and_keeps_dtype():
    model, processor = tiny_model().to(torch.bfloat16), tiny_processor()
    inputs = processor(text="<image>\nlesion?", images=[_image(0)], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.logits.float()).all()
