"""Lower the `isnull` logit where the form crops say so (`shift_null_logit`), then choose
the `isnull` threshold: below it, the top class's softmax probability says the
model does not know the character, and the answer is `isnull`. The threshold is the one
with the best `isnull` F1 among those that cost the 800 characters at most 0.5 points of
top-1. Chosen on the calibration sets (training/dataset.py `calibration_specs`: fresh
seeds, and outside characters neither trained on nor evaluated on; and
`form_specs("calibration")`: form crops like the real scans, made the same way, so that
the threshold fits real writing's lower confidence), never on the evaluation sets;
written into the model's metadata as `null_threshold`, so that a model and its threshold
are swapped together.

    python -m training.calibrate [--model models/handwriting.onnx]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from training import real
from training.evaluate import decision, f1_scores, top_class
from training.evaluate_real import logits_of, preprocess

ROOT = Path(__file__).resolve().parent.parent
MAX_TOP1_LOSS = 0.005


def write_threshold(model: Path, value: str, out: Path | None = None) -> None:
    """Set the model's `null_threshold` metadata (replacing any), in place or into `out`."""
    proto = onnx.load(str(model))
    for entry in list(proto.metadata_props):
        if entry.key == decision.THRESHOLD_KEY:
            proto.metadata_props.remove(entry)
    entry = proto.metadata_props.add()
    entry.key, entry.value = decision.THRESHOLD_KEY, value
    onnx.save(proto, str(out or model))


FORM_NULL_KINDS = ("form-blank", "form-seal", "form-text")  # what the real forms' isnull are
MIN_KIND_RECALL = 0.9
SHIFT_KEY = "null_logit_shift"


def shift_null_logit(model: Path, work: Path, names: list[str]) -> float:
    """Lower the `isnull` logit (the head's bias for that class, in the ONNX file) as far as
    it helps the 800 characters of the form calibration crops while blank boxes, seals and
    printed text each still come back `isnull` at least 90% of the time (plain argmax).
    Why: trained on outside characters as `isnull`, the model calls real writing it reads
    badly `isnull` (on the real crops, most of its answers were `isnull` while the right
    character was often its best among the 800); the threshold after this step still
    answers `isnull` where the model is unsure. Returns the shift (0: none)."""
    forms = [np.load(work / n) for n in names if "kind" in np.load(work / n).files]
    if not forms:
        return 0.0
    x = np.concatenate([d["x"] for d in forms])
    y = np.concatenate([d["y"] for d in forms]).astype(np.int64)
    kinds = np.concatenate([d["kind"] for d in forms])
    logits, labels, _ = logits_of(model, x)
    null = len(labels) - 1
    chars = y != null
    rows = []
    for shift in np.arange(0.0, 8.01, 0.5):
        shifted = logits.copy()
        shifted[:, null] -= shift
        best = shifted.argmax(axis=1)
        recall = min(float((best[kinds == k] == null).mean()) for k in FORM_NULL_KINDS
                     if (kinds == k).any())
        if recall >= MIN_KIND_RECALL:
            rows.append((float((best[chars] == y[chars]).mean()), -float(shift)))
    if not rows:
        return 0.0
    shift = -max(rows)[1]
    apply_shift(model, shift)
    return float(shift)


def shift_on_real(reference: Path, fold: str) -> float:
    """The `isnull` logit shift that answers best on the unflagged labelled real crops of
    `fold` (0, 1 or all), as `reference` reads them (plain argmax; the smallest shift
    among the best). `reference` is a model that never trained on those crops (the one
    fine-tuned on generated data only), so that a fold model takes its shift from the
    crops it trains on, never from the fold it is measured on."""
    held = None if fold == "all" else int(fold)
    crops = [c for c in real.in_fold(real.labelled(), held) if not c.flag]
    x = np.stack([preprocess.prepare(c.path.read_bytes()) for c in crops])
    logits, labels, _ = logits_of(reference, x)
    index = {c: i for i, c in enumerate(labels)}
    y = np.array([index.get(str(c.label), -1) for c in crops])
    null = len(labels) - 1
    rows = []
    for shift in np.arange(0.0, 8.01, 0.5):
        shifted = logits.copy()
        shifted[:, null] -= shift
        rows.append((float((shifted.argmax(axis=1) == y).mean()), -float(shift)))
    return -max(rows)[1]


