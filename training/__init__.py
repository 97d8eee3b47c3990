"""Training the handwriting model (`make train`, `make eval`): data generation, the CNN,
ONNX export and evaluation. Needs the `[train]` extra (torch, CPU)."""
