"""Where characters come from: CJK fonts from Debian's packages (printed), and the stroke
medians of hanzi-writer-data drawn stroke by stroke with a wobbling brush (written).

Both give an ink mask: a PIL "L" image, ink 255 on 0, cropped to the ink.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_ROOT = Path("/usr/share/fonts")
# (file name, family to pick inside a collection): every Debian CJK font the issue names
TRAIN_FONTS: tuple[tuple[str, str | None], ...] = (
    ("ukai.ttc", "AR PL UKai TW"),
    ("uming.ttc", "AR PL UMing TW"),
    ("bkai00mp.ttf", None),
    ("bsmi00lp.ttf", None),
    ("TW-Kai-98_1.ttf", None),
    ("TW-Sung-98_1.ttf", None),
    ("cwming.ttf", None),
    ("cwfs.ttf", None),
    ("cwheib.ttf", None),
    ("cwyen.ttf", None),
    ("NotoSansCJK-Regular.ttc", "Noto Sans CJK TC"),
    ("NotoSansCJK-Bold.ttc", "Noto Sans CJK TC"),
    ("NotoSerifCJK-Regular.ttc", "Noto Serif CJK TC"),
    ("NotoSerifCJK-Bold.ttc", "Noto Serif CJK TC"),
    ("wqy-zenhei.ttc", "WenQuanYi Zen Hei"),
)
VALIDATION_FONT: tuple[str, str | None] = ("cwkai.ttf", None)  # never trained on
RENDER_PX = 96
MISSING = "\U0010fffd"  # a code point no font has: what a missing glyph looks like


@cache
def font_path(filename: str) -> Path:
    found = sorted(FONT_ROOT.rglob(filename))
    if not found:
        raise FileNotFoundError(f"font {filename} not installed (make train installs it)")
    return found[0]


@cache
def load_font(filename: str, family: str | None, size: int = RENDER_PX) -> ImageFont.FreeTypeFont:
    path = font_path(filename)
    for index in range(16):
        try:
            font = ImageFont.truetype(str(path), size, index=index)
        except OSError:
            break
        if family is None or font.getname()[0] == family:
            return font
    raise LookupError(f"{filename} has no face named {family}")


@cache
def _missing_mask(filename: str, family: str | None) -> bytes:
    return bytes(load_font(filename, family).getmask(MISSING))


@cache
def has_glyph(filename: str, family: str | None, char: str) -> bool:
    font = load_font(filename, family)
    mask = font.getmask(char)
    return mask.getbbox() is not None and bytes(mask) != _missing_mask(filename, family)


def render_font(char: str, filename: str, family: str | None) -> Image.Image:
    font = load_font(filename, family)
    img = Image.new("L", (RENDER_PX * 2, RENDER_PX * 2), 0)
    ImageDraw.Draw(img).text((RENDER_PX // 2, RENDER_PX // 2), char, fill=255, font=font)
    box = img.getbbox()
    return img.crop(box) if box else img.crop((0, 0, 4, 4))


# -- stroke-drawn -------------------------------------------------------------------------


class StrokeData:
    """hanzi-writer-data: one JSON per character, stroke medians in a 1024 box (y up)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def chars(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json") if len(p.stem) == 1)

    @cache  # noqa: B019  # one StrokeData per process, lives as long as it
    def medians(self, char: str) -> list[list[tuple[float, float]]] | None:
        path = self.root / f"{char}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return [[(float(x), 900.0 - float(y)) for x, y in stroke] for stroke in data["medians"]]


def _densify(points: list[tuple[float, float]], step: float) -> list[tuple[float, float]]:
    out = [points[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(1, n + 1)]
    return out


def _smooth(points: list[tuple[float, float]], rounds: int) -> list[tuple[float, float]]:
    """Chaikin's corner cutting: a fast hand rounds the corners of its strokes."""
    for _ in range(rounds):
        if len(points) < 3:
            return points
        out = [points[0]]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            out += [(0.75 * x0 + 0.25 * x1, 0.75 * y0 + 0.25 * y1),
                    (0.25 * x0 + 0.75 * x1, 0.25 * y0 + 0.75 * y1)]
        points = [*out, points[-1]]
    return points


def _warp(rng: random.Random) -> Callable[[float, float], tuple[float, float]]:
    """A hand's uneven proportions, for the whole character: its parts grown or shrunk
    against each other (a power curve along each axis: the left radical wider or narrower
    than the right part, the top heavier or lighter than the bottom) and a smooth elastic
    bend (two low sine waves, up to ~4% of the box each way)."""
    gx, gy = math.exp(rng.gauss(0, 0.22)), math.exp(rng.gauss(0, 0.18))
    ax, ay = rng.uniform(0, 40), rng.uniform(0, 40)
    fx, fy = rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5)
    px, py = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)

    def apply(x: float, y: float) -> tuple[float, float]:
        u, v = min(max(x / 1024, 0.0), 1.0), min(max(y / 1024, 0.0), 1.0)
        wx = 1024 * u ** gx + ax * math.sin(2 * math.pi * fx * v + px)
        wy = 1024 * v ** gy + ay * math.sin(2 * math.pi * fy * u + py)
        return wx, wy

    return apply


