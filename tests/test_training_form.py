"""The parts of issue 9's training that decide what the model may learn from: the 2-fold
split of the real crops (the figures come from crops never trained on), the paper taken
from real crops (no real ink may remain), the form crops (what the serving path reads)."""

from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import ROOT
from training import form, paper, real

sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
import preprocess


def _write_index(folder: Path) -> dict[str, str]:
    labels, sources = {}, {}
    for source in ("A/data/img", "B/data/test"):
        for i in range(5):
            name = f"{source[0]}_{i}_x.jpg"
            labels[name] = "x"
            sources[name] = f"owner/repo:{source}/{i}_x.jpg"
    (folder / "index.json").write_text(json.dumps({
        "labels": labels, "sources": sources, "visual_flags": {"A_0_x.jpg": "blank"},
        "unlabeled_sources": {}}))
    return sources


def test_folds_halve_every_source_and_never_overlap(tmp_path: Path) -> None:
    _write_index(tmp_path)
    crops = real.labelled(tmp_path)
    assert len(crops) == 10
    for source in ("A/data/img", "B/data/test"):
        folds = [c.fold for c in crops if c.source == source]
        assert sorted(folds) == [0, 0, 0, 1, 1]
    zero = {c.name for c in real.in_fold(crops, 0)}
    one = {c.name for c in real.in_fold(crops, 1)}
    assert zero.isdisjoint(one) and len(zero | one) == 10
    assert [c.flag for c in crops if c.name == "A_0_x.jpg"] == ["blank"]
    assert real.labelled(tmp_path) == crops  # fixed: the same split every time


def test_paper_keeps_no_ink_but_keeps_the_ruled_lines() -> None:
    pink = np.array([228, 205, 205], np.float32)
    img = Image.fromarray(np.tile(pink, (67, 60, 1)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.line((0, 62, 59, 62), fill=(200, 50, 60), width=2)  # the red ruled line
    draw.line((10, 10, 50, 50), fill=(40, 60, 170), width=2)  # blue ballpoint
    draw.line((10, 50, 50, 12), fill=(30, 30, 35), width=2)  # black ink
    rgb = np.asarray(img)
    ink = (rgb[..., 2].astype(int) - rgb[..., 0] > 40) | (rgb.sum(axis=2) < 200)
    ink[60:65] = False
    cleaned = paper.clean(rgb).astype(np.float32)
    assert ink.sum() > 100
    # where the ink was, paper: within a few levels of the paper's colour
    assert np.abs(cleaned[ink] - pink).max() < 30
    assert (cleaned[62, :, 0] - cleaned[62, :, 2]).min() > 80  # the ruled line is still red


@pytest.mark.parametrize("seed", range(4))
def test_form_crop_is_a_scan_the_serving_path_reads(seed: int) -> None:
    rng = random.Random(seed)
    glyph = Image.new("L", (80, 90), 0)
    ImageDraw.Draw(glyph).line((5, 5, 75, 85), fill=255, width=6)
    jpeg = form.crop(glyph, rng, [], [glyph.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.height == form.HEIGHT and 26 <= img.width <= 104
    x = preprocess.prepare(jpeg)
    assert x.shape == (48, 48) and x.max() == 255  # ink there, stretched


def test_written_crops_are_cut_close_around_their_character() -> None:
    """As in most real crops, a written character fills the height and the crop's width
    follows the character's: a narrow character gives narrower crops than a wide one."""
    def widths(size: tuple[int, int]) -> list[int]:
        glyph = Image.new("L", size, 0)
        ImageDraw.Draw(glyph).rectangle((2, 2, size[0] - 3, size[1] - 3), outline=255, width=4)
        out = []
        for seed in range(40):
            jpeg = form.crop(glyph, random.Random(seed), [], [], close=0.7)
            out.append(Image.open(io.BytesIO(jpeg)).width)
        return out

    narrow, wide = widths((50, 100)), widths((120, 100))
    assert all(26 <= w <= 104 for w in narrow + wide)
    assert np.median(narrow) < 0.7 * np.median(wide)
