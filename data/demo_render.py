"""Render synthetic chest-radiograph-like images with known findings for the demo dataset.

A 64 x 64 frontal view: air outside the body, soft tissue, two dark lung fields with faint rib shadows, a bright
mediastinum and heart, noise; lesions are round blobs inside the lungs, bright ("opacity") or dark, of three size
classes, in the upper or lower zone of either lung. Sides follow the radiological convention: the patient's LEFT lung
is on the image's RIGHT (x > 32), as on a posteroanterior radiograph.

The signal is deliberately strong (lesion contrast 0.30-0.70 on a [0, 1] scale against noise of 0.02, radii
3-7 px, i.e. most of one 8 x 8 vision patch or more) so that a tiny vision-language model learns it in minutes.

    >>> rng = np.random.default_rng(0)
    >>> anatomy = sample_anatomy(rng)
    >>> lesions = sample_lesions(rng, anatomy, count=1, sides=["left"])
    >>> render_radiograph(rng, lesions, anatomy).shape   # float32 in [0, 1]
    (64, 64)
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "IMAGE_SIZE",
    "SIDES",
    "SIZE_CLASSES",
    "SIZE_RADII",
    "ZONES",
    "APPEARANCES",
    "Anatomy",
    "Lesion",
    "sample_anatomy",
    "sample_lesions",
    "render_radiograph",
    "to_png_bytes",
    "describe_findings",
    "write_demo_dicom",
]

# 64 px matches the tiny preset's vision encoder (patch 8 -> 8 x 8 patches): no resize between data and model.
IMAGE_SIZE = 64
SIDES = ("left", "right")  # the patient's side
ZONES = ("upper", "lower")
SIZE_CLASSES = ("small", "medium", "large")
# Radius ranges in pixels with gaps between classes so the size class is unambiguous in the image.
SIZE_RADII = {"small": (3.0, 3.6), "medium": (4.4, 5.2), "large": (6.0, 7.0)}
APPEARANCES = ("bright", "dark")
_WORDS = ("no", "one", "two", "three", "four")
# Minimum gap (px) between two lesion rims: keeps lesions countable.
_LESION_GAP = 1.5
# Distance (px) of a lesion centre from the lung's mid line, so its zone is unambiguous.
_ZONE_MARGIN = 2.0
# Bright lesions are 4x as common as dark ones, as opacities are in real radiographs (and dark blobs on dark lungs
# are the hardest case for a tiny model).
_DARK_SHARE = 0.2
# Heart shadow: centre and semi-axes (px), left of the patient's midline (image right of centre).
_HEART_X, _HEART_Y, _HEART_A, _HEART_B = IMAGE_SIZE / 2 + 4, 44.0, 8.0, 7.0


@dataclass(frozen=True)
class Lesion:
    """One finding. ``x``/``y`` are image pixel coordinates of the centre; ``contrast`` is the intensity change."""

    side: str
    zone: str
    size: str
    appearance: str
    x: float
    y: float
    radius: float
    contrast: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Anatomy:
    """Per-image anatomy jitter: lung centres/semi-axes (px), tissue brightness, noise level."""

    lung_dx: float  # half distance between lung centres
    lung_cy: float
    lung_a: float  # horizontal semi-axis
    lung_b: float  # vertical semi-axis
    lung_level: float
    tissue_level: float
    rib_phase: float
    noise: float

    def lung_center(self, side: str) -> tuple[float, float]:
        # Patient's left is displayed on the image's right.
        cx = IMAGE_SIZE / 2 + (self.lung_dx if side == "left" else -self.lung_dx)
        return cx, self.lung_cy


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    # Jitter ranges are small next to the lesion signal: ~1-2 px of geometry, ~0.03 of brightness.
    return Anatomy(
        lung_dx=float(rng.uniform(13.0, 14.5)),
        lung_cy=float(rng.uniform(28.0, 31.0)),
        lung_a=float(rng.uniform(10.0, 11.0)),
        lung_b=float(rng.uniform(18.5, 20.0)),
        lung_level=float(rng.uniform(0.30, 0.36)),
        tissue_level=float(rng.uniform(0.55, 0.62)),
        rib_phase=float(rng.uniform(0.0, 2 * np.pi)),
        noise=float(rng.uniform(0.015, 0.025)),
    )


def _place(rng, anatomy: Anatomy, side: str, zone: str, radius: float, placed: list[Lesion]) -> tuple[float, float]:
    """A centre inside the lung (whole disc inside the ellipse), in the zone, away from other lesions; or raise."""
    cx, cy = anatomy.lung_center(side)
    ax, by = anatomy.lung_a - radius, anatomy.lung_b - radius
    y_lo, y_hi = (cy - by, cy - _ZONE_MARGIN) if zone == "upper" else (cy + _ZONE_MARGIN, cy + by)
    for _ in range(64):
        x, y = float(rng.uniform(cx - ax, cx + ax)), float(rng.uniform(y_lo, y_hi))
        if ((x - cx) / ax) ** 2 + ((y - cy) / by) ** 2 > 1.0:
            continue
        if ((x - _HEART_X) / (_HEART_A + radius)) ** 2 + ((y - _HEART_Y) / (_HEART_B + radius)) ** 2 <= 1.0:
            continue  # the heart shadow hides the lower inner part of the left lung
        if all(np.hypot(x - o.x, y - o.y) >= radius + o.radius + _LESION_GAP for o in placed):
            return x, y
    raise _PlacementError


class _PlacementError(Exception):
    pass


def sample_lesions(
    rng: np.random.Generator,
    anatomy: Anatomy,
    *,
    count: int,
    sides: list[str | None] | None = None,
    zones: list[str | None] | None = None,
    sizes: list[str | None] | None = None,
    appearances: list[str | None] | None = None,
) -> list[Lesion]:
    """``count`` non-overlapping lesions; per-lesion attributes given in the lists are kept, ``None`` ones drawn.

    Unconstrained sizes of multi-lesion images are drawn from small/medium so that three lesions fit in one lung.
    """

    def pick(values, i):
        return values[i] if values is not None and i < len(values) else None

    for _ in range(50):
        lesions: list[Lesion] = []
        try:
            for i in range(count):
                side = pick(sides, i) or str(rng.choice(SIDES))
                zone = pick(zones, i) or str(rng.choice(ZONES))
                size = pick(sizes, i) or str(rng.choice(SIZE_CLASSES if count == 1 else SIZE_CLASSES[:2]))
                appearance = pick(appearances, i) or ("dark" if rng.random() < _DARK_SHARE else "bright")
                radius = float(rng.uniform(*SIZE_RADII[size]))
                x, y = _place(rng, anatomy, side, zone, radius, lesions)
                # Dark blobs get less amplitude room (lungs are already dark), so their range is shifted up.
                contrast = float(rng.uniform(0.60, 0.70) if appearance == "bright" else rng.uniform(0.30, 0.34))
                lesions.append(Lesion(side, zone, size, appearance, x, y, radius, contrast))
            return lesions
        except _PlacementError:
            continue
    raise ValueError(f"could not place {count} lesions with sides={sides}, zones={zones}, sizes={sizes}.")


def render_radiograph(rng: np.random.Generator, lesions: list[Lesion], anatomy: Anatomy) -> np.ndarray:
    """float32 (64, 64) image in [0, 1] of ``anatomy`` with ``lesions``."""
    n = IMAGE_SIZE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    # Body: soft tissue ellipse on air, brighter towards the abdomen.
    body = _soft_mask(((xx - n / 2) / 30.0) ** 2 + ((yy - n / 2 - 4) / 34.0) ** 2, 0.05)
    img = 0.06 + body * (anatomy.tissue_level - 0.06 + 0.08 * (yy / n))
    # Lungs with rib shadows (curved bands, brighter towards the lateral edges).
    for side in SIDES:
        cx, cy = anatomy.lung_center(side)
        r2 = ((xx - cx) / anatomy.lung_a) ** 2 + ((yy - cy) / anatomy.lung_b) ** 2
        lung = _soft_mask(r2, 0.12)
        ribs = 0.035 * np.sin(2 * np.pi * (yy + 0.25 * np.abs(xx - cx)) / 7.0 + anatomy.rib_phase)
        lung_val = anatomy.lung_level + 0.04 * (yy - cy) / anatomy.lung_b + ribs
        img = img * (1 - lung) + lung_val * lung
    # Mediastinum/spine band and the heart bulging towards the patient's left (image right).
    img += 0.18 * np.exp(-(((xx - n / 2) / 3.5) ** 2)) * body
    heart = _soft_mask(((xx - _HEART_X) / _HEART_A) ** 2 + ((yy - _HEART_Y) / _HEART_B) ** 2, 0.2)
    img = np.maximum(img, heart * (anatomy.tissue_level + 0.1))
    for lesion in lesions:
        d = np.hypot(xx - lesion.x, yy - lesion.y)
        blob = 0.5 * (1.0 - np.tanh((d - lesion.radius) / 1.2))  # soft-edged disc (a logistic rim of 0.6 px)
        img += (lesion.contrast if lesion.appearance == "bright" else -lesion.contrast) * blob
    img += rng.normal(0.0, anatomy.noise, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _soft_mask(r2: np.ndarray, softness: float) -> np.ndarray:
    """1 inside an ellipse (r2 < 1), 0 outside, with a smooth rim of relative width ``softness``."""
    return np.clip((1.0 - r2) / softness, 0.0, 1.0)


def to_png_bytes(image: np.ndarray) -> bytes:
    """float (H, W) in [0, 1] -> RGB PNG bytes (RGB so every image processor takes it as is)."""
    from PIL import Image

    u8 = np.round(image * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([u8] * 3, axis=-1), mode="RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def describe_findings(lesions: list[Lesion]) -> str:
    """Report-style text, e.g. "Frontal chest radiograph. Two lesions: a small bright lesion in the right lower
    zone; a medium dark lesion in the left upper zone."."""
    head = "Frontal chest radiograph."
    if not lesions:
        return f"{head} The lungs are clear. No focal lesion."
    parts = [f"{les.size} {les.appearance} lesion in the {les.side} {les.zone} zone" for les in lesions]
    if len(lesions) == 1:
        return f"{head} One {parts[0]}."
    return f"{head} {_WORDS[len(lesions)].capitalize()} lesions: " + "; ".join(f"a {p}" for p in parts) + "."