def render_strokes(medians: list[list[tuple[float, float]]], rng: random.Random,
                   px: int = 128, pen: bool = False, v5: bool = False) -> Image.Image:
    """Draw a character the way a hand would: each stroke displaced and turned a little,
    its points wobbling; the whole slanted and squashed; a brush whose width follows a
    pressure curve (heavier at the start, lifting at the end).

    `pen`: a ballpoint written fast (the real forms): a thin line of nearly even width,
    corners rounded, strokes moved more and often joined to the next one by the pen's
    path between them (semi-cursive), proportions less even. `v5` (with `pen`): a wider
    line (the real crops' 2-3 px) and each character's proportions bent (`_warp`)."""
    scale = px / 1024
    slant = rng.uniform(-0.3, 0.3) if pen else rng.uniform(-0.25, 0.25)
    sx, sy = (rng.uniform(0.75, 1.2), rng.uniform(0.8, 1.2)) if pen else (
        rng.uniform(0.8, 1.15), rng.uniform(0.85, 1.15))
    turn = math.radians(rng.uniform(-6, 6))
    cos_t, sin_t = math.cos(turn), math.sin(turn)
    width = (rng.uniform(26, 58) if v5 else rng.uniform(20, 44)) if pen else \
        rng.uniform(26, 80)  # in the 1024 box
    wobble = rng.uniform(2, 8) if pen else rng.uniform(3, 14)
    shift = rng.uniform(14, 30) if pen else 14.0
    joins = rng.uniform(0.2, 0.8) if pen else 0.0
    warp = _warp(rng) if pen and v5 else None
    img = Image.new("L", (px * 2, px * 2), 0)
    draw = ImageDraw.Draw(img)
    last: tuple[float, float] | None = None
    for stroke in medians:
        if not stroke:
            continue
        dx, dy = rng.gauss(0, shift), rng.gauss(0, shift)
        cx = sum(p[0] for p in stroke) / len(stroke)
        cy = sum(p[1] for p in stroke) / len(stroke)
        a = math.radians(rng.gauss(0, 4))
        ca, sa = math.cos(a), math.sin(a)
        pts = []
        for x, y in stroke:
            if warp is not None:
                x, y = warp(x, y)
            x, y = cx + (x - cx) * ca - (y - cy) * sa, cy + (x - cx) * sa + (y - cy) * ca
            x, y = x + dx + rng.gauss(0, wobble), y + dy + rng.gauss(0, wobble)
            x, y = (x - 512) * sx + slant * (y - 512), (y - 512) * sy
            x, y = x * cos_t - y * sin_t, x * sin_t + y * cos_t
            pts.append((x * scale + px, y * scale + px))
        if pen:
            pts = _smooth(pts, 2)
            w = width * scale * rng.uniform(0.85, 1.1)
            if last is not None and rng.random() < joins and \
                    math.dist(last, pts[0]) < 40 * scale * 8:  # the pen not lifted
                draw.line([last, pts[0]], fill=255, width=max(1, round(w * 0.6)))
            last = pts[-1]
            # a ballpoint's line: even width, a little thinner as the pen lifts (drawn as
            # polylines, ten times faster than the brush's dabs)
            cut = max(2, int(len(pts) * rng.uniform(0.6, 0.9)))
            draw.line(pts[:cut], fill=255, width=max(1, round(w)), joint="curve")
            draw.line(pts[cut - 1:], fill=255, width=max(1, round(w * 0.8)), joint="curve")
            continue
        dense = _densify(pts, 1.5)
        press = rng.uniform(0.7, 1.2)
        taper = rng.uniform(0.3, 0.8)
        n = len(dense)
        for i, (x, y) in enumerate(dense):
            t = i / max(1, n - 1)
            heavy_start = 1 + 0.15 * (t < 0.1)
            r = max(0.6, width * scale / 2 * press * (1.0 - taper * t ** 2) * heavy_start)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    box = img.getbbox()
    return img.crop(box) if box else img.crop((0, 0, 4, 4))


def render_scribble(rng: random.Random, px: int = 96) -> Image.Image:
    """Random pen movements that are no character."""
    img = Image.new("L", (px, px), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 5)):
        pts = [(rng.uniform(0, px), rng.uniform(0, px)) for _ in range(rng.randint(2, 6))]
        draw.line(_densify(pts, 2), fill=255, width=rng.randint(2, 7), joint="curve")
    box = img.getbbox()
    return img.crop(box) if box else img
