"""The instance's work around the model, per image: the real `Instance.run_batch` of the
handwriting function (proxy event, JSON body, base64, checks, preprocess, model, the
answer's JSON, the `Result` frames sent on a real socket) against the bare loop
(preprocess + model on the same JPEG bytes), in one process, alternating, in CPU time
(so another process on the machine changes both alike).

    .venv/bin/python -m bench.instance_overhead [--rounds 30] [--batch 64] [--profile]
(`--only instance|bare` runs one path alone, for a sampling profiler such as py-spy;
instruction counts under callgrind did not repeat here: onnxruntime's own threads vary.)
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import ROOT
from mlambda import heap
from mlambda.runtime import protocol as p
from mlambda.runtime.instance import Instance
from mlambda.spec import load_spec
from mlambda.volume import ModelStore

BUNDLE = ROOT / "functions" / "handwriting"
IMAGES = sorted((ROOT / "tests" / "data" / "handwriting").glob("*.jpg"))
HEADERS = (("host", "127.0.0.1:8080"), ("user-agent", "wrk"), ("content-type", "application/json"))


def volume_with_model() -> Path:
    root = Path(tempfile.mkdtemp(prefix="mlambda-bench-volume-"))
    store = ModelStore(root)
    model = ROOT / "models" / "handwriting.onnx"
    tmp = store.incoming("handwriting")
    tmp.write_bytes(model.read_bytes())
    import hashlib

    version = store.commit("handwriting", "handwriting.onnx", tmp,
                           hashlib.sha256(model.read_bytes()).hexdigest())
    store.flip(version)
    return root


def instance() -> tuple[Instance, socket.socket]:
    """The handwriting function's instance, initialised, talking to a socket we drain."""
    spec = load_spec(BUNDLE)
    os.environ["MLAMBDA_VOLUME"] = str(volume_with_model())
    config = p.TemplateConfig(spec.name, "1", str(BUNDLE), spec, "", "", os.getpid(),
                              os.environ["MLAMBDA_VOLUME"])
    inst = Instance(config, "bench")
    ours, theirs = socket.socketpair()
    inst.sock = ours
    stdout = sys.stdout
    if inst.init() is not None:
        raise SystemExit("the handwriting function failed to initialise")
    sys.stdout = sys.stderr = stdout  # init's prints are captured; ours are not

    def drain() -> None:
        while theirs.recv(1 << 20):
            pass

    threading.Thread(target=drain, daemon=True).start()
    return inst, theirs


def batch_of(n: int, batch_id: int) -> p.Batch:
    items = []
    for i in range(n):
        jpeg = IMAGES[i % len(IMAGES)].read_bytes()
        body = json.dumps({"esun_uuid": f"{batch_id:032x}{i:032x}", "esun_timestamp": 1,
                           "image": base64.b64encode(jpeg).decode(), "retry": 2}).encode()
        meta = p.ProxyMeta("POST", "/inference", "/inference", "", HEADERS, "127.0.0.1",
                           "key", "live")
        items.append(p.Item(f"req-{batch_id}-{i}", body, meta))
    return p.Batch(batch_id, tuple(items), 5000)


def bare(jpegs: list[bytes]) -> None:
    import app
    import preprocess

    app.MODEL.get()(preprocess.batch([preprocess.prepare(j) for j in jpegs]))


def cpu_us_per_image(fn: object, n: int) -> float:
    start = time.process_time()
    fn()  # type: ignore[operator]
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="cProfile the instance path")
    parser.add_argument("--default-gc", action="store_true",
                        help="leave the collector as CPython sets it (an instance settles it "
                             "after init: mlambda.heap)")
    parser.add_argument("--only", choices=["instance", "bare"],
                        help="run just one path, --rounds times (for a profiler)")
    args = parser.parse_args()
    inst, _ = instance()
    batches = [batch_of(args.batch, b) for b in range(4)]
    jpegs = [IMAGES[i % len(IMAGES)].read_bytes() for i in range(args.batch)]
    for b in batches:  # warm both
        inst.run_batch(b)
    bare(jpegs)
    if not args.default_gc:
        heap.settle()  # as Instance.run does after init
    if args.only is not None:
        for r in range(args.rounds):
            if args.only == "instance":
                inst.run_batch(batches[r % len(batches)])
            else:
                bare(jpegs)
        return
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for r in range(args.rounds):
            inst.run_batch(batches[r % len(batches)])
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    full, alone = [], []
    for r in range(args.rounds):
        b = batches[r % len(batches)]
        full.append(cpu_us_per_image(lambda b=b: inst.run_batch(b), args.batch))
        alone.append(cpu_us_per_image(lambda: bare(jpegs), args.batch))
    full.sort()
    alone.sort()
    med_full, med_alone = full[len(full) // 2], alone[len(alone) // 2]
    report = {"batch": args.batch, "rounds": args.rounds,
              "instance_us_per_image": round(med_full, 1),
              "bare_loop_us_per_image": round(med_alone, 1),
              "overhead_us_per_image": round(med_full - med_alone, 1),
              "instance_share_of_bare": round(med_alone / med_full, 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
