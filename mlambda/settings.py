"""Each setting of `mlambda up`, declared once: name, env var, CLI flag, type, default, doc."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

REPO_FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def _setting(default: Any, env: str, doc: str) -> Any:
    from dataclasses import field

    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    host: str = _setting("127.0.0.1", "MLAMBDA_HOST", "address to listen on")
    port: int = _setting(8080, "MLAMBDA_PORT", "port to listen on")
    data: Path = _setting(Path(".mlambda"), "MLAMBDA_DATA",
                          "data directory: registry, bundles, volume, keys")
    seed: Path = _setting(REPO_FUNCTIONS / "seed.toml", "MLAMBDA_SEED",
                          "functions and routes deployed on first start")
    drain_s: float = _setting(10.0, "MLAMBDA_DRAIN_S",
                              "on SIGINT/SIGTERM, how long in-flight work may take to finish")
    max_body_mb: float = _setting(6.0, "MLAMBDA_MAX_BODY_MB",
                                  "largest request body accepted (Lambda's limit: 6 MB)")
    log_level: str = _setting("info", "MLAMBDA_LOG_LEVEL", "debug, info, warning or error")

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then explicit (CLI) overrides."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            kind = type(f.default)
            raw = os.environ.get(f.metadata["env"])
            if raw is not None:
                values[f.name] = kind(raw)
            if overrides.get(f.name) is not None:
                values[f.name] = kind(overrides[f.name])
        return cls(**values)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
