"""Make an ink mask look like a crop of a scanned bank form (ESUN.md): 67 px tall,
35-93 px wide, blue/black/brown ink on beige or bluish paper, red or blue ruled lines
across the crop, bits of the neighbouring characters and of seals at the edges, turned,
blurred, noisy, off-centre, sometimes cut; saved as a JPEG of quality about 75."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HEIGHT = 67
INKS = {
    "blue": ((15, 40), (30, 80), (110, 190)),
    "black": ((10, 55), (10, 55), (10, 60)),
    "brown": ((80, 130), (45, 75), (20, 45)),
}
PAPERS = {
    "beige": ((228, 250), (218, 240), (185, 220)),
    "bluish": ((200, 228), (215, 238), (232, 252)),
    "white": ((238, 255), (238, 255), (235, 255)),
}


def _colour(rng: random.Random, ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
    return np.array([rng.randint(lo, hi) for lo, hi in ranges], dtype=np.float32)


def _place(canvas: Image.Image, glyph: Image.Image, box_h: int, cx: float, cy: float,
           rng: random.Random) -> None:
    """Paste `glyph` (ink mask) scaled to about `box_h` tall, centred near (cx, cy)."""
    gw, gh = glyph.size
    s = box_h / max(gh, gw * 0.8)
    w, h = max(1, int(gw * s * rng.uniform(0.9, 1.1))), max(1, int(gh * s))
    g = glyph.resize((w, h), Image.Resampling.BILINEAR)
    canvas.paste(255, (int(cx - w / 2), int(cy - h / 2)), g)


def scan(glyph: Image.Image | None, rng: random.Random, neighbours: list[Image.Image],
         quality: tuple[int, int] = (60, 90)) -> bytes:
    """One scanned crop as JPEG bytes. `glyph` None: blank paper."""
    width = rng.randint(35, 93)
    ink_mask = Image.new("L", (width, HEIGHT), 0)
    if glyph is not None:
        box_h = rng.uniform(38, 62)
        cx = width / 2 + rng.gauss(0, width * 0.08)
        cy = HEIGHT / 2 + rng.gauss(0, 4)
        _place(ink_mask, glyph, min(box_h, width * 1.25), cx, cy, rng)
    for other in neighbours:  # a neighbour mostly outside, its edge intruding
        side = rng.choice((-1, 1))
        h = rng.uniform(38, 60)
        _place(ink_mask, other, h, width / 2 + side * (width / 2 + h * rng.uniform(0.3, 0.5)),
               HEIGHT / 2 + rng.gauss(0, 5), rng)
    angle = rng.gauss(0, 3.5) if rng.random() < 0.8 else rng.uniform(-15, 15)
    ink_mask = ink_mask.rotate(angle, resample=Image.Resampling.BILINEAR)

    paper = _colour(rng, PAPERS[rng.choice(("beige", "beige", "bluish", "white"))])
    ink = _colour(rng, INKS[rng.choice(("blue", "blue", "black", "black", "brown"))])
    a = np.asarray(ink_mask, dtype=np.float32)[:, :, None] / 255.0 * rng.uniform(0.75, 1.0)
    img = paper * (1 - a) + ink * a

    lines = Image.new("L", (width, HEIGHT), 0)
    draw = ImageDraw.Draw(lines)
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):  # ruled grid lines crossing the crop
        t = rng.choice((1, 1, 2))
        if rng.random() < 0.5:
            y = rng.choice((rng.randint(0, 8), rng.randint(HEIGHT - 9, HEIGHT - 1),
                            rng.randint(0, HEIGHT - 1)))
            draw.line((0, y, width, y + rng.randint(-1, 1)), fill=255, width=t)
        else:
            x = rng.choice((rng.randint(0, 6), rng.randint(width - 7, width - 1),
                            rng.randint(0, width - 1)))
            draw.line((x, 0, x + rng.randint(-1, 1), HEIGHT), fill=255, width=t)
    if rng.random() < 0.12:  # a seal's red ring or border at an edge
        r = rng.uniform(20, 45)
        cx = rng.choice((-r * 0.6, width + r * 0.6))
        cy = rng.uniform(0, HEIGHT)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=255, width=rng.randint(2, 4))
    line_colour = (np.array([rng.randint(170, 230), rng.randint(40, 110), rng.randint(50, 110)],
                            dtype=np.float32) if rng.random() < 0.6 else
                   np.array([rng.randint(60, 120), rng.randint(110, 170), rng.randint(190, 240)],
                            dtype=np.float32))
    la = np.asarray(lines, dtype=np.float32)[:, :, None] / 255.0 * rng.uniform(0.5, 0.9)
    img = img * (1 - la) + line_colour * la

    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(1, 8), img.shape)
    img += noise.astype(np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.9)))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=rng.randint(*quality))
    return buf.getvalue()


def fragment(glyph: Image.Image, rng: random.Random) -> Image.Image:
    """A small piece of a character: what is left of one that cannot be read."""
    w, h = glyph.size
    fw, fh = max(2, int(w * rng.uniform(0.2, 0.45))), max(2, int(h * rng.uniform(0.2, 0.45)))
    x, y = rng.randint(0, max(0, w - fw)), rng.randint(0, max(0, h - fh))
    return glyph.crop((x, y, x + fw, y + fh))