def write_demo_dicom(path, seed: int = 0) -> dict:
    """Write one demo radiograph as an uncompressed DICOM file and return what it shows.

    The file is MONOCHROME2, 12 bits stored in 16, with Rescale Slope 1 / Intercept -1024 and a window
    (center 1024, width 4096) that maps the stored values back to the rendered [0, 1] image exactly, so
    ``load_image(path)`` equals the PNG rendering to within one grey level.

    Returns:
        ``{"path", "findings", "question", "answer", "png"}``: a yes/no question about the image and its answer,
        the lesions as dicts, and the same image as PNG bytes.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))  # a stream of its own, not a dataset sample
    anatomy = sample_anatomy(rng)
    side, asked = str(rng.choice(SIDES)), str(rng.choice(SIDES))
    lesions = sample_lesions(rng, anatomy, count=1, sides=[side], sizes=["large"], appearances=["bright"])
    image = render_radiograph(rng, lesions, anatomy)
    stored = np.round(image * 4095.0).astype(np.uint16)  # (64, 64), 12-bit values

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["infimed-demo", str(seed)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["infimed-demo-study", str(seed)])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["infimed-demo-series", str(seed)])
    ds.Modality = "CR"
    ds.PatientName = "Demo^Synthetic"
    ds.PatientID = f"DEMO{seed:04d}"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "US"
    # LINEAR window: y = (x - (c - 0.5)) / (w - 1) + 0.5 with x = stored - 1024 gives stored / 4095.
    ds.WindowCenter, ds.WindowWidth = 1024, 4096
    ds.PixelData = stored.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return {
        "path": str(path),
        "findings": [les.to_dict() for les in lesions],
        "question": f"Is there a lesion in the {asked} lung?",
        "answer": "yes" if asked == side else "no",
        "png": to_png_bytes(image),
    }
