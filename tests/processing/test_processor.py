"""InfiMedProcessor: placeholder expansion, assistant masks from the chat template, named errors."""

import numpy as np
import pytest
from PIL import Image

from infimed.processing.image_io import ImageLoadError
from infimed.testing import tiny_processor

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases


def _image():
    return Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype("uint8"))


def test_each_placeholder_expands_to_num_image_tokens():
    processor = tiny_processor()
    out = processor(text="<image> and <image>", images=[_image(), _image()], return_tensors="pt")
    assert int((out["input_ids"] == processor.image_token_id).sum()) == 2 * 64
    assert tuple(out["pixel_values"].shape) == (2, 3, 64, 64)
    low = processor(text="<image>", images=[_image()], num_image_tokens=16, return_tensors="pt")
    assert int((low["input_ids"] == processor.image_token_id).sum()) == 16


def test_assistant_mask_covers_exactly_the_assistant_turns():
    processor = tiny_processor()
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a lesion?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "yes"}]},
        {"role": "user", "content": [{"type": "text", "text": "Which side?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "left lung"}]},
    ]
    out = processor.apply_chat_template(
        messages,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        processor_kwargs={"images": [_image()]},
    )
    ids, mask = out["input_ids"][0], out["assistant_masks"][0]
    masked_text = processor.tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert masked_text == "yes<|im_end|>left lung<|im_end|>"
    # every image token is outside the mask, and the text outside the mask has no assistant words
    assert not any(m for i, m in zip(ids, mask) if i == processor.image_token_id)
    unmasked = processor.tokenizer.decode([i for i, m in zip(ids, mask) if not m and i != processor.image_token_id])
    assert "yes" not in unmasked and "left lung" not in unmasked


def test_generation_prompt_ends_with_assistant_header():
    processor = tiny_processor()
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>assistant\n")


def test_placeholder_image_count_mismatch_names_counts():
    processor = tiny_processor()
    with pytest.raises(ValueError, match=r"2 `<image>` placeholders .* but 1 images"):
        processor(text="<image> <image>", images=[_image()])


def test_corrupt_image_file_raises_named_error(tmp_path):
    bad = tmp_path / "scan_0042.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    processor = tiny_processor()
    with pytest.raises(ImageLoadError, match="scan_0042.png"):
        processor(text="<image>", images=[str(bad)])


def test_processor_reads_dicom_files():
    pydicom_data = pytest.importorskip("pydicom.data")
    path = pydicom_data.get_testdata_file("CT_small.dcm")
    out = tiny_processor()(text="<image>", images=[path], return_tensors="pt")
    assert tuple(out["pixel_values"].shape) == (1, 3, 64, 64)
    assert out["pixel_values"].std() > 0.05  # windowed, not a blank image
