"""The cost model: the spec's own example reproduced from the same code that prices
measured usage, server sizing, and price files and scenarios that are wrong say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlambda.cost import (
    DEFAULT_PRICES,
    Usage,
    estimate,
    load_prices,
    parse_scenario,
    size_server,
    this_machine,
)
from mlambda.errors import InvalidParameter

SPEC_EXAMPLE = "10000/day 0.5s 8GB 22days"


def test_the_spec_example_comes_out_as_the_spec_says() -> None:
    prices = load_prices()
    sheet = prices.sheet("spec")
    e = estimate(parse_scenario(SPEC_EXAMPLE).usage(sheet), sheet)
    assert round(e.lambda_compute_usd, 2) == 14.63
    assert round(e.lambda_requests_usd, 2) == 0.04
    assert round(e.api_usd, 2) == 0.22
    assert round(e.total_usd, 2) == 14.89
    assert e.server is not None and e.server.monthly_usd == pytest.approx(66.20)
    assert e.saving_vs_server is not None and round(e.saving_vs_server, 3) == 0.775


def test_the_same_scenario_at_aws_list_prices() -> None:
    prices = load_prices()
    sheet = prices.sheet(None)  # the default: AWS us-east-1
    assert sheet.lambda_gb_second == 0.0000166667
    e = estimate(parse_scenario(SPEC_EXAMPLE).usage(sheet), sheet)
    assert round(e.lambda_compute_usd, 2) == 14.67  # 880,000 GB-s x $0.0000166667
    assert round(e.total_usd, 2) == 14.93
    # one 8 GB execution at a time: the cheapest server with 8 GB is an m7i.large
    assert e.server is not None and e.server.name == "m7i.large"
    assert e.server.monthly_usd == pytest.approx(0.1008 * 730)


def test_scenario_forms() -> None:
    s = parse_scenario("2_400/hour 120ms 1536MB peak=6")
    assert s.per_day == 57_600 and s.duration_s == 0.12 and s.memory_gb == 1.5
    assert s.days == 30 and s.peak == 6 and s.requests == 57_600 * 30
    for bad, word in (("10000/day 8GB", "duration_s"), ("10000/week 1s 1GB", "10000/week"),
                      ("", "per_day")):
        with pytest.raises(InvalidParameter, match=word):
            parse_scenario(bad)


def test_servers_are_sized_for_the_peak() -> None:
    sheet = load_prices().sheet(None)
    assert size_server(sheet, 3, 6)[0].name == "c7i.xlarge"  # type: ignore[index]
    assert size_server(sheet, 1, 20)[0].name == "m7i.2xlarge"  # type: ignore[index]
    server, count = size_server(sheet, 100, 10)  # type: ignore[misc]
    assert server.name == "m7i.8xlarge" and count == 4
    e = estimate(Usage(1e6, 1e5, 1e6, hours=730, peak_concurrency=3, peak_memory_gb=6), sheet)
    assert e.server is not None and e.server.total_usd == pytest.approx(0.1785 * 730)
    assert e.total_usd == pytest.approx(0.2 + 1e5 * 0.0000166667 + 1.0)
    half = estimate(Usage(1e6, 1e5, 1e6, hours=365, peak_concurrency=3, peak_memory_gb=6),
                    sheet)
    assert half.monthly_usd == pytest.approx(2 * half.total_usd)


def test_this_machine_is_priced_from_the_file_or_by_its_size(tmp_path: Path) -> None:
    prices = load_prices()
    sheet = prices.sheet(None)
    m = this_machine(prices, sheet, cpus=4, memory_gb=15.5, hours=730)
    assert m["priced_as"] == "m7i.xlarge" and m["total_usd"] == pytest.approx(0.2016 * 730)
    own = tmp_path / "prices.toml"
    own.write_text(DEFAULT_PRICES.read_text().replace("monthly_usd = 0\n", "monthly_usd = 42\n"))
    mine = load_prices(own)
    assert this_machine(mine, mine.sheet(None), 4, 15.5, 365)["total_usd"] == pytest.approx(21)


def test_a_broken_price_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "prices.toml"
    bad.write_text(DEFAULT_PRICES.read_text().replace("lambda_gb_second = 0.0000166667\n", ""))
    with pytest.raises(InvalidParameter, match=r"prices.toml.*lambda_gb_second"):
        load_prices(bad)
    with pytest.raises(InvalidParameter, match="no price sheet 'azure'"):
        load_prices().sheet("azure")
