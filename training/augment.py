"""Variants of a real crop for fine-tuning: the same character, cut a little differently,
turned and scaled a little, its colours and sharpness changed, compressed again. Nothing
is added to the image, so its label stays true."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter


def vary(data: bytes, rng: random.Random) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    # the crop's edges moved by a few pixels (out: the paper's edge colour repeats)
    left, right = rng.randint(-4, 4), rng.randint(-4, 4)
    top, bottom = rng.randint(-3, 3), rng.randint(-3, 3)
    arr = np.asarray(img)
    arr = np.pad(arr, ((max(0, -top), max(0, -bottom)), (max(0, -left), max(0, -right)),
                       (0, 0)), mode="edge")
    arr = arr[max(0, top):arr.shape[0] - max(0, bottom), max(0, left):arr.shape[1] - max(0, right)]
    img = Image.fromarray(np.ascontiguousarray(arr))
    fill = tuple(int(v) for v in np.median(arr.reshape(-1, 3), axis=0))
    img = img.rotate(rng.gauss(0, 3), resample=Image.Resampling.BILINEAR, fillcolor=fill)
    sx, sy = rng.uniform(0.85, 1.15), rng.uniform(0.9, 1.1)
    img = img.resize((max(8, int(img.width * sx)), max(8, int(img.height * sy))),
                     Image.Resampling.BILINEAR)
    gains = np.array([rng.uniform(0.9, 1.1) for _ in range(3)], np.float32)
    out = np.asarray(img, np.float32) * gains + rng.uniform(-15, 15)
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.7)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(45, 92))
    return buf.getvalue()
