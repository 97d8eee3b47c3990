"""What the exported stack costs a month on AWS.

The one place the export takes prices from. Until `mlambda cost`'s price table lands
(branch `metrics`: `mlambda.cost.Sheet`, whose first two fields have these names), it holds
the spec's us-east-1 prices (../shared/AWS_COMPAT.md). The exported API is a REST API
(API keys and usage plans need one), priced at REST's $3.50 per million, not HTTP's $1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PriceSheet:
    lambda_request_per_million: float
    lambda_gb_second: float  # x86_64
    rest_api_request_per_million: float


SPEC_PRICES = PriceSheet(lambda_request_per_million=0.20, lambda_gb_second=0.0000166667,
                         rest_api_request_per_million=3.50)
# Not in the price table, so not priced: named in the estimate instead.
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


def monthly_cost(requests: int, duration_ms: float, memory_mb: int,
                 prices: PriceSheet = SPEC_PRICES) -> MonthlyCost:
    """Lambda compute (billed duration rounded up to 1 ms) and requests, and REST API
    requests, before the free tier."""
    billed_s = math.ceil(duration_ms) / 1000
    gb_seconds = requests * billed_s * memory_mb / 1024
    return MonthlyCost(
        requests=requests,
        duration_ms=duration_ms,
        memory_mb=memory_mb,
        gb_seconds=gb_seconds,
        compute_usd=gb_seconds * prices.lambda_gb_second,
        lambda_requests_usd=requests * prices.lambda_request_per_million / 1_000_000,
        api_requests_usd=requests * prices.rest_api_request_per_million / 1_000_000,
    )
