"""Fine-tune a shipped model (its ONNX weights) on the form crops, and on real crops.

    python -m training.finetune --data form_train.npz replay.npz --epochs 2 --out X.onnx
    python -m training.finetune --init X.onnx --real-fold 0 --pseudo pseudo.json ...

The ONNX export folded each BatchNorm into its convolution, so the weights come back as
convolutions with a bias: loaded into the same network with each BatchNorm set to pass
its input plus that bias, and kept in inference mode (frozen statistics) while the weights
train. The architecture is the one shipped (training/model.py), so the cost per image
does not change.

Real crops (training/real.py): `--real-fold k` trains on the labelled crops of the other
fold (never on fold k's, which the figures are measured on), `--real-fold all` on every
labelled crop (the model shipped); `--pseudo` adds unlabelled crops with the labels
training/pseudo.py chose. Each real crop is shown in `--real-copies` variants (moved,
turned, scaled, recoloured, recompressed: training/augment.py) among the generated images.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from training import augment, real
from training.labels import load_labels
from training.model import HandwritingNet
from training.train import accuracy, as_input, export, shift

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "training" / "work"
sys.path.insert(0, str(ROOT / "functions" / "handwriting"))
import preprocess  # noqa: E402


def from_onnx(path: Path, classes: int) -> HandwritingNet:
    """The network with the ONNX file's weights (BatchNorm folded into the convolutions)."""
    proto = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    model = HandwritingNet(classes)
    modules = list(model.features.modules())
    pairs = [(m, modules[i + 1]) for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    if len(pairs) != len(convs):
        raise ValueError(f"{path}: {len(convs)} convolutions, the network has {len(pairs)}")
    with torch.no_grad():
        for node, (conv, bn) in zip(convs, pairs, strict=True):
            assert isinstance(bn, nn.BatchNorm2d)
            conv.weight.copy_(torch.from_numpy(init[node.input[1]].copy()))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(init[node.input[2]].copy()))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
        linear = model.head[1]
        assert isinstance(linear, nn.Linear)
        linear.weight.copy_(torch.from_numpy(init[gemm.input[1]].copy()))
        linear.bias.copy_(torch.from_numpy(init[gemm.input[2]].copy()))
    return model


def real_set(fold: str, pseudo: Path | None, copies: int, seed: int,
             labels: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Augmented copies of the real crops to train on: the labelled crops outside `fold`
    (all when "all"; none when "none") and the pseudo-labelled ones."""
    index = {c: i for i, c in enumerate(labels)}
    items: list[tuple[bytes, int]] = []
    if fold != "none":
        held = None if fold == "all" else int(fold)
        for c in real.labelled():
            if c.fold != held and c.label in index and not c.flag:
                items.append((c.path.read_bytes(), index[c.label]))
    n_labelled = len(items)
    if pseudo:
        folder = real.real_dir() / "unlabeled"
        for name, label in json.loads(pseudo.read_text(encoding="utf-8")).items():
            items.append(((folder / name).read_bytes(), index[label]))
    rng = random.Random(seed)
    xs, ys = [], []
    for data, label in items:
        for _ in range(copies):
            xs.append(preprocess.prepare(augment.vary(data, rng)))
            ys.append(label)
    if not xs:
        return np.zeros((0, 48, 48), np.uint8), np.zeros(0, np.int64), 0
    return np.stack(xs), np.array(ys, np.int64), n_labelled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--init", type=Path, default=ROOT / "models" / "handwriting.onnx")
    parser.add_argument("--data", nargs="*", default=["form_train.npz", "replay.npz"])
    parser.add_argument("--sample", type=int, default=0,
                        help="draw this many generated images (0: all of them)")
    parser.add_argument("--real-fold", default="none", help="0, 1, all or none")
    parser.add_argument("--pseudo", type=Path, default=None)
    parser.add_argument("--real-copies", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    labels = load_labels()
    xs, ys = [], []
    for name in args.data:
        d = np.load(WORK / name)
        xs.append(d["x"])
        ys.append(d["y"].astype(np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    if args.sample and args.sample < len(x):
        pick = np.random.default_rng(args.seed).choice(len(x), args.sample, replace=False)
        x, y = x[pick], y[pick]
    rx, ry, n_labelled = real_set(args.real_fold, args.pseudo, args.real_copies, args.seed,
                                  labels)
    print(f"generated {len(x):,}; real: {n_labelled} labelled crops and "
          f"{len(rx) // max(1, args.real_copies) - n_labelled} pseudo-labelled, "
          f"{len(rx):,} variants", flush=True)
    tx = torch.from_numpy(np.concatenate([x, rx]))
    ty = torch.from_numpy(np.concatenate([y, ry]))
    model = from_onnx(args.init, len(labels)).to(memory_format=torch.channels_last)
    xe = torch.from_numpy(np.load(WORK / "form_eval.npz")["x"])
    ye = torch.from_numpy(np.load(WORK / "form_eval.npz")["y"].astype(np.int64))
    print(json.dumps({"epoch": 0, "form_eval": accuracy(model, xe, ye)}), flush=True)
    steps = args.epochs * math.ceil(len(tx) / args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps,
                                                pct_start=0.1)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    started = time.time()
    step = 0
    for epoch in range(args.epochs):
        model.train()
        for m in model.modules():  # the folded BatchNorms keep their (identity) statistics
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        order = torch.randperm(len(tx), generator=gen)
        total = 0.0
        for i in range(0, len(tx), args.batch):
            idx = order[i:i + args.batch]
            inputs = shift(as_input(tx[idx]), gen).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(inputs), ty[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            step += 1
            if step % 50 == 0:
                print(f"  step {step}/{steps} loss {loss.item():.3f} "
                      f"{time.time() - started:.0f} s", flush=True)
        print(json.dumps({"epoch": epoch + 1, "loss": total / len(tx),
                          "form_eval": accuracy(model, xe, ye),
                          "seconds": round(time.time() - started)}), flush=True)
    export(model, labels, args.out)
    print(f"exported {args.out} after {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
