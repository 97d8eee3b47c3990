"""Measure a model on the labelled real crops of ../shared/real-dev, through the serving
path (preprocess.prepare, the model, decision.decide with the threshold in its metadata).

    python -m training.evaluate_real [--model models/handwriting.onnx] [--fold 0|1]
        [--sheet training/work/real_errors.png]

Prints, on all crops and on those without a visual flag (index.json's `visual_flags`:
crops whose official label looks wrong), in all and per source folder: the answer
accuracy (what the API answers, `isnull` threshold included), top-1 (plain argmax) and
top-5, and how many answers are `isnull`. `--fold k` keeps only fold k's crops
(training/real.py): the crops a model fine-tuned on the other fold never saw. Writes a
PNG sheet of the wrong answers with the truth and the answer under each crop.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFont

from training import real

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
import decision  # noqa: E402  # the serving code's answer rule, imported from its bundle
import preprocess  # noqa: E402

SHEET_FONTS = ("NotoSansCJK-Regular.ttc", "wqy-zenhei.ttc", "uming.ttc")


def logits_of(model: Path, arrays: np.ndarray) -> tuple[np.ndarray, list[str], float]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    out = [session.run(None, {"image": arrays[i:i + 256, None].astype(np.float32) / 255.0})[0]
           for i in range(0, len(arrays), 256)]
    return (np.concatenate(out), json.loads(meta["labels"]),
            decision.threshold_of(meta, model.name))


def scores(rows: Sequence[dict[str, object]]) -> dict[str, object]:
    n = len(rows)
    if not n:
        return {"crops": 0}
    return {"crops": n,
            "answer": round(sum(bool(r["answer_ok"]) for r in rows) / n, 4),
            "top1": round(sum(bool(r["top1_ok"]) for r in rows) / n, 4),
            "top5": round(sum(bool(r["top5_ok"]) for r in rows) / n, 4),
            "answered_isnull": sum(r["answer"] == "isnull" for r in rows)}


def evaluate(model: Path, crops: list[real.Crop]) -> list[dict[str, object]]:
    arrays = np.stack([preprocess.prepare(c.path.read_bytes()) for c in crops])
    logits, labels, threshold = logits_of(model, arrays)
    best, confidence = decision.top_class(logits)
    answers = decision.decide(best, confidence, len(labels) - 1, threshold)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    rows = []
    for c, a, b, p, t5 in zip(crops, answers, best, confidence, top5, strict=True):
        rows.append({"name": c.name, "truth": c.label, "source": c.source, "flag": c.flag,
                     "fold": c.fold, "answer": labels[a], "top1": labels[b],
                     "confidence": round(float(p), 3), "top5": [labels[i] for i in t5],
                     "answer_ok": labels[a] == c.label, "top1_ok": labels[b] == c.label,
                     "top5_ok": c.label in [labels[i] for i in t5]})
    return rows


def report(rows: list[dict[str, object]]) -> dict[str, object]:
    unflagged = [r for r in rows if not r["flag"]]
    out: dict[str, object] = {"all": scores(rows), "unflagged": scores(unflagged)}
    for source in sorted({str(r["source"]) for r in rows}):
        out[source] = {"all": scores([r for r in rows if r["source"] == source]),
                       "unflagged": scores([r for r in unflagged if r["source"] == source])}
    return out


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in SHEET_FONTS:
        found = sorted(Path("/usr/share/fonts").rglob(name))
        if found:
            return ImageFont.truetype(str(found[0]), size)
    return ImageFont.load_default()


def sheet(rows: list[dict[str, object]], crops: dict[str, real.Crop], out: Path,
          columns: int = 10, scale: int = 2) -> None:
    """The wrong answers: each crop, `truth -> answer` and the top-1 probability under it
    (a flagged crop's caption ends with `*`)."""
    wrong = [r for r in rows if not r["answer_ok"]]
    cell_w, cell_h, caption = 100 * scale, 67 * scale, 22 * scale
    lines = max(1, -(-len(wrong) // columns))
    img = Image.new("RGB", (columns * cell_w, lines * (cell_h + caption)), "white")
    draw, font = ImageDraw.Draw(img), _font(11 * scale)
    for i, r in enumerate(wrong):
        x, y = (i % columns) * cell_w, (i // columns) * (cell_h + caption)
        crop = Image.open(crops[str(r["name"])].path).convert("RGB")
        w = min(cell_w - 4, crop.width * scale)
        img.paste(crop.resize((w, cell_h)), (x + 2, y))
        text = f"{r['truth']}→{r['answer']} {r['confidence']:.2f}{' *' if r['flag'] else ''}"
        draw.text((x + 4, y + cell_h + 2), text, fill="black", font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "handwriting.onnx")
    parser.add_argument("--fold", type=int, choices=range(real.FOLDS), default=None)
    parser.add_argument("--sheet", type=Path, default=ROOT / "training" / "work" /
                        "real_errors.png")
    parser.add_argument("--rows", type=Path, default=None, help="write each crop's answer here")
    args = parser.parse_args()
    crops = list(real.in_fold(real.labelled(), args.fold))
    rows = evaluate(args.model, crops)
    result = {"model": str(args.model), "fold": args.fold, **report(rows)}
    print(json.dumps(result, ensure_ascii=False, indent=2))
    sheet(rows, {c.name: c for c in crops}, args.sheet)
    print(f"errors sheet: {args.sheet}", file=sys.stderr)
    if args.rows:
        args.rows.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
