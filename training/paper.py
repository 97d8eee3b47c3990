"""Blank form paper from the unlabelled real crops: the ink taken out by colour, so that a
generated training image gets a real scan's paper, grain, ruled lines and edge bars but no
real character's ink.

Of each crop only these are kept: the paper (every other pixel is filled from the paper
around it, plus grain of the measured strength), the red ruled lines (rows that are red
across most of the width) and dark edge bars (columns dark from top to bottom). Ink of
any colour, seals, printed text and the neighbours' strokes go: blue or dark pixels and
red pixels off the ruled rows, each grown by 2 px, are filled in.

    python -m training.paper   # writes training/work/papers.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training import real

ROOT = Path(__file__).resolve().parent.parent


def _kernel(n: int, radius: float) -> np.ndarray:
    i = np.arange(n, dtype=np.float32)
    return np.exp(-0.5 * ((i[:, None] - i[None, :]) / radius) ** 2)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian weighting of a float [H, W] array (unnormalised: used as a ratio of two
    blurs, so the edges need no care)."""
    return _kernel(a.shape[0], radius) @ a @ _kernel(a.shape[1], radius).T


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    img = Image.fromarray((mask * 255).astype(np.uint8), "L")
    return np.asarray(img.filter(ImageFilter.MaxFilter(2 * px + 1))) > 0


def clean(rgb: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] crop -> the same paper without its ink."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    background = np.asarray(Image.fromarray(luma.astype(np.uint8), "L").filter(
        ImageFilter.MedianFilter(9)), dtype=np.float32)
    paper_blue = float(np.median(b - r))
    red = (r - np.maximum(g, b)) > 30
    dark = luma < background - 16
    blue = (b - r) > paper_blue + 18
    ruled = red.mean(axis=1) > 0.5  # a red ruled line: red across most of the row
    bar = (luma < 90).mean(axis=0) > 0.9  # a dark edge bar: dark down the whole column
    keep = (red & ruled[:, None]) | bar[None, :]
    remove = _grow((red | dark | blue) & ~keep, 2) & ~keep
    weight = (~remove & ~keep).astype(np.float32)  # fill from plain paper only
    out = f.copy()
    for c in range(3):
        filled = np.zeros_like(luma)
        have = np.zeros_like(luma)
        for radius in (3.0, 8.0, 20.0):  # wider until every hole has paper around it
            num, den = _blur(f[..., c] * weight, radius), _blur(weight, radius)
            fresh = (have == 0) & (den > 0.05)
            filled[fresh] = num[fresh] / den[fresh]
            have[fresh] = 1
        filled[have == 0] = float(np.median(f[..., c][weight > 0])) if weight.any() else 230
        out[..., c] = np.where(remove, filled, f[..., c])
    # grain where the ink was: the paper's own (its deviation from the local mean)
    local = _blur(luma * weight, 3) / np.maximum(_blur(weight, 3), 1e-3)
    grain = float(np.std((luma - local)[weight > 0])) if weight.any() else 3.0
    noise = np.random.default_rng(int(rgb.sum()) % 2**32).normal(0, min(grain, 8), luma.shape)
    out += np.where(remove, noise, 0)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "work" / "papers.npz")
    args = parser.parse_args()
    papers = [clean(np.asarray(Image.open(c.path).convert("RGB"))) for c in real.unlabelled()]
    widths = np.array([p.shape[1] for p in papers])
    heights = np.array([p.shape[0] for p in papers])
    flat = np.concatenate([p.reshape(-1, 3) for p in papers])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, pixels=flat, widths=widths, heights=heights)
    print(f"{args.out}: {len(papers)} papers")


def load(path: Path) -> list[np.ndarray]:
    data = np.load(path)
    out, at = [], 0
    for h, w in zip(data["heights"], data["widths"], strict=True):
        out.append(data["pixels"][at:at + h * w].reshape(h, w, 3))
        at += h * w
    return out


if __name__ == "__main__":
    main()
