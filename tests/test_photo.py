"""Photo loading survives real files; every bad input gets a typed error naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sie3d.errors import NoFaceError, PhotoError
from sie3d.photo import MAX_SIDE, load_photo

SOURCE = "london_005_neutral.jpg"


@pytest.fixture(scope="module")
def reference(faces) -> np.ndarray:
    return np.asarray(Image.open(faces / SOURCE).convert("RGB"))


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


@pytest.mark.parametrize("suffix", [".png", ".webp", ".bmp", ".tiff"])
def test_common_formats_load_as_rgb(tmp_path, reference, suffix):
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(reference).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    photo = load_photo(path)
    assert photo.rgb.dtype == np.uint8 and photo.rgb.shape == reference.shape
    assert _mean_abs_diff(photo.rgb, reference) < 1.0


@pytest.mark.parametrize(("orientation", "stored"), [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                     (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_is_applied(tmp_path, reference, orientation, stored):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(reference).transpose(stored).save(path, exif=exif, quality=95)
    photo = load_photo(path)
    assert photo.rgb.shape == reference.shape
    assert _mean_abs_diff(photo.rgb, reference) < 4.0  # only JPEG re-encoding differences


def test_mode_conversions(tmp_path, reference):
    gray = Image.fromarray(reference).convert("L")
    cases = {
        "gray.jpg": gray,
        "rgba.png": Image.fromarray(reference).convert("RGBA"),
        "cmyk.jpg": Image.fromarray(reference).convert("CMYK"),
        "palette.png": Image.fromarray(reference).convert("P"),
        "gray16.png": Image.fromarray(np.asarray(gray).astype(np.uint16) * 257),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        photo = load_photo(tmp_path / name)
        assert photo.rgb.shape == reference.shape and photo.rgb.dtype == np.uint8, name
        # Every mode keeps the picture: compare brightness with the grayscale original.
        luminance = photo.rgb.astype(np.float32).mean(axis=2)
        assert abs(luminance.mean() - np.asarray(gray, np.float32).mean()) < 12, name


def test_sixteen_bit_uses_full_range(tmp_path, reference):
    gray = np.asarray(Image.fromarray(reference).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(tmp_path / "deep.png")
    photo = load_photo(tmp_path / "deep.png")
    assert photo.rgb.max() > 200  # not divided into darkness


def test_transparent_background_is_neutral_gray(tmp_path, reference):
    rgba = np.dstack([reference, np.full(reference.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    photo = load_photo(tmp_path / "cutout.png")
    assert np.all(photo.rgb[:40, :40] == 128)


def test_very_large_photo_is_downscaled_and_face_still_found(tmp_path, reference, observer):
    big = Image.fromarray(reference).resize((4000, 4000), Image.Resampling.BICUBIC)
    big.save(tmp_path / "big.jpg", quality=90)
    photo = load_photo(tmp_path / "big.jpg")
    assert max(photo.rgb.shape[:2]) == MAX_SIDE and photo.original_size == (4000, 4000)
    assert photo.scale == pytest.approx(MAX_SIDE / 4000)
    face, _ = observer.observe(photo)
    assert face.interocular_px > 100


def test_small_but_usable_photo(tmp_path, reference, observer):
    Image.fromarray(reference).resize((160, 160), Image.Resampling.LANCZOS).save(tmp_path / "small.png")
    face, _ = observer.observe(load_photo(tmp_path / "small.png"))
    assert 20 < face.interocular_px < 80


def test_too_small_photo_is_rejected(tmp_path, reference):
    Image.fromarray(reference).resize((40, 40)).save(tmp_path / "tiny.png")
    with pytest.raises(PhotoError, match="only 40x40 pixels"):
        load_photo(tmp_path / "tiny.png")


def test_truncated_file_is_rejected(tmp_path, faces):
    data = (faces / SOURCE).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(PhotoError, match="damaged or truncated"):
        load_photo(tmp_path / "cut.jpg")


def test_non_image_missing_and_folder_are_rejected(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    with pytest.raises(PhotoError, match="not an image"):
        load_photo(tmp_path / "notes.jpg")
    with pytest.raises(PhotoError, match="no such file"):
        load_photo(tmp_path / "absent.jpg")
    with pytest.raises(PhotoError, match="is a folder"):
        load_photo(tmp_path)


def test_image_without_face_raises_no_face(tmp_path, reference, observer):
    # The top-left corner of a studio photo: background only.
    Image.fromarray(reference[:200, :200]).save(tmp_path / "wall.png")
    with pytest.raises(NoFaceError, match="no face found"):
        observer.observe(load_photo(tmp_path / "wall.png"))
