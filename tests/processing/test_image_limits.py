"""Oversized images are image errors named by file, refused from their header before any pixel is decoded, and
counted as image errors by evaluation and curation like any other undecodable image."""

import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image

from infimed.data.curation.config import AnswerRules, ImageRules, TextRules
from infimed.data.curation.rules import score_sample
from infimed.data.demo_render import write_demo_dicom
from infimed.evaluation.generation import GenerationOptions, GenerationRequest, batched_generate
from infimed.processing.image_io import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, load_image, max_image_pixels
from infimed.testing import tiny_model, tiny_processor
from tests.helpers.curation import row


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (greyscale) with almost no pixel data: a decompression bomb's
    shape at a few bytes, so the test never allocates the image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_pil_decompression_bomb_is_an_image_error_naming_the_file(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20_000, 20_000))  # 400 megapixels: over twice PIL's limit
    with pytest.raises(ImageLoadError, match="bomb.png") as info:
        load_image(path, max_pixels=10**12)  # our limit out of the way: PIL's own refusal must be wrapped too
    assert "decompression bomb" in str(info.value)


def test_image_over_our_limit_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(12_000, 12_000))  # 144 megapixels: PIL itself would only warn
    with pytest.raises(ImageLoadError, match=r"huge.png.*144,000,000 pixels is over the limit of 89,478,485"):
        load_image(path)
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image({"bytes": path.read_bytes(), "path": None}, name="sample 7")


def test_limit_is_configurable_by_argument_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 50), dtype=np.uint8)).save(path)
    assert load_image(path).size == (50, 40)
    with pytest.raises(ImageLoadError, match="2,000 pixels is over the limit of 1,999"):
        load_image(path, max_pixels=1999)
    monkeypatch.setenv("INFIMED_MAX_IMAGE_PIXELS", "1000")
    assert max_image_pixels() == 1000
    with pytest.raises(ImageLoadError, match="over the limit of 1,000"):
        load_image(path)
    monkeypatch.setenv("INFIMED_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="INFIMED_MAX_IMAGE_PIXELS must be a positive number"):
        load_image(path)
    monkeypatch.delenv("INFIMED_MAX_IMAGE_PIXELS")
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS


def test_dicom_over_the_limit_is_refused_from_its_header(tmp_path):
    path = tmp_path / "scan.dcm"
    write_demo_dicom(path, seed=1)
    rows, cols = (int(pydicom.dcmread(path).get(k)) for k in ("Rows", "Columns"))
    assert load_image(path).size == (cols, rows)
    with pytest.raises(ImageLoadError, match=r"scan.dcm.*over the limit"):
        load_image(path, max_pixels=rows * cols - 1)


def test_a_bomb_in_an_evaluation_batch_is_counted_as_an_image_error():
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "lesion?"}]}]
    ok = np.zeros((64, 64, 3), dtype=np.uint8)
    requests = [GenerationRequest("ok", messages, [Image.fromarray(ok)]),
                GenerationRequest("bomb", messages, [_png_header_only(20_000, 20_000)])]
    out, errors = batched_generate(tiny_model(), tiny_processor(), requests, GenerationOptions(max_new_tokens=2),
                                   progress=False)
    assert errors == {"image error": 1}
    assert out[0] is not None and out[1] is None


def test_a_bomb_in_curation_scores_as_undecodable_with_the_reason():
    result = score_sample(row("bomb", _png_header_only(12_000, 12_000)), ImageRules(), TextRules(), AnswerRules())
    assert any("undecodable" in flag for flag in result.flags), result.flags
    assert any("over the limit" in detail for detail in result.details), result.details
