"""What the exported stack costs a month on AWS, from the spec's prices (us-east-1,
../shared/AWS_COMPAT.md). The one place that holds prices for the export: point it at
`mlambda cost`'s price table once that exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LAMBDA_PER_MILLION_REQUESTS = 0.20
LAMBDA_PER_GB_SECOND = 0.0000166667  # x86_64
API_GATEWAY_REST_PER_MILLION = 3.50
# Not in the spec's table, so not priced: provisioned concurrency, EFS storage and
# throughput, CloudWatch dashboards, alarms and log storage, data transfer.
UNPRICED = ("provisioned concurrency", "EFS storage and throughput",
            "CloudWatch dashboard, alarm and log storage", "data transfer")


@dataclass(frozen=True)
class MonthlyCost:
    requests: int
    duration_ms: float
    memory_mb: int
    gb_seconds: float
    compute_usd: float
    lambda_requests_usd: float
    api_requests_usd: float

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.lambda_requests_usd + self.api_requests_usd


def monthly_cost(requests: int, duration_ms: float, memory_mb: int) -> MonthlyCost:
    """Lambda compute (billed duration rounded up to 1 ms) and requests, and REST API
    requests, before the free tier."""
    billed_s = math.ceil(duration_ms) / 1000
    gb_seconds = requests * billed_s * memory_mb / 1024
    return MonthlyCost(
        requests=requests,
        duration_ms=duration_ms,
        memory_mb=memory_mb,
        gb_seconds=gb_seconds,
        compute_usd=gb_seconds * LAMBDA_PER_GB_SECOND,
        lambda_requests_usd=requests * LAMBDA_PER_MILLION_REQUESTS / 1_000_000,
        api_requests_usd=requests * API_GATEWAY_REST_PER_MILLION / 1_000_000,
    )
