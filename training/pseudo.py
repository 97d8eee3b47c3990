"""Pseudo-labels for the unlabelled real crops: the model's answer where it is confident,
with "confident" chosen on labelled crops, never guessed.

    python -m training.pseudo --model X.onnx --check 1 --out training/work/pseudo_1.json

`--check k`: the labelled crops of fold k (unflagged) stand in for the unlabelled ones:
the threshold is the lowest top-1 probability at which the model's answers on them are
right at least `--precision` of the time (with at least `--min-count` of them above it).
A fold model checks on the fold it trains on, so the fold it is measured on plays no part
in its pseudo-labels; the shipped model checks on all (`--check all`). No `isnull`
pseudo-labels: the unlabelled crops are meant to teach the 800.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training import real
from training.evaluate_real import logits_of

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
import decision  # noqa: E402
import preprocess  # noqa: E402


def confident(model: Path, crops: list[real.Crop]) -> tuple[list[str], np.ndarray]:
    arrays = np.stack([preprocess.prepare(c.path.read_bytes()) for c in crops])
    logits, labels, _ = logits_of(model, arrays)
    best, p = decision.top_class(logits)
    return [labels[b] for b in best], p


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--check", default="all", help="the labelled fold to check on: 0, 1, all")
    parser.add_argument("--precision", type=float, default=0.9)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fold = None if args.check == "all" else int(args.check)
    check = [c for c in real.in_fold(real.labelled(), fold) if not c.flag]
    answers, p = confident(args.model, check)
    right = np.array([a == c.label for a, c in zip(answers, check, strict=True)])
    threshold = None
    for t in np.round(np.arange(0.05, 1.0, 0.01), 2):
        above = p >= t
        if above.sum() >= args.min_count and right[above].mean() >= args.precision:
            threshold = float(t)
            break
    pool = real.unlabelled()
    chosen: dict[str, str] = {}
    if threshold is not None:
        u_answers, u_p = confident(args.model, pool)
        chosen = {c.name: a for c, a, q in zip(pool, u_answers, u_p, strict=True)
                  if q >= threshold and a != "isnull"}
    args.out.write_text(json.dumps(chosen, ensure_ascii=False, indent=1), encoding="utf-8")
    above = p >= (threshold if threshold is not None else 2.0)
    print(json.dumps({
        "model": str(args.model), "checked_on": f"fold {args.check}, unflagged",
        "check_crops": len(check), "threshold": threshold,
        "check_above": int(above.sum()),
        "check_precision_above": float(right[above].mean()) if above.any() else None,
        "unlabelled": len(pool), "pseudo_labelled": len(chosen)}, indent=2), flush=True)


if __name__ == "__main__":
    main()
