"""Batched, left-padded generation on a tiny Qwen2.5-VL (M-RoPE, dynamic resolution): equal to one item at a time."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from infimed.evaluation.generation import GenerationOptions, GenerationRequest, batched_generate
from infimed.testing import tiny_processor

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases

SPECIAL = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"]
# Qwen2.5-VL's user-turn layout for image parts, on ChatML; enough for generation prompts.
TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{%- for part in message['content'] %}{%- if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'text' %}{{ part['text'] }}{%- endif %}{%- endfor %}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


def tiny_qwen():
    """A 2-layer Qwen2.5-VL and its processor on the tiny tokenizer plus Qwen's vision tokens (nothing downloaded).
    The stock processor also builds a video processor, which needs torchvision; images only need this subclass."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwenProcessor(Qwen2_5_VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    tokenizer = copy.deepcopy(tiny_processor().tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    # 16x16 px max at patch 4 and 2x2 merge: 4 image tokens per square image, 8 for a 16x32 one.
    image_processor = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=64,
                                               max_pixels=512)
    processor = ImageOnlyQwenProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=832, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0, initializer_range=0.1,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 2, 4], "rope_theta": 1e4}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64, window_size=8,
                           fullatt_block_indexes=[1], initializer_range=0.1),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = 2, 0
    return model, processor


def test_qwen25vl_batched_equals_single():
    model, processor = tiny_qwen()
    rng = np.random.default_rng(0)
    requests = []
    # Mixed image counts and aspect ratios: different image-token counts and M-RoPE grids share a left-padded batch.
    for i, (count, (h, w)) in enumerate([(1, (16, 16)), (0, (0, 0)), (2, (16, 32)), (1, (32, 16)), (1, (16, 16))]):
        images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(count)]
        content = [{"type": "image"}] * count + [{"type": "text", "text": f"Q{i}: is there a lesion?" + " more" * i}]
        requests.append(GenerationRequest(str(i), [{"role": "user", "content": content}], images))
    single, _ = batched_generate(model, processor, requests, GenerationOptions(batch_size=1, max_new_tokens=8),
                                 progress=False)
    batched, _ = batched_generate(model, processor, requests, GenerationOptions(batch_size=5, max_new_tokens=8),
                                  progress=False)
    assert batched == single
    assert len(set(batched)) == len(requests)


def test_num_image_tokens_is_ignored_with_a_warning_for_dynamic_resolution():
    model, processor = tiny_qwen()
    request = GenerationRequest("0", [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], [])
    with pytest.warns(UserWarning, match="num_image_tokens"):
        out, _ = batched_generate(model, processor, [request], GenerationOptions(num_image_tokens=16, max_new_tokens=2),
                                  progress=False)
    assert isinstance(out[0], str)
