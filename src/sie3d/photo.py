"""Photo loading that survives real files.

Whatever comes in -- JPEG/PNG/WebP/BMP/TIFF, EXIF-rotated, grayscale, RGBA, 16-bit, CMYK, palette,
huge or tiny -- comes out as an upright 8-bit RGB array, or as a `PhotoError` that names the file and
the problem.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sie3d.errors import PhotoError

log = logging.getLogger(__name__)

MAX_SIDE = 2048  # larger photos are downscaled: landmarks do not improve, memory and time do not scale
MIN_SIDE = 64  # below this no detector can find a face reliably
# Per image, checked from the header before any pixel is decoded: accepts real 100+ MP photos, refuses
# decompression bombs (a 20000x20000 PNG of a few MB would need 1.2 GB decoded). Pillow's own process-wide
# limit (Image.MAX_IMAGE_PIXELS) is left as it is: it refuses above ~179 MP whatever this says.
MAX_PIXELS = 150_000_000
PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF")  # what a photo upload may be (by content)
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}  # what a folder of photos holds


@dataclass(frozen=True)
class Photo:
    """An upright RGB photo ready for the face stage."""

    rgb: np.ndarray  # (H, W, 3) uint8, upright (EXIF orientation applied)
    path: Path | None
    original_size: tuple[int, int]  # (width, height) of the file after EXIF rotation, before downscaling
    scale: float  # rgb size / original size (1.0 unless downscaled)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _to_rgb8(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. 16-bit and float images are rescaled by their value range."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F":
            top = max(float(values.max()), 1e-6) if values.max() > 1.0 else 1.0
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparency onto mid-gray: a face detector sees black or white padding as edges.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, P, CMYK, YCbCr, LAB, 1, RGB


def _check_pixels(image: Image.Image, name: str | Path, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise PhotoError(f"{name} is {width}x{height} pixels ({width * height / 1e6:.0f} MP), more than the "
                         f"{max_pixels / 1e6:.0f} MP sie3d decodes", "resize the photo (2048 px on the long side is "
                         "plenty)")  # fmt: skip


def image_header(path: str | Path, *, formats: tuple[str, ...] = PHOTO_FORMATS, max_pixels: int = MAX_PIXELS,
                 name: str | None = None) -> tuple[str, tuple[int, int]]:  # fmt: skip
    """(format, (width, height)) of an image file, read from its content (never its name) without decoding
    pixels; a `PhotoError` (naming the file `name`, default its file name) when it is not an image, not one
    of `formats`, or larger than `max_pixels`."""
    shown = name or Path(path).name
    try:
        with Image.open(path) as image:
            kind = image.format or "unknown"
            _check_pixels(image, shown, max_pixels)
            size = image.size
    except UnidentifiedImageError:
        raise PhotoError(f"{shown} is not an image", f"use a photo ({', '.join(formats)})") from None
    except Image.DecompressionBombError:  # Pillow's own limit, below ours
        raise PhotoError(f"{shown} is too large to decode safely (more than {max_pixels / 1e6:.0f} MP)",
                         f"resize it below {max_pixels / 1e6:.0f} megapixels") from None  # fmt: skip
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(f"{shown} is damaged ({exc})", "re-export or re-download the photo") from None
    if kind not in formats:
        raise PhotoError(f"{shown} is a {kind} image, not a photo format sie3d accepts",
                         f"use one of {', '.join(formats)}")  # fmt: skip
    return kind, size


def load_photo(path: str | Path, *, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS) -> Photo:
    """Read an image file into an upright 8-bit RGB `Photo`; raise `PhotoError` with a fix otherwise.
    Files over `max_pixels` are refused from their header, before any decoding."""
    path = Path(path)
    if not path.exists():
        raise PhotoError(f"{path}: no such file", "check the path (and quote it if it has spaces)")
    if path.is_dir():
        raise PhotoError(f"{path} is a folder, not a photo", "pass one image file, e.g. photos/me.jpg")
    try:
        with Image.open(path) as image:
            _check_pixels(image, path, max_pixels)
            image.load()  # decode now, so truncated files fail here and not later
            upright = ImageOps.exif_transpose(image) or image
            rgb_image = _to_rgb8(upright)
    except UnidentifiedImageError:
        raise PhotoError(
            f"{path} is not an image sie3d can read",
            "use a JPEG, PNG, WebP, BMP or TIFF photo",
        ) from None
    except Image.DecompressionBombError:  # Pillow's own limit, below ours
        raise PhotoError(f"{path} is too large to decode safely (more than {max_pixels / 1e6:.0f} MP)",
                         f"resize it below {max_pixels / 1e6:.0f} megapixels") from None  # fmt: skip
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(
            f"{path} is damaged or truncated and cannot be decoded ({exc})",
            "re-export or re-download the photo",
        ) from None
    original = rgb_image.size
    if min(original) < MIN_SIDE:
        raise PhotoError(
            f"{path} is only {original[0]}x{original[1]} pixels; faces need at least {MIN_SIDE} px",
            "use a larger photo where the face is at least ~100 px wide",
        )
    scale = 1.0
    if max(original) > max_side:
        scale = max_side / max(original)
        size = (max(1, round(original[0] * scale)), max(1, round(original[1] * scale)))
        rgb_image = rgb_image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        log.info("downscaled %s from %dx%d to %dx%d", path.name, *original, *size)
    return Photo(np.ascontiguousarray(np.asarray(rgb_image, dtype=np.uint8)), path, original, scale)


def photo_from_array(rgb: np.ndarray, name: str = "array") -> Photo:
    """Wrap an in-memory (H, W, 3) uint8 RGB array (e.g. from a web upload) as a `Photo`."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise PhotoError(f"{name}: expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    return Photo(np.ascontiguousarray(rgb), None, (rgb.shape[1], rgb.shape[0]), 1.0)


def shared_faces_dir() -> Path | None:
    """The project's shared photo set (tests, evaluation, training): ``$SIE3D_FACES``, else ``../shared/faces``
    beside the checkout; None when it has no ``manifest.csv``."""
    env = os.environ.get("SIE3D_FACES")
    folder = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "faces"
    return folder if (folder / "manifest.csv").is_file() else None
