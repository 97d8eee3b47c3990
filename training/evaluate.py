"""Evaluate the shipped ONNX model on the held-out sets, through the serving path.

    python -m training.evaluate [--model models/handwriting.onnx] [--work training/work]

Held out: the font cwTeX Kai (never trained on), stroke-drawn samples from seeds never
trained on, `isnull` examples made from characters outside the training half of the
outside pool. Answers as the function does (the `isnull` threshold from the model's
metadata included). Prints top-1 accuracy on each and both, `isnull` precision / recall /
F1, macro-F1 (the challenge's score), the same without the threshold, the form crops
held out (`form_report`) when they were generated, and the 20 most confused pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
import decision  # noqa: E402  # the serving code's answer rule, imported from its bundle


def top_class(model: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """The top class and its softmax probability for each image, the labels, and the
    model's `isnull` threshold (0 when it has none)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    best, confidence = [], []
    for i in range(0, len(x), 512):
        batch = x[i:i + 512, None, :, :].astype(np.float32) / 255.0
        b, c = decision.top_class(session.run(None, {"image": batch})[0])
        best.append(b)
        confidence.append(c)
    return (np.concatenate(best), np.concatenate(confidence), json.loads(meta["labels"]),
            decision.threshold_of(meta, model.name))


def predict(model: Path, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    best, confidence, labels, threshold = top_class(model, x)
    return decision.decide(best, confidence, len(labels) - 1, threshold), labels


def f1_scores(y: np.ndarray, p: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    tp = np.bincount(y[y == p], minlength=classes).astype(float)
    pred = np.bincount(p, minlength=classes).astype(float)
    true = np.bincount(y, minlength=classes).astype(float)
    precision = np.divide(tp, pred, out=np.zeros(classes), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros(classes), where=true > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(classes),
                   where=(precision + recall) > 0)
    return precision, recall, f1


def form_report(model: Path, path: Path) -> dict[str, object]:
    """The form crops held out (training/form.py through `form_specs("eval")`: the
    held-out font, outside characters of the evaluation half): top-1 of the answers on the
    800 written and printed, `isnull` precision and recall, and the recall of each
    `isnull` kind (blank box, red seal, printed text, an outside character written)."""
    data = np.load(path)
    y, kinds = data["y"].astype(np.int64), data["kind"]
    p, labels = predict(model, data["x"])
    null = len(labels) - 1
    chars = y != null
    out: dict[str, object] = {"images": len(y), "top1": float((p[chars] == y[chars]).mean())}
    for kind in ("form-pen", "form-print"):
        k = chars & (kinds == kind)
        out[f"top1_{kind}"] = float((p[k] == y[k]).mean()) if k.any() else None
    answered = p == null
    out["isnull"] = {"precision": float((y[answered] == null).mean()) if answered.any() else 0.0,
                     "recall": float(answered[~chars].mean()), "examples": int((~chars).sum())}
    out["isnull_recall_by_kind"] = {str(k): float(answered[~chars & (kinds == k)].mean())
                                    for k in sorted(set(kinds[~chars]))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "handwriting.onnx")
    parser.add_argument("--work", type=Path, default=ROOT / "training" / "work")
    args = parser.parse_args()
    sets = {name: np.load(args.work / f"eval_{name}.npz") for name in ("font", "strokes")}
    results: dict[str, object] = {}
    ys, bests, confidences = [], [], []
    labels: list[str] = []
    threshold = 0.0
    for data in sets.values():
        best, confidence, labels, threshold = top_class(args.model, data["x"])
        ys.append(data["y"].astype(np.int64))
        bests.append(best)
        confidences.append(confidence)
    null = len(labels) - 1
    results["null_threshold"] = threshold
    for name, y, best, confidence in zip(sets, ys, bests, confidences, strict=True):
        p = decision.decide(best, confidence, null, threshold)
        chars = y != null
        results[f"top1_{name}"] = float((p[chars] == y[chars]).mean())
    y = np.concatenate(ys)
    p = decision.decide(np.concatenate(bests), np.concatenate(confidences), null, threshold)
    chars = y != null
    results["top1_both"] = float((p[chars] == y[chars]).mean())
    precision, recall, f1 = f1_scores(y, p, len(labels))
    results["isnull"] = {"precision": precision[null], "recall": recall[null], "f1": f1[null],
                         "examples": int((y == null).sum())}
    present = np.bincount(y, minlength=len(labels)) > 0
    results["macro_f1"] = float(f1[present].mean())
    raw = np.concatenate(bests)  # the plain argmax, for comparison
    precision, recall, f1 = f1_scores(y, raw, len(labels))
    results["without_threshold"] = {
        "top1_both": float((raw[chars] == y[chars]).mean()),
        "isnull": {"precision": precision[null], "recall": recall[null], "f1": f1[null]},
        "macro_f1": float(f1[present].mean())}
    results["images"] = {"font": len(sets["font"]["y"]), "strokes": len(sets["strokes"]["y"])}
    if (args.work / "form_eval.npz").exists():
        results["form"] = form_report(args.model, args.work / "form_eval.npz")
    confused = Counter((labels[a], labels[b]) for a, b in zip(y, p, strict=True) if a != b)
    results["most_confused"] = [f"{a} -> {b}: {n}" for (a, b), n in confused.most_common(20)]
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
