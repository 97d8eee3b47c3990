"""A sheet of real form crops and generated ones side by side, for docs/model.md.

    python -m training.sheet [--out docs/real_vs_generated.png]

Top rows: real crops of ../shared/real-dev (unlabelled ones, as they are); bottom rows:
crops of training/form.py as the training set makes them (seeded). A picture for the
documentation, not training data.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

from training import dataset, real

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "real_vs_generated.png")
    parser.add_argument("--columns", type=int, default=12)
    parser.add_argument("--rows", type=int, default=3)
    args = parser.parse_args()
    n = args.columns * args.rows
    rng = random.Random(11)
    reals = [Image.open(c.path).convert("RGB") for c in rng.sample(real.unlabelled(), n)]
    specs = dataset.form_specs("train", 4, 1, 20, seed=99)  # the mix of form_v5.npz
    picked = rng.sample([s for s in specs if s.label != 800], n * 3 // 4) + \
        rng.sample([s for s in specs if s.label == 800], n - n * 3 // 4)
    rng.shuffle(picked)
    dataset.make(picked[0])  # loads the stroke data and papers
    dataset._state["style"] = "v5"  # the generator's latest crops
    made = []
    for s in picked:
        made.append(Image.open(io.BytesIO(dataset.make_form(s, random.Random(s.seed)))))
    cell_w, cell_h, gap = 108, 67, 18
    img = Image.new("RGB", (args.columns * cell_w, 2 * args.rows * cell_h + 2 * gap), "white")
    draw = ImageDraw.Draw(img)
    draw.text((4, 2), "real (unlabelled crops of real-dev)", fill="black")
    draw.text((4, args.rows * cell_h + gap + 2), "generated (training/form.py)", fill="black")
    for i, crop in enumerate(reals):
        img.paste(crop, ((i % args.columns) * cell_w, gap + (i // args.columns) * cell_h))
    for i, crop in enumerate(made):
        img.paste(crop, ((i % args.columns) * cell_w,
                         2 * gap + (args.rows + i // args.columns) * cell_h))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=128).save(args.out, optimize=True)  # a small file for the docs
    print(f"{args.out}: {args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
