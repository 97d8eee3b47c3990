"""The handwriting model as a callable: images in, answers out (the top class, or
`isnull` below the model's threshold). Shared by app.py and handwriting-infer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import decision
import numpy as np
import onnxruntime as ort

NULL = "isnull"


@dataclass(frozen=True)
class Classifier:
    session: ort.InferenceSession
    labels: list[str]
    null_threshold: float = 0.0  # below this top-class probability the answer is isnull

    def __call__(self, images: np.ndarray) -> list[str]:
        best, confidence = decision.top_class(self.session.run(None, {"image": images})[0])
        answers = decision.decide(best, confidence, len(self.labels) - 1, self.null_threshold)
        return [self.labels[i] for i in answers]


def load(path: Path) -> Classifier:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one thread per instance: instances share the cores
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["labels"])
    if len(labels) != session.get_outputs()[0].shape[1] or labels[-1] != NULL:
        raise ValueError(f"{path.name}: labels in its metadata do not match its output")
    return Classifier(session, labels, decision.threshold_of(meta, path.name))
