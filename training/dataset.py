"""Deterministic (seeded) generation of the training and evaluation sets.

Every sample is a JPEG made by `scan.scan`, then decoded by the serving preprocessing
(`functions/handwriting/preprocess.py`) into the model's input; only that array and the
label are kept (training/work/, never committed).

    python -m training.dataset --out training/work [--per-source 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import form, glyphs, paper, scan
from training.labels import NULL, load_labels

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
import preprocess  # noqa: E402  # the serving code, imported from its bundle

STROKES = ROOT / "training" / "work" / "hanzi-writer-data" / "package"
PAPERS = ROOT / "training" / "work" / "papers.npz"  # training/paper.py; drawn paper without


@dataclass(frozen=True)
class Spec:
    label: int
    kind: str  # font | strokes | blank | scribble | fragment-font | fragment-strokes, or a
    # form crop (training/form.py): form-pen | form-print | form-blank | form-seal | form-text
    char: str
    font: int  # index into TRAIN_FONTS; -1: the validation font
    seed: int
    split: str  # "train" or "eval": which fonts and neighbours may appear


_state: dict[str, object] = {}


def _font(i: int) -> tuple[str, str | None]:
    return glyphs.VALIDATION_FONT if i < 0 else glyphs.TRAIN_FONTS[i]


def _ink(kind: str, char: str, font: int, rng: random.Random) -> object:
    data = _state["strokes"]
    assert isinstance(data, glyphs.StrokeData)
    if kind.endswith("strokes"):
        medians = data.medians(char)
        assert medians is not None
        return glyphs.render_strokes(medians, rng)
    return glyphs.render_font(char, *_font(font))


def _pen(char: str, rng: random.Random) -> object:
    data = _state["strokes"]
    assert isinstance(data, glyphs.StrokeData)
    medians = data.medians(char)
    v5 = _state.get("style") == "v5"
    return glyphs.render_strokes(medians, rng, pen=True, v5=v5) if medians else None


def make_form(spec: Spec, rng: random.Random) -> bytes:
    """A crop like the real form scans (training/form.py)."""
    chars = _state["chars"]
    papers = _state["papers"]
    assert isinstance(chars, list) and isinstance(papers, list)
    fonts = [-1] if spec.split == "eval" else list(range(len(glyphs.TRAIN_FONTS)))
    f = spec.font

    def printed(c: str) -> object:
        return glyphs.render_font(c, *_font(f)) if glyphs.has_glyph(*_font(f), c) else None

    glyph = None
    neighbours: list[object] = []
    seal_chars = text = None
    if spec.kind == "form-pen":
        glyph = _pen(spec.char, rng)
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            neighbours.append(_pen(rng.choice(chars), rng))
        if rng.random() < 0.06:
            seal_chars = [printed(c) for c in rng.sample(chars, rng.randint(1, 4))]
    elif spec.kind == "form-print":
        glyph = printed(spec.char)
        if rng.random() < 0.6:
            neighbours.append(printed(rng.choice(chars)))
    elif spec.kind == "form-blank":
        for _ in range(rng.choice((0, 1, 1, 2))):
            neighbours.append(_pen(rng.choice(chars), rng))
    elif spec.kind == "form-seal":
        f = rng.choice(fonts)
        seal_chars = [printed(c) for c in rng.sample(chars, rng.randint(1, 4))]
    elif spec.kind == "form-text":
        text = [printed(c) for c in spec.char]
    return form.crop(glyph, rng, papers, [n for n in neighbours if n is not None],  # type: ignore[misc]
                     printed=spec.kind == "form-print",
                     seal_chars=[c for c in seal_chars if c is not None] if seal_chars else None,  # type: ignore[misc]
                     text=[c for c in text if c is not None] if text else None,  # type: ignore[misc]
                     close=0.7 if _state.get("style") == "v5" else 0.0)


def make(spec: Spec) -> tuple[np.ndarray, int]:
    if "strokes" not in _state:
        _state["strokes"] = glyphs.StrokeData(STROKES)
        _state["chars"] = load_labels()[:-1]
        _state["papers"] = paper.load(PAPERS) if PAPERS.exists() else []
    rng = random.Random(spec.seed)
    if spec.kind.startswith("form-"):
        return preprocess.prepare(make_form(spec, rng)), spec.label
    chars = _state["chars"]
    assert isinstance(chars, list)
    glyph = None
    if spec.kind in ("font", "strokes"):
        glyph = _ink(spec.kind, spec.char, spec.font, rng)
    elif spec.kind == "scribble":
        glyph = glyphs.render_scribble(rng)
    elif spec.kind.startswith("fragment"):
        glyph = scan.fragment(_ink(spec.kind, spec.char, spec.font, rng), rng)  # type: ignore[arg-type]
    neighbours = []
    if rng.random() < 0.35:
        other = rng.choice(chars)
        fonts = [-1] if spec.split == "eval" else list(range(len(glyphs.TRAIN_FONTS)))
        f = rng.choice(fonts)
        if glyphs.has_glyph(*_font(f), other):
            neighbours.append(glyphs.render_font(other, *_font(f)))
    jpeg = scan.scan(glyph, rng, neighbours)  # type: ignore[arg-type]
    return preprocess.prepare(jpeg), spec.label


def outside_chars(labels: list[str]) -> list[str]:
    """CJK characters hanzi-writer-data can draw that are not among the 800."""
    inside = set(labels)
    data = glyphs.StrokeData(STROKES)
    return [c for c in data.chars() if "\u4e00" <= c <= "\u9fff" and c not in inside]


def _outside(char: str, null: int, fonts: list[int], rng: random.Random,
             split: str) -> list[Spec]:
    """An `isnull` character outside the 800: printed in one of `fonts` (if it has the
    glyph) and drawn from strokes."""
    f = rng.choice(fonts)
    printed = ([Spec(null, "font", char, f, rng.getrandbits(48), split)]
               if glyphs.has_glyph(*_font(f), char) else [])
    return [*printed, Spec(null, "strokes", char, 0, rng.getrandbits(48), split)]


def specs(split: str, per_source: int, seed: int) -> list[Spec]:
    labels = load_labels()
    chars, null = labels[:-1], labels.index(NULL)
    data = glyphs.StrokeData(STROKES)
    rng = random.Random(seed)
    out: list[Spec] = []

    def seed_() -> int:
        return rng.getrandbits(48)

    fonts = range(len(glyphs.TRAIN_FONTS)) if split == "train" else [-1]
    outside = outside_chars(labels)[0 if split == "train" else 1::2]  # disjoint halves
    for label, char in enumerate(chars):
        have = [f for f in fonts if glyphs.has_glyph(*_font(f), char)]
        for f in have:
            out += [Spec(label, "font", char, f, seed_(), split) for _ in range(per_source)]
        if split == "eval":
            continue  # the held-out stroke set is built separately (other seeds)
        strokes = per_source * len(glyphs.TRAIN_FONTS) if data.medians(char) else 0
        out += [Spec(label, "strokes", char, 0, seed_(), split) for _ in range(strokes)]
        if not strokes:  # no stroke data (10 rare name characters): more from the fonts
            for f in have:
                out += [Spec(label, "font", char, f, seed_(), split) for _ in range(per_source)]
    # isnull: every character of this split's half of the outside pool, printed and
    # written; blank paper, scribbles and fragments
    n_outside = len(outside) // 2 if split == "train" else 300
    n_other = 600 if split == "train" else 60
    for c in outside[:n_outside]:
        out += _outside(c, null, list(fonts), rng, split)
    for _ in range(n_other):
        out.append(Spec(null, "blank", "", 0, seed_(), split))
        out.append(Spec(null, "scribble", "", 0, seed_(), split))
        c = rng.choice(chars + outside)
        if data.medians(c):
            out.append(Spec(null, "fragment-strokes", c, 0, seed_(), split))
    return out


def stroke_eval_specs(per_char: int, seed: int) -> list[Spec]:
    """Stroke-drawn samples of the 800 (those with stroke data), from seeds never trained on."""
    labels = load_labels()
    data = glyphs.StrokeData(STROKES)
    rng = random.Random(seed)
    return [Spec(label, "strokes", c, 0, rng.getrandbits(48), "eval")
            for label, c in enumerate(labels[:-1]) if data.medians(c)
            for _ in range(per_char)]


def calibration_specs(seed: int) -> list[Spec]:
    """For choosing the `isnull` confidence threshold (training/calibrate.py), apart from
    both training and evaluation: the 800 drawn from strokes and printed in training fonts
    with fresh seeds, and `isnull` from outside characters of the training half that the
    training set left unused (the evaluation half stays unseen), plus blank, scribble and
    fragment scans."""
    labels = load_labels()
    chars, null = labels[:-1], labels.index(NULL)
    data = glyphs.StrokeData(STROKES)
    rng = random.Random(seed)
    fonts = range(len(glyphs.TRAIN_FONTS))
    out: list[Spec] = []
    for label, char in enumerate(chars):
        if data.medians(char):
            out += [Spec(label, "strokes", char, 0, rng.getrandbits(48), "train")
                    for _ in range(2)]
        f = rng.choice([f for f in fonts if glyphs.has_glyph(*_font(f), char)])
        out.append(Spec(label, "font", char, f, rng.getrandbits(48), "train"))
    train_half = outside_chars(labels)[0::2]
    for c in train_half[len(train_half) // 2:][:400]:  # not used by `specs("train")`
        out += _outside(c, null, list(fonts), rng, "train")
    for kind in ("blank", "scribble", "fragment-strokes"):
        for _ in range(80):
            c = rng.choice(chars + train_half)
            if kind != "fragment-strokes" or data.medians(c):
                out.append(Spec(null, kind, c, 0, rng.getrandbits(48), "train"))
    return out


def form_specs(split: str, pens: int, prints: int, nulls: int, seed: int) -> list[Spec]:
    """Form crops (training/form.py): each of the 800 written `pens` times (those with
    stroke data; the others printed instead) and printed `prints` times, and `nulls` of
    each `isnull` kind: blank boxes, red seals, printed form text of outside characters,
    outside characters written. `split` "train" takes the training fonts and the first
    half of the outside pool's training half (as `specs`); "calibration" the same fonts and
    the other half of the training half; "eval" the held-out font and the evaluation half."""
    labels = load_labels()
    chars, null = labels[:-1], labels.index(NULL)
    data = glyphs.StrokeData(STROKES)
    rng = random.Random(seed)
    fonts = [-1] if split == "eval" else list(range(len(glyphs.TRAIN_FONTS)))
    pool = outside_chars(labels)
    half = pool[1::2] if split == "eval" else pool[0::2]
    outside = half[len(half) // 2:] if split == "calibration" else half
    kind_split = "eval" if split == "eval" else "train"
    out: list[Spec] = []
    def printed_in(char: str) -> int | None:
        """A font that has the character: a random one, else the first that has it (a
        font's glyph check renders it: done only as far as needed)."""
        f = rng.choice(fonts)
        if glyphs.has_glyph(*_font(f), char):
            return f
        return next((f for f in fonts if glyphs.has_glyph(*_font(f), char)), None)

    for label, char in enumerate(chars):
        written = pens if data.medians(char) else 0
        out += [Spec(label, "form-pen", char, 0, rng.getrandbits(48), kind_split)
                for _ in range(written)]
        for _ in range(prints + pens - written):
            f = printed_in(char)
            if f is not None:
                out.append(Spec(label, "form-print", char, f, rng.getrandbits(48), kind_split))
    drawable = [c for c in outside if data.medians(c)]
    for _ in range(nulls):
        out.append(Spec(null, "form-blank", "", 0, rng.getrandbits(48), kind_split))
        out.append(Spec(null, "form-seal", "", 0, rng.getrandbits(48), kind_split))
        f = rng.choice(fonts)
        text = "".join(c for c in rng.sample(outside, rng.randint(1, 4))
                       if glyphs.has_glyph(*_font(f), c))
        out.append(Spec(null, "form-text", text or outside[0], f, rng.getrandbits(48),
                        kind_split))
        out.append(Spec(null, "form-pen", rng.choice(drawable), 0, rng.getrandbits(48),
                        kind_split))
    return out


def generate(items: list[Spec], out: Path, workers: int = 2) -> None:
    started = time.time()
    x = np.zeros((len(items), preprocess.SIZE, preprocess.SIZE), dtype=np.uint8)
    y = np.zeros(len(items), dtype=np.int16)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for i, (arr, label) in enumerate(pool.imap(make, items, chunksize=256)):
            x[i], y[i] = arr, label
            if i % 10_000 == 0:
                print(f"  {out.name}: {i:,}/{len(items):,} ({time.time() - started:.0f} s)",
                      flush=True)
    np.savez(out, x=x, y=y, kind=np.array([s.kind for s in items]))
    print(f"{out}: {len(items):,} samples in {time.time() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "work")
    parser.add_argument("--per-source", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--form", action="store_true",
                        help="the form crops (fine-tuning, calibration, evaluation) and a "
                        "replay sample of the synthetic training set")
    parser.add_argument("--pens", type=int, default=10)
    parser.add_argument("--prints", type=int, default=2)
    parser.add_argument("--nulls", type=int, default=600, help="of each isnull kind")
    parser.add_argument("--replay", type=int, default=6_000)
    parser.add_argument("--more", type=int, default=0, help="with --form: also "
                        "form_more.npz, this many more written crops per character (fresh "
                        "seeds; a quarter as many printed, 400 of each isnull kind)")
    parser.add_argument("--more-out", default="form_more.npz")
    parser.add_argument("--more-seed", type=int, default=31)
    parser.add_argument("--style", choices=("v4", "v5"), default="v4", help="the written "
                        "form crops: v4's, or v5's (large, dark, cut close, proportions bent)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    _state["style"] = args.style  # before the workers fork
    if args.form:  # (a set already there is kept: delete it to make it again)
        sets = {
            "form_eval.npz": lambda: form_specs("eval", 1, 1, 250, seed=22),
            "form_calibration.npz": lambda: form_specs("calibration", 2, 1, 250, seed=23),
            "form_train.npz": lambda: form_specs("train", args.pens, args.prints, args.nulls,
                                                 seed=21),
            "replay.npz": lambda: random.Random(24).sample(specs("train", 1, seed=1),
                                                           args.replay)}
        if args.more:
            sets[args.more_out] = lambda: form_specs("train", args.more, args.more // 4, 400,
                                                     seed=args.more_seed)
        for name, make_specs in sets.items():
            if not (args.out / name).exists():
                generate(make_specs(), args.out / name, args.workers)
        return
    generate(specs("eval", 4, seed=2), args.out / "eval_font.npz", args.workers)
    generate(stroke_eval_specs(4, seed=3), args.out / "eval_strokes.npz", args.workers)
    generate(calibration_specs(seed=5), args.out / "calibration.npz", args.workers)
    if not args.eval_only:
        generate(specs("train", args.per_source, seed=1), args.out / "train.npz", args.workers)


if __name__ == "__main__":
    main()
