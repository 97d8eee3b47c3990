"""Write a few held-out scans (JPEG) with their labels as test fixtures:
tests/data/handwriting/. They are test cases, not training data: cwTeX Kai (never trained
on) and stroke-drawn samples from a seed never trained on, plus blank and scribble
`isnull` cases.

    python -m training.samples
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from training import dataset, glyphs, scan
from training.labels import load_labels

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "handwriting"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    labels = load_labels()
    data = glyphs.StrokeData(dataset.STROKES)
    rng = random.Random(77)
    cases = []
    for i, char in enumerate(rng.sample(labels[:-1], 40)):
        r = random.Random(1000 + i)
        if i % 2 and data.medians(char):
            glyph, source = glyphs.render_strokes(data.medians(char) or [], r), "strokes"
        else:
            glyph, source = glyphs.render_font(char, *glyphs.VALIDATION_FONT), "cwTeXKai"
        name = f"{i:02d}-{source}.jpg"
        (OUT / name).write_bytes(scan.scan(glyph, r, []))
        cases.append({"file": name, "answer": char})
    for i, kind in enumerate(["blank", "blank", "scribble", "scribble"]):
        r = random.Random(2000 + i)
        glyph = glyphs.render_scribble(r) if kind == "scribble" else None
        name = f"null-{i}-{kind}.jpg"
        (OUT / name).write_bytes(scan.scan(glyph, r, []))
        cases.append({"file": name, "answer": "isnull"})
    (OUT / "cases.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(cases)} cases in {OUT}")


if __name__ == "__main__":
    main()
