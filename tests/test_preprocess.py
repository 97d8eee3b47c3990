"""The handwriting preprocessing's fast paths give what the plain paths give, bit for bit:
libjpeg-turbo's grayscale decode (simplejpeg) against Pillow's, the table-driven contrast
stretch against the arithmetic it replaces."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
import preprocess

CASES = sorted((ROOT / "tests" / "data" / "handwriting").glob("*.jpg"))


def pillow_gray(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.draft("L", (preprocess.SIZE, preprocess.SIZE))
    return np.asarray(img.convert("L"))


def jpeg(pixels: np.ndarray, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", **options)
    return out.getvalue()


def test_fast_jpeg_decode_equals_pillow_on_the_scans() -> None:
    for path in CASES:
        data = path.read_bytes()
        fast = preprocess._decode_jpeg(data)
        assert fast is not None, path.name
        assert np.array_equal(np.asarray(fast), pillow_gray(data)), path.name


@pytest.mark.parametrize("size", [(97, 97), (400, 300), (1000, 700), (60, 200)])
def test_fast_jpeg_decode_scales_large_images_as_pillow_does(size: tuple[int, int]) -> None:
    w, h = size
    pixels = (np.random.default_rng(w).random((h, w, 3)) * 255).astype(np.uint8)
    data = jpeg(pixels, quality=75, progressive=w > 300)
    fast = preprocess._decode_jpeg(data)
    assert fast is not None
    assert np.array_equal(np.asarray(fast), pillow_gray(data))


def test_cmyk_jpeg_goes_to_pillow_and_still_decodes() -> None:
    pixels = (np.random.default_rng(1).random((67, 80, 4)) * 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "CMYK").save(out, "JPEG")
    data = out.getvalue()
    assert preprocess._decode_jpeg(data) is None
    assert preprocess.prepare(data).shape == (preprocess.SIZE, preprocess.SIZE)


def test_truncated_jpeg_is_refused_with_a_reason() -> None:
    data = CASES[0].read_bytes()
    with pytest.raises(preprocess.ImageError, match="not a readable image"):
        preprocess.prepare(data[: len(data) // 3])


def reference_stretch(img: Image.Image) -> np.ndarray:
    small = img.resize((preprocess.SIZE, preprocess.SIZE), Image.Resampling.BILINEAR)
    a = 255 - np.asarray(small, dtype=np.int32)
    lo, hi = int(np.percentile(a, preprocess.PERCENTILE)), int(a.max())
    if hi - lo < 24:
        return np.zeros((preprocess.SIZE, preprocess.SIZE), dtype=np.uint8)
    return np.clip((a - lo) * 255 // (hi - lo), 0, 255).astype(np.uint8)


def test_table_stretch_equals_the_arithmetic() -> None:
    rng = np.random.default_rng(0)
    images = [preprocess.decode_image(p.read_bytes()) for p in CASES]
    for _ in range(2000):
        h, w = (int(v) for v in rng.integers(20, 120, 2))
        low = int(rng.integers(0, 250))
        images.append(Image.fromarray(rng.integers(low, 256, (h, w), dtype=np.uint8), "L"))
    for img in images:
        assert np.array_equal(preprocess.to_array(img), reference_stretch(img))
