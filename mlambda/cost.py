"""What traffic costs: measured (or imagined) usage priced as AWS Lambda + API Gateway,
next to an always-on server sized for the peak and next to this machine.

Pure: prices come from a TOML file (`mlambda/prices.toml` is the dated, sourced default;
the platform keeps an editable copy in its data directory); usage comes from the metrics.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlambda.errors import InvalidParameter

DEFAULT_PRICES = Path(__file__).resolve().parent / "prices.toml"


@dataclass(frozen=True)
class Server:
    name: str
    vcpus: int
    memory_gb: float
    monthly_usd: float


@dataclass(frozen=True)
class Sheet:
    name: str
    date: str
    source: str
    lambda_request_per_million: float
    lambda_gb_second: float
    api_request_per_million: float
    hours_per_month: float
    servers: tuple[Server, ...]


@dataclass(frozen=True)
class Prices:
    default: str
    sheets: dict[str, Sheet]
    this_machine_monthly_usd: float

    def sheet(self, name: str | None) -> Sheet:
        chosen = name or self.default
        if chosen not in self.sheets:
            raise InvalidParameter(f"field `sheet`: no price sheet {chosen!r}; the price file "
                                   f"has {', '.join(sorted(self.sheets))}")
        return self.sheets[chosen]


def load_prices(path: Path = DEFAULT_PRICES) -> Prices:
    """Read a price file; a wrong one is an error naming the file and the field."""
    try:
        doc = tomllib.loads(path.read_text())
        sheets = {}
        for name, raw in doc["sheet"].items():
            hours = float(raw.get("hours_per_month", 730))
            servers = tuple(
                Server(str(s["name"]), int(s["vcpus"]), float(s["memory_gb"]),
                       float(s["monthly_usd"]) if "monthly_usd" in s
                       else float(s["hourly_usd"]) * hours)
                for s in raw.get("server", []))
            sheets[name] = Sheet(name, str(raw["date"]), str(raw["source"]),
                                 float(raw["lambda_request_per_million"]),
                                 float(raw["lambda_gb_second"]),
                                 float(raw["api_request_per_million"]), hours, servers)
        prices = Prices(str(doc["default"]), sheets,
                        float(doc.get("this_machine", {}).get("monthly_usd", 0.0)))
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidParameter(f"price file {path}: {type(exc).__name__}: {exc}") from None
    prices.sheet(None)  # the default must exist
    return prices


@dataclass(frozen=True)
class Usage:
    """What ran over `hours`: Lambda requests, GB-seconds billed, API Gateway calls, and
    the peak (concurrent executions and the memory of the instances alive)."""

    requests: float
    gb_seconds: float
    api_calls: float
    hours: float
    peak_concurrency: float = 1.0
    peak_memory_gb: float = 0.0


@dataclass(frozen=True)
class ServerChoice:
    name: str
    count: int
    vcpus: int
    memory_gb: float
    monthly_usd: float
    total_usd: float


@dataclass(frozen=True)
class Estimate:
    lambda_requests_usd: float
    lambda_compute_usd: float
    api_usd: float
    total_usd: float
    monthly_usd: float  # at the same rate for a whole month
    server: ServerChoice | None
    saving_vs_server: float | None  # 0.775: Lambda + API costs 77.5% less than the server

    def json(self) -> dict[str, Any]:
        return asdict(self)


def size_server(sheet: Sheet, vcpus: float, memory_gb: float) -> tuple[Server, int] | None:
    """The cheapest server of the sheet with `vcpus` cores and `memory_gb`; when none is
    big enough, as many of the biggest as it takes."""
    if not sheet.servers:
        return None
    fits = [s for s in sheet.servers if s.vcpus >= vcpus and s.memory_gb >= memory_gb]
    if fits:
        return min(fits, key=lambda s: s.monthly_usd), 1
    big = max(sheet.servers, key=lambda s: (s.vcpus, s.memory_gb))
    return big, max(math.ceil(vcpus / big.vcpus), math.ceil(memory_gb / big.memory_gb))


def estimate(usage: Usage, sheet: Sheet) -> Estimate:
    requests = usage.requests * sheet.lambda_request_per_million / 1e6
    compute = usage.gb_seconds * sheet.lambda_gb_second
    api = usage.api_calls * sheet.api_request_per_million / 1e6
    total = requests + compute + api
    months = usage.hours / sheet.hours_per_month if usage.hours > 0 else 0.0
    server = None
    saving = None
    sized = size_server(sheet, max(1.0, usage.peak_concurrency), usage.peak_memory_gb)
    if sized is not None:
        s, count = sized
        server_total = s.monthly_usd * count * months
        server = ServerChoice(s.name, count, s.vcpus, s.memory_gb, s.monthly_usd * count,
                              server_total)
        if server_total > 0:
            saving = 1.0 - total / server_total
    return Estimate(requests, compute, api, total, total / months if months else 0.0,
                    server, saving)


def this_machine(prices: Prices, sheet: Sheet, cpus: int, memory_gb: float,
                 hours: float) -> dict[str, Any]:
    """This machine's cost over `hours`: its configured monthly price, or else the
    sheet's cheapest server with its cores and memory."""
    monthly = prices.this_machine_monthly_usd
    priced_as = "this_machine.monthly_usd in the price file"
    if monthly <= 0:
        sized = size_server(sheet, cpus, memory_gb * 0.9)  # a "16 GB" box reports ~15.5
        if sized is None:
            return {"cpus": cpus, "memory_gb": round(memory_gb, 1), "monthly_usd": None,
                    "total_usd": None, "priced_as": None}
        s, count = sized
        monthly = s.monthly_usd * count
        priced_as = f"{count} x {s.name}" if count > 1 else s.name
    return {"cpus": cpus, "memory_gb": round(memory_gb, 1), "monthly_usd": monthly,
            "total_usd": monthly * hours / sheet.hours_per_month, "priced_as": priced_as}


