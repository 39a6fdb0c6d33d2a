"""Token ids of a vision-language sample without decoding its images.

Packing needs each sample's token count before training, and the processor expands each image placeholder into
image tokens while it tokenizes. Decoding every image only to learn that count costs ~15 ms per sample (days for a
continual-pretraining corpus), so the encoder hands the processor *stand-ins* instead: zero-copy numpy views of the
image's size, and a stand-in image processor that returns only what the processor reads to expand a placeholder:

| processor | visual tokens per image | what the stand-in needs |
|---|---|---|
| `InfiMedProcessor` | `num_image_tokens`, fixed | nothing about the image |
| Qwen2-VL, Qwen2.5-VL | `grid_h * grid_w / merge_size**2` (`smart_resize`) | the image size, from its header |

Everything else (template rendering, tokenization, assistant masks) is the processor's own `apply_chat_template`,
so the ids are the ones a real image gives (held by tests/training/test_lazy_images.py). Processors of another kind
return `None` from `stand_in_for` and the encoder decodes the images as before.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageHeaderError", "PlaceholderImageProcessor", "image_size", "image_stand_in", "stand_in_for"]

# One byte per pixel channel, broadcast to any size: a stand-in image costs no memory whatever its size.
_ZERO_PIXEL = np.zeros((1, 1, 3), dtype=np.uint8)


class ImageHeaderError(ValueError):
    """The image is missing, or its header cannot be read (so it could never be decoded either)."""


class PlaceholderImageProcessor:
    """Stands in for a processor's image processor while encoding: placeholder expansion inputs, no pixels.

    `sized` is True for processors whose token count depends on the image size (Qwen2-VL family): the stand-in then
    returns `image_grid_thw` rows whose product is the real image processor's patch count for that size (Qwen's
    `replace_image_token` reads only the product). Any other attribute is the real image processor's.
    """

    def __init__(self, image_processor, sized: bool):
        self.image_processor = image_processor
        self.sized = sized

    def __getattr__(self, name):
        if name == "image_processor":  # not set yet (e.g. while unpickling): no recursion through this method
            raise AttributeError(name)
        return getattr(self.image_processor, name)

    def fetch_images(self, images):
        return images

    def __call__(self, images, **kwargs) -> dict:
        from transformers.image_utils import make_flat_list_of_images

        if not self.sized:
            return {}
        import torch

        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        patches = [self.image_processor.get_number_of_image_patches(int(im.shape[0]), int(im.shape[1]), kwargs)
                   for im in make_flat_list_of_images(images)]
        # (num_images, 3): (t, h, w) with only the product meaningful, as documented above
        return {"image_grid_thw": torch.tensor([[1, 1, n] for n in patches], dtype=torch.long)}


def stand_in_for(processor) -> Any | None:
    """A copy of `processor` whose image processor is a `PlaceholderImageProcessor`, or `None` if its kind is
    unknown (the caller then decodes images)."""
    import copy

    real = getattr(processor, "image_processor", None)
    if real is None or isinstance(real, PlaceholderImageProcessor):
        return None
    if hasattr(real, "get_number_of_image_patches") and hasattr(real, "merge_size"):
        sized = True  # Qwen2-VL family: tokens from the image's grid
    elif isinstance(getattr(processor, "num_image_tokens", None), int):
        sized = False  # InfiMed: `num_image_tokens` per placeholder whatever the image
    else:
        return None
    clone = copy.copy(processor)  # shallow: shares the tokenizer, never touches the caller's processor
    clone.image_processor = PlaceholderImageProcessor(real, sized=sized)
    return clone


def image_stand_in(image, sized: bool) -> np.ndarray:
    """A zero-copy (H, W, 3) view of `image`'s size (1x1 when the size does not matter)."""
    if image is None:
        raise ImageHeaderError("the image is missing (None)")
    if not sized:
        _check_exists(image)
        return _ZERO_PIXEL
    width, height = image_size(image)
    return np.broadcast_to(_ZERO_PIXEL, (height, width, 3))


def image_size(image) -> tuple[int, int]:
    """`(width, height)` of `image` from its header (PIL opens files lazily: no pixel is decoded). DICOM files are
    the exception: they go through `load_image`, which decodes them."""
    from PIL import Image, UnidentifiedImageError

    from infimed.processing.image_io import is_dicom, load_image

    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, np.ndarray):
        return int(image.shape[1]), int(image.shape[0])
    source = _check_exists(image)
    if not isinstance(source, (bytes, str)):  # tensors and other in-memory inputs: load_image knows their layouts
        return load_image(source).size
    if isinstance(source, bytes):
        if is_dicom(source):
            return load_image(source).size
        source = io.BytesIO(source)
    elif Path(source).suffix.lower() in (".dcm", ".dicom", ".dic") or _starts_like_dicom(source):
        return load_image(source).size
    try:
        with Image.open(source) as img:  # header only
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageHeaderError(f"unreadable image header ({err})") from err


def _check_exists(image):
    """The image's bytes or path; raises `ImageHeaderError` for a missing file or empty bytes (cheap checks)."""
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            image = image["bytes"]
        elif image.get("path"):
            image = image["path"]
        else:
            raise ImageHeaderError('the image dict has neither "bytes" nor "path"')
    if isinstance(image, (bytes, bytearray, memoryview)):
        if not len(image):
            raise ImageHeaderError("the image bytes are empty")
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise ImageHeaderError(f"file not found: {image}")
        return str(image)
    return image  # PIL images, arrays, tensors: in memory already


def _starts_like_dicom(path: str) -> bool:
    from infimed.processing.image_io import is_dicom

    with open(path, "rb") as f:
        return is_dicom(f.read(132))
