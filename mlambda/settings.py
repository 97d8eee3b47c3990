"""Each setting of `mlambda up`, declared once: name, env var, CLI flag, type, default, doc."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

REPO_FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def _meta(env: str, doc: str, kind: type | None = None) -> dict[str, Any]:
    return {"env": env, "doc": doc, "type": kind}


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata=_meta("MLAMBDA_HOST", "address to listen on"))
    port: int = field(default=8080, metadata=_meta("MLAMBDA_PORT", "port to listen on"))
    data: Path = field(default=Path(".mlambda"), metadata=_meta(
        "MLAMBDA_DATA", "data directory: registry, bundles, volume, keys"))
    seed: Path = field(default=REPO_FUNCTIONS / "seed.toml", metadata=_meta(
        "MLAMBDA_SEED", "functions and routes deployed on first start"))
    drain_s: float = field(default=10.0, metadata=_meta(
        "MLAMBDA_DRAIN_S", "on SIGINT/SIGTERM, how long in-flight work may take to finish"))
    max_body_mb: float = field(default=6.0, metadata=_meta(
        "MLAMBDA_MAX_BODY_MB", "largest request body accepted (Lambda's limit: 6 MB)"))
    usage_flush_s: float = field(default=0.5, metadata=_meta(
        "MLAMBDA_USAGE_FLUSH_S", "how often usage counts (quotas, last use) go to SQLite: "
        "a crash loses at most this much counting"))
    idempotency_entries: int = field(default=100_000, metadata=_meta(
        "MLAMBDA_IDEMPOTENCY_ENTRIES", "answers kept for retries on idempotent routes, at most"))
    idempotency_mb: float = field(default=64.0, metadata=_meta(
        "MLAMBDA_IDEMPOTENCY_MB", "memory for answers kept for retries, at most (MB)"))
    engine: str = field(default="local", metadata=_meta(
        "MLAMBDA_ENGINE", "where versions run: local (processes here) or ray (a Ray cluster)"))
    ray_address: str = field(default="", metadata=_meta(
        "MLAMBDA_RAY_ADDRESS", "the Ray cluster to join (auto, or HOST:PORT of its head); "
        "empty: start a one-machine Ray here"))
    ray_replica_cpus: float = field(default=0.25, metadata=_meta(
        "MLAMBDA_RAY_REPLICA_CPUS", "CPUs Ray reserves for each replica (a replica idle until "
        "its idle_ttl_s holds its share, so whole CPUs would starve other versions)"))
    log_retention_days: float = field(default=30.0, metadata=_meta(
        "MLAMBDA_LOG_RETENTION_DAYS", "invocation logs and platform events older than this go"))
    log_max_mb: float = field(default=1024.0, metadata=_meta(
        "MLAMBDA_LOG_MAX_MB", "the log store's size bound: past it, the oldest entries go"))
    log_flush_ms: int = field(default=200, metadata=_meta(
        "MLAMBDA_LOG_FLUSH_MS", "how long log lines gather before one write (one transaction)"))
    log_queue_max: int = field(default=200_000, metadata=_meta(
        "MLAMBDA_LOG_QUEUE_MAX", "log entries waiting for the disk past which new ones are "
        "dropped (and counted)"))
    dashboard_idle_min: float = field(default=60.0, metadata=_meta(
        "MLAMBDA_DASHBOARD_IDLE_MIN", "a dashboard session ends after this long unused"))
    dashboard_session_h: float = field(default=12.0, metadata=_meta(
        "MLAMBDA_DASHBOARD_SESSION_H", "a dashboard session ends this long after sign-in"))
    log_level: str = field(default="info", metadata=_meta(
        "MLAMBDA_LOG_LEVEL", "debug, info, warning or error"))
    # -- the public surface's limits ---------------------------------------------------
    tls_cert: Path | None = field(default=None, metadata=_meta(
        "MLAMBDA_TLS_CERT", "PEM certificate (chain): serve HTTPS instead of HTTP", Path))
    tls_key: Path | None = field(default=None, metadata=_meta(
        "MLAMBDA_TLS_KEY", "PEM private key of --tls-cert", Path))
    max_connections: int = field(default=4096, metadata=_meta(
        "MLAMBDA_MAX_CONNECTIONS",
        "open connections accepted at once; past it a new one gets 503 and is closed"))
    header_timeout_s: float = field(default=10.0, metadata=_meta(
        "MLAMBDA_HEADER_TIMEOUT_S",
        "time a client has to send a request's line and headers (slowloris: 408, closed)"))
    body_timeout_s: float = field(default=30.0, metadata=_meta(
        "MLAMBDA_BODY_TIMEOUT_S", "time a client has to send a request's body (408, closed)"))
    max_header_kb: float = field(default=16.0, metadata=_meta(
        "MLAMBDA_MAX_HEADER_KB", "largest request line plus headers (431, closed)"))
    max_headers: int = field(default=100, metadata=_meta(
        "MLAMBDA_MAX_HEADERS", "most header fields in a request (431, closed)"))
    max_bundle_mb: float = field(default=250.0, metadata=_meta(
        "MLAMBDA_MAX_BUNDLE_MB",
        "largest function bundle once unpacked (Lambda's limit: 250 MB); larger is refused "
        "before anything is extracted"))
    # -- the sandbox of function code --------------------------------------------------
    sandbox_uid: int = field(default=990_000, metadata=_meta(
        "MLAMBDA_SANDBOX_UID",
        "when run as root: the sandbox group id; each template runs as one of the next "
        "999 uids (no login, no passwd entry)"))
    fn_max_open_files: int = field(default=1024, metadata=_meta(
        "MLAMBDA_FN_MAX_OPEN_FILES", "RLIMIT_NOFILE of every function process"))
    fn_max_processes: int = field(default=512, metadata=_meta(
        "MLAMBDA_FN_MAX_PROCESSES",
        "RLIMIT_NPROC of a function's uid: its processes and threads, all instances together"))
    fn_max_file_mb: float = field(default=1024.0, metadata=_meta(
        "MLAMBDA_FN_MAX_FILE_MB", "RLIMIT_FSIZE: largest file a function may write"))
    telemetry: bool = field(default=True, metadata=_meta(
        "MLAMBDA_TELEMETRY", "collect metrics and invocation logs (0 turns both off, and /metrics "
        "and cost; the platform's events are still logged)"))
    metrics_flush_s: float = field(default=10.0, metadata=_meta(
        "MLAMBDA_METRICS_FLUSH_S", "how often metrics are written to DATA/metrics.db"))
    metrics_retention_10s_h: float = field(default=24.0, metadata=_meta(
        "MLAMBDA_METRICS_RETENTION_10S_H", "hours 10-second metric points are kept"))
    metrics_retention_1m_d: float = field(default=30.0, metadata=_meta(
        "MLAMBDA_METRICS_RETENTION_1M_D", "days 1-minute (and 1-hour) rollups are kept"))
    prices: str = field(default="", metadata=_meta(
        "MLAMBDA_PRICES", "price file for `mlambda cost` (default: DATA/prices.toml, copied "
                          "from the packaged, dated and sourced one on first start)"))

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then explicit (CLI) overrides."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            convert: Any = f.metadata["type"] or (
                _flag if isinstance(f.default, bool) else type(f.default))
            raw = os.environ.get(f.metadata["env"])
            if raw is not None:
                values[f.name] = convert(raw)
            if overrides.get(f.name) is not None:
                values[f.name] = convert(overrides[f.name])
        return cls(**values)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * 1024)

    @property
    def max_bundle_bytes(self) -> int:
        return int(self.max_bundle_mb * 1024 * 1024)
