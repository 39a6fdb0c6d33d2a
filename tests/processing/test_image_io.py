"""`infimed.processing.image_io`: DICOM display pipeline on pydicom's sample files, every input type, named errors."""

import importlib.util
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pydicom = pytest.importorskip("pydicom")

from infimed.processing.image_io import ImageLoadError, is_dicom, load_dicom, load_image  # noqa: E402

# The sample files shipped inside the pydicom wheel; pydicom.data.get_testdata_file would try to download the
# others, so tests only use files present in this folder.
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def sample(name: str) -> Path:
    path = TEST_FILES / name
    if not path.exists():
        pytest.skip(f"pydicom sample {name} not shipped with this pydicom version")
    return path


def linear_window(x, center, width):
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR VOI function, written out independently of the module."""
    lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    if x <= lo:
        return 0.0
    if x > hi:
        return 1.0
    return (x - (center - 0.5)) / (width - 1) + 0.5


def save(ds, path) -> Path:
    ds.save_as(str(path))
    return Path(path)


def make_dicom(frames: np.ndarray, photometric="MONOCHROME2", **tags):
    """An uncompressed 16-bit DICOM dataset holding ``frames`` (N, H, W) uint16."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = frames.shape[1:]
    if frames.shape[0] > 1:
        ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = frames.astype(np.uint16).tobytes()
    return ds


# ------------------------------------------------------------------------------------------------ DICOM display


def test_window_center_width_matches_hand_computed_values():
    # MR_small: int16, Window Center 600 / Width 1600, no rescale.
    path = sample("MR_small.dcm")
    raw = pydicom.dcmread(path).pixel_array.astype(float)
    out = load_dicom(path)
    assert out.shape == raw.shape and out.dtype == np.float32
    for r, c in [(0, 0), (10, 20), (32, 32), (40, 50), (63, 63)]:
        assert out[r, c] == pytest.approx(linear_window(raw[r, c], 600, 1600), abs=1e-6)


def test_ct_rescale_then_first_of_several_windows(tmp_path):
    # CT_small: Rescale Slope 1 / Intercept -1024, no window: add two windows, the first (a soft-tissue window in
    # Hounsfield units) must be applied to the rescaled values.
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    raw = ds.pixel_array.astype(float)
    ds.WindowCenter, ds.WindowWidth = [40, 300], [400, 1500]
    out = load_dicom(save(ds, tmp_path / "ct.dcm"))
    hu = raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    picks = [np.unravel_index(i, hu.shape) for i in (0, np.argmin(np.abs(hu - 40)), np.argmax(hu), 5000, 9000)]
    for rc in picks:
        assert out[rc] == pytest.approx(linear_window(hu[rc], 40, 400), abs=1e-6)
    assert 0.0 < out.mean() < 1.0


def test_no_window_falls_back_to_min_max_of_rescaled_pixels():
    path = sample("CT_small.dcm")  # no Window Center/Width, no VOI LUT
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(load_dicom(path), (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)


def test_voi_lut_sequence_is_applied(tmp_path):
    from pydicom.dataset import Dataset

    frames = np.array([[[0, 1], [2, 3]]], dtype=np.uint16)
    ds = make_dicom(frames, WindowCenter=1000, WindowWidth=10)  # the LUT takes precedence over the window
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 8]  # 4 entries, first input value 0, 8-bit output
    lut.add_new(0x00283006, "US", [0, 51, 102, 255])  # LUT Data
    ds.VOILUTSequence = [lut]
    out = load_dicom(save(ds, tmp_path / "voi.dcm"))
    np.testing.assert_allclose(out, np.array([[0, 51], [102, 255]]) / 255.0, atol=1e-6)


