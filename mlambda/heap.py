"""The cyclic garbage collector, set for long-lived server processes (the gateway and
instances).

By default CPython collects its youngest generation every 700 allocations net, and
every collection of the oldest one walks every object the process holds. A server
allocates a few hundred objects per request, so under load that was a collection every
few requests, each walking the modules, the model and the idempotency store again.
`settle` moves what is alive now (loaded at start: modules, a preloaded model) out of
the collector's sight for good (`gc.freeze`) and collects far less often. Cycles are
still collected; garbage without cycles never waited for the collector anyway.
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 20, 20)


def settle() -> None:
    """Call once the process has loaded what it keeps (after start or init)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
