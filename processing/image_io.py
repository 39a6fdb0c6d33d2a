"""Load any image a user or a dataset hands us as an RGB ``PIL.Image``: PIL, numpy, torch, paths, bytes, the
``datasets`` Image dict, and DICOM files.

    >>> from infimed.processing.image_io import load_image
    >>> load_image("scan.dcm", frame=3)          # doctest: +SKIP
    <PIL.Image.Image image mode=RGB size=512x512>

DICOM files (found by the ``DICM`` preamble, or the ``.dcm``/``.dicom`` suffix for files without one) are displayed
the way a viewer would show them:

1. the chosen frame is decoded (pydicom; compressed transfer syntaxes need a decoder plugin),
2. the modality LUT maps stored values to physical ones (Rescale Slope/Intercept, e.g. CT Hounsfield units),
3. the VOI LUT, else the first Window Center/Width, maps them to [0, 1]; without either the frame's own min-max
   range is used,
4. MONOCHROME1 ("white is low") is inverted so that every result reads as MONOCHROME2,
5. colour data (RGB, YBR_* converted to RGB by pydicom, PALETTE COLOR through its LUT) is scaled by its bit depth.

Anything that cannot be read raises :class:`ImageLoadError` (a ``ValueError``) naming the file and the reason. That
includes images over the pixel limit (``max_pixels``; default :data:`DEFAULT_MAX_IMAGE_PIXELS`, or the
``INFIMED_MAX_IMAGE_PIXELS`` environment variable), which are refused from their header, before any decoding, and
PIL's own decompression-bomb refusal.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "ImageLoadError", "is_dicom", "load_dicom", "load_image", "max_image_pixels"]

# PIL's own MAX_IMAGE_PIXELS (about 89.5 megapixels, a 1 GB 3-channel image at 4 bytes per pixel): PIL only warns up
# to twice that and errors beyond, so a 144-megapixel file would load at ~1.5 GB. We refuse at PIL's figure itself.
# Medical images stay well below it (a full-field mammogram is about 20 megapixels).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
_MAX_PIXELS_ENV = "INFIMED_MAX_IMAGE_PIXELS"

_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
# A DICOM Part 10 file starts with a 128-byte preamble followed by the magic "DICM".
_DICM_OFFSET = 128

# Transfer syntax UID -> pip packages that add a decoder (pydicom itself decodes the uncompressed, deflated and RLE
# syntaxes). Pillow only covers 8-bit JPEG baseline and JPEG 2000.
_PYLIBJPEG = "`pip install pylibjpeg pylibjpeg-libjpeg`"
_OPENJPEG = "`pip install pylibjpeg pylibjpeg-openjpeg`"
_GDCM = "`pip install python-gdcm`"
_DECODER_HINTS = {
    "1.2.840.10008.1.2.4.50": f"{_PYLIBJPEG}, `pip install pillow` or {_GDCM}",
    "1.2.840.10008.1.2.4.51": f"{_PYLIBJPEG} or {_GDCM} (pillow cannot decode 12-bit JPEG)",
    "1.2.840.10008.1.2.4.57": f"{_PYLIBJPEG} or {_GDCM}",
    "1.2.840.10008.1.2.4.70": f"{_PYLIBJPEG} or {_GDCM}",
    "1.2.840.10008.1.2.4.80": f"{_PYLIBJPEG}, `pip install pyjpegls` or {_GDCM}",
    "1.2.840.10008.1.2.4.81": f"{_PYLIBJPEG}, `pip install pyjpegls` or {_GDCM}",
    "1.2.840.10008.1.2.4.90": f"{_OPENJPEG}, `pip install pillow` (built with OpenJPEG) or {_GDCM}",
    "1.2.840.10008.1.2.4.91": f"{_OPENJPEG}, `pip install pillow` (built with OpenJPEG) or {_GDCM}",
    "1.2.840.10008.1.2.4.201": _OPENJPEG,
    "1.2.840.10008.1.2.4.202": _OPENJPEG,
    "1.2.840.10008.1.2.4.203": _OPENJPEG,
}


class ImageLoadError(ValueError):
    """An image could not be loaded. ``source`` names the file or sample, ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"Cannot load image {source}: {reason}")


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$INFIMED_MAX_IMAGE_PIXELS``, else the default."""
    if max_pixels is not None:
        origin, raw = "`max_pixels`", max_pixels
    else:
        origin, raw = f"${_MAX_PIXELS_ENV}", os.environ.get(_MAX_PIXELS_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(raw) if not isinstance(raw, bool) else 0
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        raise ValueError(f"{origin} must be a positive number of pixels, got {raw!r}.")
    return value


def _check_pixels(width: int, height: int, limit: int, source: str) -> None:
    if width * height > limit:
        raise ImageLoadError(
            source,
            f"{width}x{height} = {width * height:,} pixels is over the limit of {limit:,} (a decompression bomb, or "
            f"an image too large to use as is). Downscale it, or raise the limit with `max_pixels` / "
            f"${_MAX_PIXELS_ENV} if it is genuine.",
        )


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` (at least the first 132 bytes of a file) starts like a DICOM Part 10 file."""
    return len(data) >= _DICM_OFFSET + 4 and data[_DICM_OFFSET : _DICM_OFFSET + 4] == b"DICM"


