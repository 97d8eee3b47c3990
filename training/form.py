"""Crops that look like the real E.SUN form scans (../shared/real-dev): a character in thin
blue or black ballpoint on pink, beige or grey paper between red ruled lines at the top
and bottom, sometimes a dark or red bar at one edge, the cut edges of the neighbouring
characters, a red seal now and then; scanner blur and heavy JPEG. 67 px tall, 26-104 px
wide.

The paper is a real one with its ink taken out (training/paper.py) three times in four,
else drawn here (a colour, blotches, grain, ruled lines). The `isnull` kinds the real
forms show: a blank box, a red seal, printed form text (characters outside the 800).
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HEIGHT = 67
PAPERS = (  # RGB ranges: pink, beige, grey, greenish grey, white
    ((215, 240), (190, 215), (190, 215)),
    ((220, 242), (210, 232), (185, 210)),
    ((175, 210), (175, 210), (170, 205)),
    ((195, 220), (200, 225), (185, 210)),
    ((235, 252), (235, 252), (235, 252)),
)
PENS = {  # RGB ranges of the inks
    "blue": ((20, 80), (30, 95), (110, 200)),
    "dark blue": ((10, 45), (15, 55), (60, 140)),
    "light blue": ((50, 110), (140, 195), (200, 245)),
    "black": ((15, 60), (15, 60), (20, 70)),
}
RED = ((170, 225), (30, 90), (40, 100))


def _rgb(rng: random.Random, ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
    return np.array([rng.randint(lo, hi) for lo, hi in ranges], dtype=np.float32)


def _drawn_paper(width: int, rng: random.Random) -> np.ndarray:
    base = _rgb(rng, rng.choice(PAPERS))
    gen = np.random.default_rng(rng.getrandbits(32))
    blotch = Image.fromarray(gen.normal(128, 40, (HEIGHT // 8 + 2, width // 8 + 2))
                             .clip(0, 255).astype(np.uint8), "L").resize(
        (width, HEIGHT), Image.Resampling.BICUBIC)
    img = base + (np.asarray(blotch, np.float32)[..., None] - 128) * rng.uniform(0.02, 0.1)
    img = img + gen.normal(0, rng.uniform(2, 6), (HEIGHT, width, 1))
    lines = Image.new("L", (width, HEIGHT), 0)
    draw = ImageDraw.Draw(lines)
    for y in (rng.randint(0, 6), rng.randint(HEIGHT - 10, HEIGHT - 2)):
        if rng.random() < 0.85:
            t = rng.choice((1, 2, 2, 3))
            draw.line((0, y, width, y + rng.randint(-1, 1)), fill=255, width=t)
            if rng.random() < 0.4:  # a thin second line beside it
                y2 = y + rng.choice((-4, -3, 3, 4))
                draw.line((0, y2, width, y2), fill=255, width=1)
    a = np.asarray(lines, np.float32)[..., None] / 255 * rng.uniform(0.6, 0.95)
    return (img * (1 - a) + _rgb(rng, RED) * a).astype(np.float32)


def paper(width: int, rng: random.Random, real: list[np.ndarray]) -> np.ndarray:
    """float32 [HEIGHT, width, 3]: a real paper (scaled to the height, cut or stretched
    to the width, maybe mirrored) or a drawn one."""
    if real and rng.random() < 0.75:
        p = Image.fromarray(rng.choice(real))
        if rng.random() < 0.5:
            p = p.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = HEIGHT / p.height
        p = p.resize((max(1, round(p.width * scale)), HEIGHT), Image.Resampling.BILINEAR)
        if p.width >= width:
            x = rng.randint(0, p.width - width)
            p = p.crop((x, 0, x + width, HEIGHT))
        else:
            p = p.resize((width, HEIGHT), Image.Resampling.BILINEAR)
        return np.asarray(p, np.float32)
    return _drawn_paper(width, rng)


def place(mask: Image.Image, glyph: Image.Image, height: float, cx: float, cy: float,
          rng: random.Random, squash: float = 1.0) -> None:
    """Paste the ink mask `glyph` about `height` px tall, centred near (cx, cy)."""
    gw, gh = glyph.size
    s = height / max(gh, gw * 0.85)
    w = max(1, int(gw * s * rng.uniform(0.85, 1.15) * squash))
    h = max(1, int(gh * s))
    g = glyph.resize((w, h), Image.Resampling.BILINEAR)
    mask.paste(255, (int(cx - w / 2), int(cy - h / 2)), g)


def seal(chars: list[Image.Image], rng: random.Random, size: int) -> Image.Image:
    """A red seal's ink mask: a square or round border with printed characters inside."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    t = rng.randint(2, 4)
    if rng.random() < 0.6:
        draw.rectangle((1, 1, size - 2, size - 2), outline=255, width=t)
    else:
        draw.ellipse((1, 1, size - 2, size - 2), outline=255, width=t)
    n = len(chars)
    cols = 1 if n == 1 else 2
    rows = -(-n // cols)
    cell_w, cell_h = (size - 4 * t) / cols, (size - 4 * t) / rows
    for i, c in enumerate(chars):
        cx = 2 * t + cell_w * (i % cols + 0.5)
        cy = 2 * t + cell_h * (i // cols + 0.5)
        place(img, c, min(cell_w, cell_h) * 0.9, cx, cy, rng)
    return img


def _ink_colour(kind: str, rng: random.Random) -> np.ndarray:
    return _rgb(rng, PENS[kind])


def crop(glyph: Image.Image | None, rng: random.Random, real_papers: list[np.ndarray],
         neighbours: list[Image.Image], *, printed: bool = False,
         seal_chars: list[Image.Image] | None = None, text: list[Image.Image] | None = None,
         quality: tuple[int, int] = (35, 85), close: float = 0.0) -> bytes:
    """One form crop as JPEG bytes.

    glyph: the character's ink mask (None: no character); printed: it is form print (a
    smaller, lighter, straight character, often with its printed neighbour beside it);
    neighbours: characters whose cut edge shows at the left or right; seal_chars: a red
    seal covering the crop (an `isnull` kind) or, with a glyph, a seal's edge; text: a
    line of small printed characters (an `isnull` kind); close: the share of written
    crops made as most real ones are (v5: 0.7): a large character in dark ink, the crop cut
    close around it (0: v4's data, made exactly as before)."""
    fit = close > 0 and glyph is not None and not printed and rng.random() < close
    if fit:  # as most real crops: a large character, the crop cut close around it
        h = rng.uniform(40, 64)
        aspect = glyph.width / max(1, glyph.height)  # type: ignore[union-attr]
        width = min(104, max(26, round(h * min(1.3, max(0.55, aspect)) * rng.uniform(1.0, 1.5))))
    else:
        width = rng.randint(26, 104) if glyph is not None else rng.randint(30, 110)
    bg = paper(width, rng, real_papers)
    ink = Image.new("L", (width, HEIGHT), 0)
    pens = ("dark blue", "dark blue", "blue", "blue", "black", "light blue") if close else \
        ("blue", "blue", "blue", "black", "light blue")
    pen = rng.choice(pens) if not printed else \
        rng.choice(("blue", "black", "light blue", "light blue"))
    if glyph is not None:
        if not fit:
            h = rng.uniform(22, 40) if printed else rng.uniform(30, 62)
        cx = width / 2 + rng.gauss(0, width * (0.05 if fit else 0.1))
        cy = HEIGHT / 2 + rng.gauss(0, 3 if fit else 5)
        if printed and rng.random() < 0.5:
            cx = min(cx, h * 0.6 + rng.uniform(0, 6))  # at the left, its neighbour beside
        place(ink, glyph, min(h, width * 1.3), cx, cy, rng)
        for i, other in enumerate(neighbours):
            side = rng.choice((-1, 1)) if not printed else 1
            nh = h * rng.uniform(0.85, 1.15)
            gap = nh * (rng.uniform(0.9, 1.1) if printed else rng.uniform(0.55, 0.95))
            place(ink, other, nh, cx + side * gap * (i + 1), cy + rng.gauss(0, 4), rng)
    else:
        for other in neighbours:  # only the cut edges of the characters around a blank
            side = rng.choice((-1, 1))
            nh = rng.uniform(35, 60)
            place(ink, other, nh, width / 2 + side * (width / 2 + nh * rng.uniform(0.3, 0.45)),
                  HEIGHT / 2 + rng.gauss(0, 5), rng)
    if text:  # a line of small printed characters
        th = rng.uniform(14, 26)
        x = rng.uniform(-th / 2, width * 0.3)
        y = rng.uniform(th / 2, HEIGHT - th / 2)
        for c in text:
            place(ink, c, th, x + th / 2, y, rng)
            x += th * rng.uniform(1.0, 1.15)
    angle = rng.gauss(0, 2.5)
    ink = ink.rotate(angle, resample=Image.Resampling.BILINEAR)
    a = np.asarray(ink, np.float32)[..., None] / 255
    # ballpoint: uneven pressure along the line, a little lighter where it skips
    # (a thin line's anti-aliased edge is darkened: a ballpoint's line is saturated)
    grain = np.random.default_rng(rng.getrandbits(32)).uniform(0.85 if fit else 0.75, 1.0,
                                                               a.shape)
    a = np.minimum(a * rng.uniform(1.5, 2.2) if fit else a * rng.uniform(1.3, 1.8), 1.0) * \
        (grain if not printed else 1.0) * rng.uniform(0.85, 1.0)
    img = bg * (1 - a) + _ink_colour(pen, rng) * a

    red = Image.new("L", (width, HEIGHT), 0)
    if seal_chars is not None:
        size = rng.randint(40, 80) if glyph is None else rng.randint(40, 70)
        s = seal(seal_chars, rng, size)
        if glyph is None:  # the seal is what the crop shows
            x = rng.randint(min(0, width - size), max(0, width - size))
            y = rng.randint(min(0, HEIGHT - size), max(0, HEIGHT - size))
        else:  # a seal's edge by the character
            x = rng.choice((-size + rng.randint(6, 16), width - rng.randint(6, 16)))
            y = rng.randint(-size // 2, HEIGHT - size // 2)
        red.paste(255, (x, y), s)
    r_alpha = np.asarray(red, np.float32)[..., None] / 255 * rng.uniform(0.6, 0.95)
    img = img * (1 - r_alpha) + _rgb(rng, RED) * r_alpha

    bar = rng.random()
    if bar < 0.15:  # a dark or red bar along one edge
        bw = rng.randint(3, 22)
        colour = _rgb(rng, ((0, 40), (0, 40), (0, 40))) if rng.random() < 0.7 else \
            _rgb(rng, RED)
        if rng.random() < 0.5:
            img[:, :bw] = colour
        else:
            img[:, width - bw:] = colour
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(1, 5), img.shape)
    out = Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.7:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    if rng.random() < 0.3:  # scanned at a lower resolution
        f = rng.uniform(0.6, 0.85)
        small = out.resize((max(8, int(width * f)), int(HEIGHT * f)), Image.Resampling.BILINEAR)
        out = small.resize((width, HEIGHT), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=rng.randint(*quality))
    return buf.getvalue()