# -- scenarios: "10000/day 0.5s 8GB 22days" --------------------------------------------

_RATE = re.compile(r"^([\d_,]+(?:\.\d+)?)/(hour|day|month)$")
_TIME = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(MB|GB)$", re.I)
_DAYS = re.compile(r"^(\d+(?:\.\d+)?)days?$")
_PEAK = re.compile(r"^peak=(\d+)$")


@dataclass(frozen=True)
class Scenario:
    per_day: float
    duration_s: float
    memory_gb: float
    days: float = 30.0
    peak: int = 1

    @property
    def requests(self) -> float:
        return self.per_day * self.days

    def usage(self, sheet: Sheet) -> Usage:
        """A month of this traffic (billed per request, rounded up to 1 ms)."""
        billed_s = math.ceil(self.duration_s * 1000 - 1e-9) / 1000
        return Usage(self.requests, self.requests * billed_s * self.memory_gb, self.requests,
                     sheet.hours_per_month, self.peak, self.peak * self.memory_gb)


def parse_scenario(text: str) -> Scenario:
    """`RATE/day|hour|month DURATION(s|ms) MEMORY(GB|MB) [DAYSdays] [peak=N]` (days: how
    many days a month the traffic runs, 30 by default; peak: concurrent executions at
    the busiest moment, 1 by default)."""
    found: dict[str, float] = {}
    for token in text.split():
        if m := _RATE.match(token):
            per = {"hour": 24.0, "day": 1.0, "month": 1 / 30}[m.group(2)]
            found["per_day"] = float(m.group(1).replace(",", "").replace("_", "")) * per
        elif m := _TIME.match(token):
            found["duration_s"] = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        elif m := _MEMORY.match(token):
            found["memory_gb"] = float(m.group(1)) / (1024 if m.group(2).upper() == "MB" else 1)
        elif m := _DAYS.match(token):
            found["days"] = float(m.group(1))
        elif m := _PEAK.match(token):
            found["peak"] = int(m.group(1))
        else:
            raise InvalidParameter(
                f"field `scenario`: cannot read {token!r}; expected e.g. "
                f"\"10000/day 0.5s 8GB 22days\" (rate, duration, memory, days, peak=N)")
    missing = [k for k in ("per_day", "duration_s", "memory_gb") if k not in found]
    if missing:
        raise InvalidParameter(
            f"field `scenario`: missing {', '.join(missing)}; expected e.g. "
            f"\"10000/day 0.5s 8GB 22days\"")
    return Scenario(found["per_day"], found["duration_s"], found["memory_gb"],
                    found.get("days", 30.0), int(found.get("peak", 1)))