def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path):
    ds = pydicom.dcmread(sample("MR_small.dcm"))
    mono2 = load_dicom(save(ds, tmp_path / "m2.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    mono1 = load_dicom(save(ds, tmp_path / "m1.dcm"))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert np.abs(mono1 - mono2).max() > 0.5  # the image has contrast, so the check above is not vacuous


def test_multi_frame_selects_the_frame_and_names_the_frame_count(tmp_path):
    # Three frames whose brightness ramps differ: each frame windowed by the same window gives its own image.
    base = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16)
    frames = np.stack([base, base * 4, base[::-1] * 16])
    path = save(make_dicom(frames, WindowCenter=2048, WindowWidth=4096), tmp_path / "multi.dcm")
    for k in range(3):
        expected = np.vectorize(lambda v: linear_window(v, 2048, 4096))(frames[k].astype(float))
        np.testing.assert_allclose(load_dicom(path, frame=k), expected, atol=1e-6)
        assert np.asarray(load_image(path, frame=k)).shape == (16, 16, 3)
    with pytest.raises(ImageLoadError, match=r"frame 3 .* 3 frame"):
        load_image(path, frame=3)


def test_multi_frame_sample_file():
    path = sample("rtdose.dcm")  # 15 frames, 32-bit, uncompressed
    frames = [load_dicom(path, frame=k) for k in (0, 7, 14)]
    assert all(f.shape == (10, 10) for f in frames)
    assert not np.allclose(frames[0], frames[1])
    with pytest.raises(ImageLoadError, match="15 frame"):
        load_dicom(path, frame=15)


def test_16_bit_values_above_255_are_windowed_not_clipped(tmp_path):
    values = np.array([[[0, 1000, 2000], [3000, 4000, 4095]]], dtype=np.uint16)
    ds = make_dicom(values, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=1024, WindowWidth=4096)
    out = load_dicom(save(ds, tmp_path / "u16.dcm"))
    np.testing.assert_allclose(out, values[0] / 4095.0, atol=1e-6)
    img = np.asarray(load_image(tmp_path / "u16.dcm"))[..., 0]
    np.testing.assert_array_equal(img, np.round(values[0] / 4095.0 * 255))


def test_ybr_is_converted_to_rgb():
    rgb = load_dicom(sample("SC_rgb_rle.dcm"))
    ybr = load_dicom(sample("SC_ybr_full_422_uncompressed.dcm"))  # same picture stored as YCbCr
    assert ybr.shape == rgb.shape == (100, 100, 3)
    assert np.abs(ybr - rgb).max() < 0.05  # chroma subsampling and rounding only
    assert load_image(sample("SC_ybr_full_422_uncompressed.dcm")).mode == "RGB"


def test_dicom_found_by_preamble_not_extension(tmp_path):
    path = sample("CT_small.dcm")
    renamed = tmp_path / "scan.bin"
    shutil.copy(path, renamed)
    assert is_dicom(renamed.read_bytes()[:132])
    expected = np.asarray(load_image(path))
    np.testing.assert_array_equal(np.asarray(load_image(renamed)), expected)
    np.testing.assert_array_equal(np.asarray(load_image(path.read_bytes())), expected)
    np.testing.assert_array_equal(np.asarray(load_image({"bytes": path.read_bytes(), "path": None})), expected)


# -------------------------------------------------------------------------------------------------- DICOM errors


def _has_jpegls_decoder() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("libjpeg", "gdcm", "jpeg_ls"))


@pytest.mark.skipif(_has_jpegls_decoder(), reason="a JPEG-LS decoder is installed here")
def test_missing_decoder_names_transfer_syntax_and_package():
    path = sample("JPEGLSNearLossless_08.dcm")
    with pytest.raises(ImageLoadError) as err:
        load_image(path)
    message = str(err.value)
    assert str(path) in message and "JPEG-LS" in message and "1.2.840.10008.1.2.4.81" in message
    assert "pylibjpeg-libjpeg" in message and "gdcm" in message


def test_truncated_dicom_pixel_data():
    path = sample("MR_truncated.dcm")
    with pytest.raises(ImageLoadError, match="MR_truncated.dcm.*truncated"):
        load_image(path)


def test_dicom_cut_in_the_header(tmp_path):
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(sample("CT_small.dcm").read_bytes()[:700])
    with pytest.raises(ImageLoadError, match="cut.dcm"):
        load_image(cut)


def test_dicom_without_pixel_data():
    with pytest.raises(ImageLoadError, match="no pixel data"):
        load_image(sample("rtplan.dcm"))


# ------------------------------------------------------------------------------------------ other files, errors


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_file_errors_are_named(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))[:300])
    cases = [
        (tmp_path / "missing.png", "missing.png: file not found"),
        (empty, r"empty.png: the file is empty \(0 bytes\)"),
        (text, "notes.png: not a recognised image format"),
        (truncated, "cut.png: truncated or corrupt"),
        (tmp_path, "is a directory"),
    ]
    for path, pattern in cases:
        with pytest.raises(ImageLoadError, match=pattern):
            load_image(path)
    with pytest.raises(ImageLoadError, match="sample-7: the image bytes are empty"):
        load_image(b"", name="sample-7")
    assert issubclass(ImageLoadError, ValueError)


