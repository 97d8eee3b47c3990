"""Image bytes -> the model's input. The one preprocessing path: training feeds its
generated JPEGs through these same functions, so what the model learned is what it sees.

Any format Pillow reads (JPEG, PNG, BMP, WebP...), any mode (L, RGB, RGBA, P...), any
size: converted to grayscale on white, resized to SIZE x SIZE, inverted (ink high) and
contrast-stretched, so ink and paper colour do not matter.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

SIZE = 48
MAX_PIXELS = 40_000_000  # a decompression bomb is refused, not decoded


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why."""


def decode_image(data: bytes) -> Image.Image:
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise ImageError(f"the image is {img.width}x{img.height}; at most {MAX_PIXELS} pixels")
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"the bytes are not a readable image ({type(exc).__name__})") from None
    if img.width == 0 or img.height == 0:
        raise ImageError("the image has no pixels")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("L")


def to_array(img: Image.Image) -> np.ndarray:
    """uint8 [SIZE, SIZE]: ink high, paper low, stretched to the full range."""
    small = img.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    a = 255 - np.asarray(small, dtype=np.int32)
    lo, hi = int(np.percentile(a, 5)), int(a.max())
    if hi - lo < 24:  # no contrast: blank paper, keep it blank
        return np.zeros((SIZE, SIZE), dtype=np.uint8)
    out = (a - lo) * 255 // (hi - lo)
    return np.clip(out, 0, 255).astype(np.uint8)


def prepare(data: bytes) -> np.ndarray:
    return to_array(decode_image(data))


def batch(arrays: list[np.ndarray]) -> np.ndarray:
    """float32 [N, 1, SIZE, SIZE] in [0, 1]."""
    return (np.stack(arrays)[:, None, :, :].astype(np.float32)) * (1.0 / 255.0)
