"""Train the handwriting CNN on the generated set and export it to ONNX.

    python -m training.train [--epochs 12] [--work training/work]

Writes models/handwriting.onnx (dynamic batch axis; the label list in its metadata under
"labels") and models/handwriting.labels.txt.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from training.labels import load_labels
from training.model import HandwritingNet, flops

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models"


def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.load(path)
    return torch.from_numpy(data["x"]), torch.from_numpy(data["y"].astype(np.int64))


def as_input(x: torch.Tensor) -> torch.Tensor:
    return x[:, None, :, :].float().mul_(1.0 / 255.0)


def shift(x: torch.Tensor, gen: torch.Generator, max_px: int = 3) -> torch.Tensor:
    """Random translation, per quarter of the batch (cheap, and enough variety)."""
    out = torch.empty_like(x)
    padded = nn.functional.pad(x, (max_px,) * 4)
    size = x.shape[-1]
    for part in torch.arange(x.shape[0]).chunk(4):
        dx, dy = torch.randint(0, 2 * max_px + 1, (2,), generator=gen).tolist()
        out[part] = padded[part, :, dy:dy + size, dx:dx + size]
    return out


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 1024):
        correct += int((model(as_input(x[i:i + 1024])).argmax(1) == y[i:i + 1024]).sum())
    return correct / len(x)


def export(model: nn.Module, labels: list[str], path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, 1, 48, 48)
    torch.onnx.export(model, (dummy,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "labels", json.dumps(labels, ensure_ascii=False)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "input", "uint8 48x48 from preprocess.prepare, scaled to [0, 1]"
    onnx.save(proto, str(path))
    path.with_suffix(".labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=ROOT / "training" / "work")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=MODEL_DIR / "handwriting.onnx")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    labels = load_labels()
    x, y = load(args.work / "train.npz")
    xf, yf = load(args.work / "eval_font.npz")
    xs, ys = load(args.work / "eval_strokes.npz")
    model = HandwritingNet(len(labels)).to(memory_format=torch.channels_last)
    print(f"model: {flops(model) / 1e6:.1f} MFLOPs, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
          f"{len(x):,} training images", flush=True)
    steps = args.epochs * math.ceil(len(x) / args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps,
                                                pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    started = time.time()
    history = []
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} steps"), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns) as progress:
        task = progress.add_task("training", total=steps, status="")
        for epoch in range(args.epochs):
            model.train()
            order = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(x), args.batch):
                idx = order[i:i + args.batch]
                inputs = shift(as_input(x[idx]), gen).contiguous(
                    memory_format=torch.channels_last)
                loss = loss_fn(model(inputs), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                progress.advance(task)
            font_acc, stroke_acc = accuracy(model, xf, yf), accuracy(model, xs, ys)
            history.append({"epoch": epoch + 1, "loss": total / len(x), "font": font_acc,
                            "strokes": stroke_acc, "seconds": time.time() - started})
            progress.update(task, status=f"epoch {epoch + 1}: loss {total / len(x):.3f} "
                            f"held-out font {font_acc:.1%} strokes {stroke_acc:.1%}")
            progress.console.print(json.dumps(history[-1]))
    export(model, labels, args.out)
    print(f"exported {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after "
          f"{time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