def test_png_file_bytes_and_datasets_dict_agree(tmp_path):
    array = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    data = _png_bytes(array)
    (tmp_path / "x.png").write_bytes(data)
    for obj in (tmp_path / "x.png", str(tmp_path / "x.png"), data, {"bytes": data, "path": "x.png"},
                {"bytes": None, "path": str(tmp_path / "x.png")}, Image.open(io.BytesIO(data))):
        img = load_image(obj)
        assert img.mode == "RGB" and img.size == (30, 20)
        np.testing.assert_array_equal(np.asarray(img), array)
    with pytest.raises(ImageLoadError, match="neither"):
        load_image({"bytes": None, "path": None})


def test_16_bit_png_is_rescaled_not_saturated(tmp_path):
    ramp = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)  # 12-bit data in a 16-bit PNG
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    grey = np.asarray(load_image(tmp_path / "ramp16.png"))[..., 0]
    assert grey.min() == 0 and grey.max() == 255 and len(np.unique(grey)) > 200


# ------------------------------------------------------------------------------------------------ arrays, tensors


def test_array_layouts_and_dtypes():
    rng = np.random.default_rng(2)
    hwc = rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(hwc)), hwc)
    np.testing.assert_array_equal(np.asarray(load_image(np.moveaxis(hwc, -1, 0))), hwc)  # CHW
    np.testing.assert_array_equal(np.asarray(load_image(hwc[..., 0]))[..., 1], hwc[..., 0])  # HW -> grey RGB
    rgba = np.concatenate([hwc, np.full((8, 10, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(np.asarray(load_image(rgba)), hwc)
    np.testing.assert_array_equal(np.asarray(load_image(hwc / 255.0)), hwc)  # float in [0, 1]
    u16 = (hwc[..., 0].astype(np.uint16) * 16) + 300  # values beyond 8 bits: min-max
    out = np.asarray(load_image(u16))[..., 0]
    assert out.min() == 0 and out.max() == 255
    np.testing.assert_array_equal(np.argsort(out, axis=None, kind="stable"), np.argsort(u16, axis=None, kind="stable"))


def test_torch_tensors_match_numpy():
    rng = np.random.default_rng(3)
    hwc = rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)
    chw_float = torch.from_numpy(np.moveaxis(hwc, -1, 0).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(np.asarray(load_image(chw_float)), hwc)
    np.testing.assert_array_equal(np.asarray(load_image(chw_float.to(torch.bfloat16))).shape, hwc.shape)
    np.testing.assert_array_equal(np.asarray(load_image(torch.from_numpy(hwc))), hwc)


def test_frames_of_arrays_and_bad_inputs():
    stack = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 30)])  # (N, H, W, C)
    assert np.asarray(load_image(stack, frame=2))[0, 0, 0] == 30
    with pytest.raises(ImageLoadError, match="3 frame"):
        load_image(stack, frame=3)
    with pytest.raises(ImageLoadError, match="one image"):
        load_image(stack[0], frame=1)
    with pytest.raises(ImageLoadError, match=r"shape \(5,\)"):
        load_image(np.zeros(5))
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(np.full((4, 4), np.nan))
    with pytest.raises(TypeError, match="int"):
        load_image(42)
    with pytest.raises(ValueError, match="frame"):
        load_image(stack, frame=-1)


def test_multi_frame_tiff_frames(tmp_path):
    frames = [Image.fromarray(np.full((6, 6), v, np.uint8)) for v in (40, 80, 120)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    assert [np.asarray(load_image(tmp_path / "stack.tif", frame=k))[0, 0, 0] for k in range(3)] == [40, 80, 120]
    with Image.open(tmp_path / "stack.tif") as opened:
        assert np.asarray(load_image(opened, frame=2))[0, 0, 0] == 120 and opened.tell() == 0
    with pytest.raises(ImageLoadError, match="stack.tif: frame 3 requested but the image has 3 frame"):
        load_image(tmp_path / "stack.tif", frame=3)
