"""Try INT8: static quantization (QDQ, per channel) calibrated on training images; keep
it only if top-1 holds within 0.5 points and it is faster. Prints both figures.

    python -m training.quantize [--model models/handwriting.onnx]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from training.evaluate import predict

ROOT = Path(__file__).resolve().parent.parent


class Calibration(CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self.batches = iter([x[i:i + 64, None].astype(np.float32) / 255.0
                             for i in range(0, len(x), 64)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"image": batch}


def top1(model: Path, work: Path) -> float:
    correct = total = 0
    for name in ("font", "strokes"):
        data = np.load(work / f"eval_{name}.npz")
        p, _ = predict(model, data["x"])
        correct += int((p == data["y"]).sum())
        total += len(p)
    return correct / total


def speed(model: Path) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    s = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((64, 1, 48, 48), dtype=np.float32)
    s.run(None, {"image": x})
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 3:
        s.run(None, {"image": x})
        n += 64
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "handwriting.onnx")
    parser.add_argument("--work", type=Path, default=ROOT / "training" / "work")
    args = parser.parse_args()
    prepared = args.work / "prepared.onnx"
    quantized = args.work / "handwriting.int8.onnx"
    quant_pre_process(str(args.model), str(prepared))
    x = np.load(args.work / "train.npz")["x"]
    pick = np.random.default_rng(0).choice(len(x), 1024, replace=False)
    quantize_static(str(prepared), str(quantized), Calibration(x[pick]),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    proto = onnx.load(str(quantized))  # carry the labels over
    meta = {p.key: p.value for p in onnx.load(str(args.model)).metadata_props}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(quantized))
    report = {
        "fp32": {"top1": top1(args.model, args.work), "images_per_s": speed(args.model),
                 "bytes": args.model.stat().st_size},
        "int8": {"top1": top1(quantized, args.work), "images_per_s": speed(quantized),
                 "bytes": quantized.stat().st_size},
    }
    fp32, int8 = report["fp32"], report["int8"]
    report["keep_int8"] = (fp32["top1"] - int8["top1"] <= 0.005  # type: ignore[operator]
                           and int8["images_per_s"] > fp32["images_per_s"])  # type: ignore[operator]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
