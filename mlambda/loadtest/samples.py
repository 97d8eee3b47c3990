"""What a load generator measured: one row per answered request, and the failures."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Samples:
    generator: str  # "wrk" or "native"
    concurrency: int
    started: float  # monotonic seconds
    ended: float = 0.0
    done: list[float] = field(default_factory=list)  # when each answer came (monotonic s)
    latency: list[float] = field(default_factory=list)  # seconds; -1 when not known
    ok: list[bool] = field(default_factory=list)  # status and shape right
    errors: dict[str, int] = field(default_factory=dict)  # connect, timeout, read...
    cpu_s: float = 0.0  # the load generator's own CPU time
    wrk_percentiles_ms: dict[str, float] = field(default_factory=dict)  # wrk's own, if any
    connections_served: int | None = None  # connections that got at least one answer

    def add(self, done: float, latency: float, ok: bool) -> None:
        self.done.append(done)
        self.latency.append(latency)
        self.ok.append(ok)

    def error(self, kind: str, n: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + n

    @property
    def wall_s(self) -> float:
        return max(1e-9, self.ended - self.started)

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s