def load_image(obj: Any, *, frame: int = 0, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Return ``obj`` as an RGB ``PIL.Image.Image``.

    Args:
        obj: a ``PIL.Image``; a numpy array or torch tensor shaped (H, W), (H, W, C), (C, H, W) with C in {1, 3, 4},
            or (N, H, W, C) / (N, C, H, W) frames (uint8 as is, float in [0, 1] scaled by 255, other ranges and
            wider integers min-max scaled); a ``str``/``Path`` to a PNG/JPEG/... or DICOM file; encoded ``bytes``; or
            a ``datasets`` Image dict ``{"bytes": ..., "path": ...}``.
        frame: frame of a multi-frame DICOM/TIFF/GIF or the first axis of a 4-D array.
        name: how errors refer to the input (e.g. a dataset sample id); defaults to the path or the type.
        max_pixels: refuse encoded images (files, bytes, DICOM) with more pixels than this, read from the header
            before decoding; default :func:`max_image_pixels`. In-memory images and arrays are not checked.

    Raises:
        ImageLoadError: the input is missing, empty, truncated, not an image, over the pixel limit, or a DICOM file
            that cannot be decoded.
    """
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        raise ValueError(f"`frame` must be a non-negative int, got {frame!r}.")
    limit = max_image_pixels(max_pixels)
    if isinstance(obj, Image.Image):
        return _pil_to_rgb(obj, frame, name or "<PIL.Image>")
    if isinstance(obj, (str, os.PathLike)):
        return _load_path(Path(obj), frame, name, limit)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _load_bytes(bytes(obj), frame, name or "<bytes>", limit)
    if isinstance(obj, dict):
        data, path = obj.get("bytes"), obj.get("path")
        if data is not None:
            return _load_bytes(bytes(data), frame, name or (str(path) if path else "<datasets Image bytes>"), limit)
        if path:
            return _load_path(Path(path), frame, name, limit)
        raise ImageLoadError(name or "<dict>", 'the dict has neither "bytes" nor "path" (expected a datasets Image).')
    if isinstance(obj, np.ndarray) or _is_torch_tensor(obj):
        return _array_to_rgb(obj, frame, name or f"<{type(obj).__name__}>")
    raise TypeError(
        f"`load_image` got a {type(obj).__name__}; pass a PIL image, numpy array, torch tensor, path, bytes, "
        'or a datasets Image dict {"bytes": ..., "path": ...}.'
    )


def load_dicom(
    obj: str | os.PathLike | bytes, frame: int = 0, *, name: str | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """Decode one frame of a DICOM file for display (frames over ``max_pixels`` are refused before decoding).

    Returns:
        float32 array in [0, 1]: (H, W) for monochrome data (MONOCHROME1 already inverted), (H, W, 3) for colour.
    """
    source = name or (str(obj) if not isinstance(obj, (bytes, bytearray)) else "<DICOM bytes>")
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError as err:  # pragma: no cover - pydicom is a dependency
        raise ImageLoadError(source, "reading DICOM needs pydicom: `pip install pydicom`.") from err

    fp = io.BytesIO(obj) if isinstance(obj, (bytes, bytearray)) else obj
    try:
        # force=True reads files without a preamble (old ACR-NEMA style) that we recognised by their suffix.
        ds = pydicom.dcmread(fp, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as err:
        raise ImageLoadError(source, f"not a readable DICOM file ({type(err).__name__}: {err}).") from err
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageLoadError(source, "the DICOM file has no pixel data (e.g. a structured report or RT plan).")

    _check_pixels(int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), max_image_pixels(max_pixels), source)
    num_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frame >= num_frames:
        raise ImageLoadError(
            source, f"frame {frame} requested but the file has {num_frames} frame(s) (valid: 0..{num_frames - 1})."
        )
    arr = _decode_dicom_pixels(ds, frame, source)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        lut_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return np.clip(apply_color_lut(arr, ds).astype(np.float32) / (2**lut_bits - 1), 0.0, 1.0)
    if arr.ndim == 3:  # (H, W, 3): RGB, or YBR already converted to RGB by pydicom
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
        return np.clip(arr.astype(np.float32) / (2**bits - 1), 0.0, 1.0)
    if not photometric.startswith("MONOCHROME"):
        raise ImageLoadError(source, f"unsupported Photometric Interpretation {photometric!r} for a 2-D frame.")
    out = _window(_modality(arr, ds), ds, source)
    if photometric == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------------------- DICOM


def _decode_dicom_pixels(ds, frame: int, source: str) -> np.ndarray:
    from pydicom.pixels import pixel_array

    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        # index= decodes only the wanted frame; raw=False converts YBR_* to RGB.
        arr = pixel_array(ds, index=frame)
    except Exception as err:  # pydicom raises RuntimeError/ValueError/NotImplementedError/AttributeError here
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        detail = (lines[0].rstrip(":") + (f" ({'; '.join(lines[1:])})" if lines[1:] else "")) if lines else repr(err)
        if tsyntax is not None and tsyntax.is_compressed:
            hint = _DECODER_HINTS.get(str(tsyntax), "a pydicom pixel-data plugin for it (pylibjpeg or gdcm)")
            raise ImageLoadError(
                source,
                f"cannot decode pixel data compressed with transfer syntax '{tsyntax.name}' ({tsyntax}): {detail}. "
                f"Install a decoder: {hint}.",
            ) from err
        reason = f"cannot decode the DICOM pixel data (truncated or inconsistent?): {detail}"
        raise ImageLoadError(source, reason) from err
    if arr.ndim == 3 and arr.shape[-1] != 3:  # (N, H, W) although we asked for one frame: take it
        arr = arr[0]
    return arr


def _modality(arr: np.ndarray, ds) -> np.ndarray:
    """Stored values -> physical values: Modality LUT Sequence or Rescale Slope/Intercept."""
    from pydicom.pixels import apply_modality_lut

    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)


def _first(value) -> float:
    """First entry of a possibly multi-valued DS/IS element (several windows: the first is the default one)."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        return float(value[0])
    return float(value)


def _window(x: np.ndarray, ds, source: str) -> np.ndarray:
    """Physical values (H, W) -> [0, 1] by the VOI LUT, else the first window, else the frame's min-max range."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        from pydicom.pixels import apply_voi

        item = ds.VOILUTSequence[0]
        out_bits = int(item.LUTDescriptor[2])
        y = apply_voi(x.astype(np.int64) if np.all(x == np.round(x)) else x, ds, index=0)
        return np.clip(np.asarray(y, np.float64) / (2**out_bits - 1), 0.0, 1.0)
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if width <= 0 or (function == "LINEAR" and width < 1):
            raise ImageLoadError(source, f"invalid Window Width {width} (must be >= 1 for LINEAR, > 0 otherwise).")
        # DICOM PS3.3 C.11.2.1.2: the LINEAR function is offset by half a step; LINEAR_EXACT is not.
        if function == "SIGMOID":
            return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
        if function == "LINEAR_EXACT":
            return np.clip((x - center) / width + 0.5, 0.0, 1.0)
        return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)


# ----------------------------------------------------------------------------------------------- files and bytes


def _load_path(path: Path, frame: int, name: str | None, limit: int) -> Image.Image:
    source = name or str(path)
    if not path.exists():
        raise ImageLoadError(source, "file not found.")
    if path.is_dir():
        raise ImageLoadError(source, "is a directory, not an image file.")
    try:
        with open(path, "rb") as f:
            head = f.read(_DICM_OFFSET + 4)
    except OSError as err:
        raise ImageLoadError(source, f"cannot read the file ({err}).") from err
    if not head:
        raise ImageLoadError(source, "the file is empty (0 bytes).")
    if is_dicom(head) or path.suffix.lower() in _DICOM_SUFFIXES:
        return _dicom_to_rgb(load_dicom(path, frame, name=source, max_pixels=limit))
    return _open_with_pil(path, frame, source, limit)


def _load_bytes(data: bytes, frame: int, source: str, limit: int) -> Image.Image:
    if not data:
        raise ImageLoadError(source, "the image bytes are empty (0 bytes).")
    if is_dicom(data):
        return _dicom_to_rgb(load_dicom(data, frame, name=source, max_pixels=limit))
    return _open_with_pil(io.BytesIO(data), frame, source, limit)


def _open_with_pil(fp, frame: int, source: str, limit: int) -> Image.Image:
    try:
        with Image.open(fp) as img:  # reads the header only: the size is known before any pixel is decoded
            _check_pixels(img.width, img.height, limit, source)
            return _pil_to_rgb(img, frame, source)
    except Image.DecompressionBombError as err:  # PIL's own refusal (over twice its MAX_IMAGE_PIXELS)
        raise ImageLoadError(
            source, f"refused by PIL as a decompression bomb ({err}). Downscale the image if it is genuine."
        ) from err
    except UnidentifiedImageError as err:
        raise ImageLoadError(
            source, "not a recognised image format (expected PNG, JPEG, TIFF, BMP, GIF, WebP, ... or DICOM)."
        ) from err
    except ImageLoadError:
        raise
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports truncated/corrupt data as OSError/SyntaxError
        raise ImageLoadError(source, f"truncated or corrupt image data ({err}).") from err


def _pil_to_rgb(img: Image.Image, frame: int, source: str) -> Image.Image:
    num_frames = int(getattr(img, "n_frames", 1))
    if frame >= num_frames:
        raise ImageLoadError(source, f"frame {frame} requested but the image has {num_frames} frame(s).")
    position = img.tell() if num_frames > 1 else 0
    if frame != position:
        img.seek(frame)
    try:
        img.load()  # decode now so truncated files fail here, not later inside a collator
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            # 16-bit/float greyscale: PIL's convert("RGB") would clip at 255, so rescale like an array.
            return _array_to_rgb(np.asarray(img), 0, source)
        return img.convert("RGB") if img.mode != "RGB" else img.copy()
    finally:
        if frame != position:
            img.seek(position)  # leave a caller's multi-frame image where it was


# ---------------------------------------------------------------------------------------------------- arrays


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _dicom_to_rgb(arr: np.ndarray) -> Image.Image:
    u8 = np.round(arr * 255.0).astype(np.uint8)
    return Image.fromarray(u8 if u8.ndim == 3 else np.stack([u8] * 3, axis=-1), mode="RGB")


def _array_to_rgb(arr: Any, frame: int, source: str) -> Image.Image:
    if _is_torch_tensor(arr):
        arr = arr.detach().cpu()
        arr = (arr.float() if arr.is_floating_point() else arr).numpy()
    arr = np.asarray(arr)
    if arr.ndim == 4:  # (N, H, W, C) or (N, C, H, W)
        if frame >= arr.shape[0]:
            raise ImageLoadError(source, f"frame {frame} requested but the array has {arr.shape[0]} frame(s).")
        arr = arr[frame]
    elif frame:
        raise ImageLoadError(source, f"frame {frame} requested but a {arr.ndim}-D array holds one image.")
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)) or 0 in arr.shape:
        raise ImageLoadError(
            source, f"array of shape {tuple(arr.shape)} is not an image; expected (H, W), (H, W, C) or (C, H, W)."
        )
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]  # drop alpha
    u8 = _to_uint8(arr, source)
    return Image.fromarray(u8 if u8.ndim == 3 else np.stack([u8] * 3, axis=-1), mode="RGB")


def _to_uint8(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageLoadError(source, f"unsupported array dtype {arr.dtype}.")
    x = arr.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ImageLoadError(source, "the array holds NaN or infinite values.")
    lo, hi = float(x.min()), float(x.max())
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.round(x * 255.0).astype(np.uint8)  # the usual [0, 1] float convention
    if np.issubdtype(arr.dtype, np.integer) and lo >= 0 and hi <= 255:
        return x.astype(np.uint8)  # 8-bit values in a wider container (e.g. int64 from Python lists)
    # Wider integers (often 10-12-bit data in a 16-bit container) and other float ranges: min-max, since a fixed
    # dtype-range scale would render 12-bit data almost black.
    if hi <= lo:
        return np.zeros(x.shape, np.uint8)
    return np.round((x - lo) / (hi - lo) * 255.0).astype(np.uint8)