def apply_shift(model: Path, shift: float) -> None:
    """Subtract `shift` from the `isnull` logit (the head's bias), noted in the metadata."""
    proto = onnx.load(str(model))
    null = len(json.loads(next(e.value for e in proto.metadata_props if e.key == "labels"))) - 1
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    init = next(i for i in proto.graph.initializer if i.name == gemm.input[2])
    bias = numpy_helper.to_array(init).copy()
    bias[null] -= shift
    init.CopyFrom(numpy_helper.from_array(bias, init.name))
    previous = 0.0  # a model calibrated before: the shifts add up
    for entry in list(proto.metadata_props):
        if entry.key == SHIFT_KEY:
            previous = float(entry.value)
            proto.metadata_props.remove(entry)
    entry = proto.metadata_props.add()
    entry.key, entry.value = SHIFT_KEY, f"{previous + shift:.2f}"
    onnx.save(proto, str(model))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "handwriting.onnx")
    parser.add_argument("--work", type=Path, default=ROOT / "training" / "work")
    parser.add_argument("--sets", nargs="+", default=["calibration.npz", "form_calibration.npz"],
                        help="calibration sets in --work (those present are used together)")
    parser.add_argument("--no-shift", action="store_true",
                        help="keep the isnull logit as trained (only choose the threshold)")
    parser.add_argument("--shift-on", default=None, help="choose the isnull logit shift on "
                        "the labelled real crops of this fold (0, 1, all) instead")
    parser.add_argument("--shift-reference", type=Path,
                        default=ROOT / "training" / "work" / "generated.onnx",
                        help="the model (never trained on real crops) that --shift-on reads with")
    args = parser.parse_args()
    names = [name for name in args.sets if (args.work / name).exists()]
    if args.shift_on is not None:
        shift = shift_on_real(args.shift_reference, args.shift_on)
        apply_shift(args.model, shift)
    else:
        shift = 0.0 if args.no_shift else shift_null_logit(args.model, args.work, names)
    sets = [np.load(args.work / name) for name in args.sets if (args.work / name).exists()]
    if not sets:
        raise SystemExit(f"none of {args.sets} in {args.work}")
    y = np.concatenate([d["y"] for d in sets]).astype(np.int64)
    best, confidence, labels, _ = top_class(args.model, np.concatenate([d["x"] for d in sets]))
    null = len(labels) - 1
    chars = y != null
    rows = []
    for threshold in np.round(np.arange(0.0, 0.91, 0.01), 2):
        p = decision.decide(best, confidence, null, float(threshold))
        _, _, f1 = f1_scores(y, p, len(labels))
        rows.append((float(f1[null]), float((p[chars] == y[chars]).mean()), float(threshold)))
    plain = rows[0]
    # the best isnull F1 that costs the 800 characters at most 0.5 points of top-1 (the
    # tolerance the model is held to for quantization as well); ties: the higher threshold
    f1_null, top1, threshold = max(r for r in rows if r[1] >= plain[1] - MAX_TOP1_LOSS)
    write_threshold(args.model, f"{threshold:.2f}")
    print(json.dumps({
        "sets": [name for name in args.sets if (args.work / name).exists()],
        "calibration_images": len(y), "isnull_examples": int((~chars).sum()),
        "null_logit_shift": shift, "null_threshold": threshold,
        "calibration_isnull_f1": {"without": plain[0], "with": f1_null},
        "calibration_top1": {"without": plain[1], "with": top1},
    }, indent=2))


if __name__ == "__main__":
    main()
