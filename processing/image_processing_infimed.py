"""InfiMed image processor: load (PIL, arrays, tensors, files incl. DICOM) -> square resize -> rescale -> normalise.

Output `pixel_values` is `(num_images, 3, image_size, image_size)`, float32, the images of a batch flattened in order.
The encoder sees one fixed square resolution; the number of visual tokens is chosen later, by the projector's pool.
This file travels with saved checkpoints (remote code): it imports only third-party packages and relative siblings.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .image_io import load_image

__all__ = ["InfiMedImageProcessor"]

# SigLIP / SigLIP2 normalisation (mean = std = 0.5 per channel), the encoders InfiMed supports by default.
SIGLIP_MEAN = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]


def _flatten(images) -> list:
    """Images may come per sample (`[[a, b], [c]]`) or flat; the model consumes them flat, in placeholder order."""
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        flat = []
        for item in images:
            flat.extend(_flatten(item))
        return flat
    return [images]


class InfiMedImageProcessor(BaseImageProcessor):
    r"""
    Args:
        image_size (`int`): side of the square the encoder expects (384 for SigLIP-SO400M-384, 64 for `tiny`).
        image_mean, image_std (`list[float]`): per-channel normalisation.
        resample (`int`): PIL resampling filter for the resize (3 = bicubic, as SigLIP was trained).
        dicom_frame (`int`): frame taken from multi-frame DICOM files.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        image_size: int = 384,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        resample: int = 3,
        dicom_frame: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if image_size <= 0:
            raise ValueError(f"`image_size` must be positive, got {image_size}.")
        self.image_size = int(image_size)
        self.image_mean = list(image_mean if image_mean is not None else SIGLIP_MEAN)
        self.image_std = list(image_std if image_std is not None else SIGLIP_STD)
        self.resample = int(resample)
        self.dicom_frame = int(dicom_frame)

    def to_dict(self):
        output = super().to_dict()
        for key in ("image_size", "image_mean", "image_std", "resample", "dicom_frame"):
            output[key] = getattr(self, key)
        return output

    def preprocess(self, images, return_tensors: str | None = "pt", image_size: int | None = None, **kwargs):
        """Turn one image or a (nested) list of images into `pixel_values` `(I, 3, S, S)`.

        Unknown keyword arguments (other modalities' options forwarded by the processor) are ignored.
        """
        size = int(image_size or self.image_size)
        mean = np.asarray(self.image_mean, dtype=np.float32).reshape(3, 1, 1)
        std = np.asarray(self.image_std, dtype=np.float32).reshape(3, 1, 1)
        arrays = []
        for index, image in enumerate(_flatten(images)):
            pil = load_image(image, frame=self.dicom_frame)  # RGB; raises ImageLoadError naming the file
            if pil.size != (size, size):
                pil = pil.resize((size, size), resample=Image.Resampling(self.resample))
            array = np.asarray(pil, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (3, S, S) in [0, 1]
            arrays.append((array - mean) / std)
        if arrays:
            pixel_values = np.stack(arrays)
        else:
            pixel_values = np.zeros((0, 3, size, size), dtype=np.float32)
        if return_tensors in ("pt", None):
            return BatchFeature({"pixel_values": torch.from_numpy(pixel_values)})
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    def fetch_images(self, images):
        """Decode paths, bytes and `datasets` image dicts with InfiMed's loader (DICOM aware, named errors), keeping
        the nesting; transformers' default loader knows no DICOM and does not name the failing file."""
        if isinstance(images, (list, tuple)):
            return [self.fetch_images(item) for item in images]
        if isinstance(images, (str, bytes, dict)) or hasattr(images, "__fspath__"):
            return load_image(images, frame=self.dicom_frame)
        return images

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)
