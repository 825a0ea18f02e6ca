"""The neighbourhood simulation: reproducible, audited, and its books balance."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pvlib
import pyarrow.parquet as pq
import pytest

from gridnet.agents.home import Home
from gridnet.agents.security_lab import flagged_meters
from gridnet.cli.common import console
from gridnet.cli.sim import _kwh, print_simulation_summary
from gridnet.encoding import decode_lenient
from gridnet.errors import ConfigError, DataDirLocked, GridOverloaded, PlotFailed
from gridnet.ledger.chain import Chain
from gridnet.ledger.lock import LOCK_NAME
from gridnet.ledger.txs.contract import CONTRACTS, ContractRecord
from gridnet.ledger.txs.meter import READINGS, reading_key
from gridnet.ledger.verify import verify_chain
from gridnet.sim import plots, series
from gridnet.sim.neighbourhood import Neighbourhood, memory_network, simulate
from gridnet.sim.output import MARKER, STAGING, check_out_dir, prepare_out_dir
from gridnet.sim.report import economy_report
from gridnet.sim.scenario import Scenario, load_scenario, scenario_from_dict
from gridnet.units import UNITS_PER_GNC, energy_cost

# Ten intervals around midday, so that PV homes export and consumers buy from both the
# homes and the DSO, on forecasts with errors: some sellers deliver less than they sold.
SMALL: dict[str, Any] = {
    "simulation": {"intervals": 10, "start": "2026-06-21T10:30:00Z"},
    "homes": {"count": 8, "ack_own_meter_share": 0.5},
    "security": {"flagged_meters": 1, "trusting_share": 0.5},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    scenario = scenario_from_dict(SMALL, "small")
    a = tmp_path_factory.mktemp("a")
    first = simulate(scenario, a)
    second = simulate(scenario, tmp_path_factory.mktemp("b"))
    return first, second, a


def test_same_scenario_and_seed_give_the_same_chain_and_figures(runs: tuple[dict[str, Any], ...]) -> None:
    first, second, _ = runs
    assert first["chain"]["head"] == second["chain"]["head"]
    strip = ("timing", "nodes", "verify")
    assert {k: v for k, v in first.items() if k not in strip} == {
        k: v for k, v in second.items() if k not in strip
    }


def test_the_chain_is_audited_and_every_contract_ends(runs: tuple[Any, ...]) -> None:
    """Each contract is settled in full, or settled for what was delivered and closed with
    its remainder refunded; each home's balancing contract is closed at the end."""
    report, _, out = runs
    assert report["converged"] and report["verify"]["ok"]
    assert verify_chain(out / "chain").ok
    by_type = report["chain"]["transactions_by_type"]
    c = report["contracts"]
    assert c["opened"] == report["energy"]["contracts"] > 0
    assert by_type["OpenContract"] == c["opened"] + c["imbalance"]["balancing_contracts"]
    assert c["settled_in_full"] + c["delivered_short"] == c["opened"]
    assert c["delivered_short"] == c["closed_with_remainder"] > 0 and c["remainder_refunded_gnc"] > 0
    assert c["open_at_end"] == 0  # (contracts settled in full hold nothing: they need no close)
    assert c["imbalance"]["closed"] == c["imbalance"]["balancing_contracts"] == SMALL["homes"]["count"]
    assert by_type["CloseContract"] == c["closed_with_remainder"] + c["imbalance"]["closed"]
    assert by_type["SubmitReadings"] == SMALL["simulation"]["intervals"]
    assert report["transactions"]["refused"] == {}
    assert json.loads((out / "report.json").read_text())["chain"]["head"] == report["chain"]["head"]


def test_forecasts_miss_and_the_market_settles_what_meters_read(runs: tuple[Any, ...]) -> None:
    """Orders follow the forecast, settlement the meters: sellers short of what they sold are
    paid for what they delivered, and a device acknowledging less than the seller's meter
    shows is disputed on chain and loses. Buyers short of what they used buy the rest from
    the DSO at the imbalance price only as far as its substation meter shows it supplied the
    area: around midday the area feeds the grid, and their shortfall is the neighbours'
    export no contract sold (the winter's, below, is the DSO's)."""
    report, _, _ = runs
    assert report["forecast"]["net_energy_abs_error_percent"] > 5
    c = report["contracts"]
    assert c["disputes_raised"] >= 1 and c["disputes_resolved"] == c["disputes_raised"]
    imbalance = c["imbalance"]
    assert imbalance["bought_wh"] == imbalance["shortfall_wh"]
    assert imbalance["paid_gnc"] == pytest.approx(imbalance["bought_wh"] / 1000 * 0.40, abs=1e-6)
    assert report["energy"]["imported_unsold_wh"] > 0


def test_with_perfect_forecasts_every_contract_is_settled_in_full(tmp_path: Path) -> None:
    doc = {**SMALL, "homes": {"count": 8, "forecast_error": 0.0, "ack_own_meter_share": 0.0}}
    report = simulate(scenario_from_dict(doc, "perfect"), tmp_path / "p")
    c = report["contracts"]
    assert c["settled_in_full"] == c["opened"] > 0
    assert c["delivered_short"] == c["disputes_raised"] == c["closed_with_remainder"] == 0


def same_world(out: Path) -> Neighbourhood:
    """The SMALL scenario's participants (same keys, same meters), on a fresh network."""
    scenario = scenario_from_dict(SMALL, "small")
    return Neighbourhood(scenario, memory_network(scenario, out))


def test_energy_sold_equals_what_meters_exported(runs: tuple[Any, ...]) -> None:
    report, _, out = runs
    chain = Chain.open(out / "chain")
    try:
        sim = same_world(out / "unused")
        sim.close()
        view = chain.view()
        exported = sold = 0
        for home in sim.world.of(Home):
            assert home.meter is not None
            for i in range(sim.first, sim.first + SMALL["simulation"]["intervals"]):
                r = view.get(READINGS, reading_key(home.meter.meter_id, i))
                assert r is not None
                exported += r.exported_wh
                sold += r.sold_wh
                assert r.sold_wh <= r.exported_wh  # never paid for more than the meter signed
        energy = report["energy"]
        assert exported == energy["exported_wh"]
        assert sold == energy["p2p_wh"] + energy["sold_to_dso_wh"]
        assert energy["unsold_export_wh"] == exported - sold
    finally:
        chain.close()


def test_homes_pay_for_no_more_than_they_import_and_the_substation_reads_the_power_flow(
    runs: tuple[Any, ...],
) -> None:
    """In every interval each home's paid-for import (from homes, from the DSO, at the
    imbalance price, from aggregators) is within its meter's import, the DSO's sales as
    anyone's; and the DSO's substation meter signs the flow through the area's transformers:
    the homes' net import plus the cables' and transformers' losses (the power flow)."""
    report, _, out = runs
    homes = pq.read_table(out / "series" / "homes.parquet").to_pylist()
    for row in homes:
        paid = row["bought_p2p_wh"] + row["bought_dso_wh"] + row["imbalance_wh"] + row["bought_agg_wh"]
        assert paid <= row["import_wh"], (row["home"], row["interval"])
    assert report["energy"]["paid_not_imported_wh"] == 0
    through: dict[int, float] = {}
    for line in pq.read_table(out / "series" / "lines.parquet").to_pylist():
        flow = line["import_wh"] - line["export_wh"] + line["losses_wh"] + line["transformer_losses_wh"]
        through[line["interval"]] = through.get(line["interval"], 0.0) + flow
    sim = same_world(out / "unused-substation")
    sim.close()
    meter = sim.world.with_role("dso").meter
    assert meter is not None
    chain = Chain.open(out / "chain")
    try:
        view = chain.view()
        for i, wh in sorted(through.items()):
            r = view.get(READINGS, reading_key(meter.meter_id, i))
            assert r is not None
            assert r.exported_wh * r.imported_wh == 0  # (one direction in an interval)
            assert abs(r.exported_wh - r.imported_wh - wh) <= 1, i  # (to the Wh)
    finally:
        chain.close()


def test_subsidies_and_revenue_by_role(runs: tuple[Any, ...]) -> None:
    report, _, _ = runs
    rate = 2_000_000  # 0.02 GNC per kWh, the default
    assert report["subsidies"]["readings_subsidised"] > 0
    assert report["subsidies"]["paid_gnc"] > 0
    assert report["revenue_gnc"]["line_owners"] > 0
    assert report["revenue_gnc"]["prosumers"] > 0 > report["revenue_gnc"]["consumers"]
    assert energy_cost(1000, rate) == 2_000_000


def test_the_sun_and_the_season_drive_the_homes(runs: tuple[Any, ...], tmp_path: Path) -> None:
    """The same hours on 21 December under heavy clouds: a fraction of June's PV (pvlib's sun
    over Berlin), more load (BDEW's winter), and every kWh accounted for."""
    summer = runs[0]["energy"]
    winter_doc = {
        **SMALL,
        "simulation": {**SMALL["simulation"], "start": "2026-12-21T10:30:00Z"},
        "weather": {"sky": "clouds", "cloudiness": 0.9},
    }
    winter_report = simulate(scenario_from_dict(winter_doc, "winter"), tmp_path / "w")
    winter = winter_report["energy"]
    imbalance = winter_report["contracts"]["imbalance"]  # (the area draws from the grid)
    assert imbalance["bought_wh"] == imbalance["shortfall_wh"] > 0
    assert imbalance["paid_gnc"] == pytest.approx(imbalance["bought_wh"] / 1000 * 0.40, abs=1e-6)
    assert winter["paid_not_imported_wh"] == 0
    assert summer["pv_wh"] > 0 and winter["pv_wh"] < 0.3 * summer["pv_wh"]
    assert winter["load_wh"] > 1.2 * summer["load_wh"]
    for e in (summer, winter):
        assert e["exported_wh"] <= e["pv_wh"] and e["p2p_wh"] + e["sold_to_dso_wh"] <= e["exported_wh"]


LONG_FEEDER: dict[str, Any] = {
    **SMALL,
    "homes": {"count": 16, "pv_share": 1.0, "battery_share": 0.0, "pv_kw": [9.0, 10.0], "businesses": 0},
    "relay": {"hill_homes": 0},
    "weather": {"sky": "clear"},
    "grid": {"line_type": "NAYY 4x50 SE", "spacing_m": 150.0},
}
"""Eight homes 150 m apart on each of two thin cables (4x50 mm²), each with 9-10 kWp and no
battery, exporting at noon: the far ends rise above 1.1 pu."""


def test_every_interval_runs_a_power_flow_of_the_feeders(runs: tuple[Any, ...]) -> None:
    """Each line owner's feeder carries losses and stays in its band on the small default,
    so the DSO commands nothing."""
    report = runs[0]
    grid = report["grid"]
    assert [o["homes"] for o in grid["line_owners"]] == [4, 4]
    for owner in grid["line_owners"]:
        assert owner["losses_wh"] > 0 and owner["transformer_losses_wh"] > 0
        assert 0.9 < owner["v_min_pu"] <= owner["v_max_pu"] < 1.1
    assert grid["congested_intervals"] == 0 and report["timing"]["power_flow_s"] > 0
    assert report["dso"]["commands"] == report["dso"]["overrides_recorded"] == 0
    assert report["energy"]["curtailed_wh"] == 0


@pytest.fixture(scope="module")
def long_feeder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return simulate(scenario_from_dict(LONG_FEEDER, "long feeder"), tmp_path_factory.mktemp("long"))


def test_congestion_makes_the_dso_command_the_homes_downstream(long_feeder: dict[str, Any]) -> None:
    """The power flow, not a script, decides: over 1.1 pu at the far ends, the DSO signs
    curtailments for the homes downstream and sends them to their devices as datagrams; the
    homes whose policy trusts the DSO curtail, the others override on chain."""
    d, grid, energy = long_feeder["dso"], long_feeder["grid"], long_feeder["energy"]
    assert grid["congested_intervals"] > 0 and max(o["v_max_pu"] for o in grid["line_owners"]) > 1.1
    assert d["commands"] > 0 and set(d["commands_by_kind"]) == {"curtail_export"}
    assert 0 < d["homes_commanded"] < LONG_FEEDER["homes"]["count"]  # downstream only
    assert d["homes_following_commands"] > 0 and energy["curtailed_wh"] > 0
    assert d["overrides_recorded"] > 0  # 30% of PV homes do not trust the DSO for commands
    assert long_feeder["chain"]["transactions_by_type"]["RecordOverride"] == d["overrides_recorded"]
    assert long_feeder["relay"]["dropped"] == {}
    assert long_feeder["transactions"]["refused"] == {}


def test_a_load_the_feeders_cannot_carry_is_one_line_naming_the_interval(tmp_path: Path) -> None:
    """A business metering 1.6 MWh in 15 minutes (the scenario allows a year of 10^8 kWh)
    through one 250 kVA transformer: no power flow has a solution. It was pandapower's
    LoadflowNotConverged, a traceback, out of the middle of the run."""
    doc = {
        "simulation": {"intervals": 2, "start": "2026-06-21T10:00:00Z"},
        "homes": {"count": 2, "pv_share": 0.0, "businesses": 1, "business_kwh": 1e8},
        "relay": {"hill_homes": 0},
    }
    with pytest.raises(GridOverloaded) as info:
        simulate(scenario_from_dict(doc, "heavy.toml"), tmp_path / "out")
    assert str(info.value).startswith(
        "heavy.toml: the grid has no power flow in the interval from 2026-06-21 10:00 UTC: its feeders "
        "cannot carry what the homes metered ("
    )
    assert "lower [homes] business_kwh or pv_kw" in str(info.value)


def test_a_line_owner_can_set_its_fee_to_cover_its_losses(
    long_feeder: dict[str, Any], tmp_path: Path
) -> None:
    """The long feeder's cables lose more than its fee earns; with cover_losses the owner
    raises its fee to what pays for them at the DSO's retail price."""
    plain = long_feeder["grid"]["line_owners"]
    assert any(o["losses_cost_gnc"] > o["fees_earned_gnc"] for o in plain)
    owners = [
        {"name": "A", "fee": 0.01, "cover_losses": True},
        {"name": "B", "fee": 0.015, "cover_losses": True},
    ]
    covering = simulate(scenario_from_dict({**LONG_FEEDER, "line_owner": owners}, "covering"), tmp_path / "c")
    for before, after in zip(plain, covering["grid"]["line_owners"], strict=True):
        assert after["cover_losses"] and after["fee_gnc_per_kwh"] > before["fee_gnc_per_kwh"]
        assert after["fees_earned_gnc"] >= after["losses_cost_gnc"] > 0


def test_scenario_file_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    cases = {
        "[homes]\ncount = 'many'\n": "[homes] count must be an integer",
        "[homes]\npv_kw = [6, 3]\n": "[homes] pv_kw must be a [low, high] pair",
        "[planet]\nsun = 1\n": "unknown section",
        "[weather]\nsun = 1\n": "[weather]: unknown key(s) ['sun']",
        "[weather]\nsky = 'rain'\n": '[weather] sky must be "clear", "clouds" or "file"',
        "[weather]\ncloudiness = 1.5\n": "[weather] cloudiness must be 0 to 1",
        "[weather]\nsky = 'file'\n": '[weather] sky = "file" needs weather_file',
        "[site]\nlatitude = 100\n": "[site] latitude -90..90",
        "[homes]\nbusinesses = 11\n": "[homes] businesses must be 0 to the number of homes without PV",
        "[homes]\nbattery_efficiency = 0\n": "battery_efficiency above 0 and at most 1",
        "[homes]\ndaily_kwh = [6, 14]\n": "[homes]: unknown key(s) ['daily_kwh']",
        "[grid]\nv_max_pu = 0.95\n": "v_min_pu < 1 < v_max_pu",
        "[homes]\nload_profile = 'x9'\n": "[homes] load_profile and business_profile must be one of h0_dyn",
        "[site]\ntimezone = 'Mars/Olympus'\n": "[site] timezone is not a known time zone",
        "[dso]\nbuy_price = 0.5\nsell_price = 0.3\n": "buy_price must be positive and below sell_price",
        "[simulation]\nstart = 'noon'\n": "[simulation] start",
        "[[line_owner]]\nname = 'x'\n": "needs 'name' and 'fee'",
        "[[line_owner]]\nname = 'x'\nfee = 0.01\ncover_losses = 1\n": "cover_losses must be true/false",
        "[dso]\ncurtail_at = '12:00'\n": "[dso]: unknown key(s) ['curtail_at']",
        "[dso]\nimbalance_price = 0\n": "[dso] imbalance_price must be positive",
        "[dso]\ncommand_hold = 0\n": "command_hold at least 1",
        "[homes]\nforecast_error = 2.0\n": "[homes] forecast_error and ack_own_meter_share must be 0 to 1",
        "[simulation]\narea = 'north/south'\n": "[simulation] area: an area has only ASCII letters",
        "[simulation]\narea = ''\n": "[simulation] area: an area has 1 to 32 characters",
        # Numbers a run would overflow on, never finish with, or that model nothing physical:
        "[homes]\npv_share = nan\n": "[homes] pv_share must be a number (finite",
        "[homes]\nbattery_kw = inf\n": "[homes] battery_kw must be a number (finite",
        "[homes]\npv_kw = [inf, inf]\n": "[homes] pv_kw must be a [low, high] pair of numbers (finite",
        "[homes]\nstart_gnc = 1e30\n": "start_gnc must be a number (finite, and below 2**53",
        "[homes]\nstart_gnc = 1e12\n": "start_gnc must be 0 to 10,000,000",
        "[homes]\nstart_gnc = -5\n": "start_gnc must be 0 to 10,000,000",
        "[homes]\nbuy_cap = [-1, 0.3]\n": "prices, fees and the subsidy must be 0 to 1,000 GNC/kWh",
        "[homes]\npv_kw = [-6, -3]\n": "[homes] pv_kw must be within 0 to 1000",
        "[homes]\nbattery_kwh = [-1, 5]\n": "[homes] battery_kwh must be within 0.001 (1 Wh)",
        # (0.4 Wh made a battery of 0 Wh that the report counted among the homes with one)
        "[homes]\nbattery_kwh = [0.0001, 0.0004]\n": "[homes] battery_kwh must be within 0.001 (1 Wh)",
        "[homes]\nbattery_sell_above = 500\n": "battery_sell_above must be 0 to 100",
        "[grid]\nspacing_m = inf\n": "[grid] spacing_m must be a number (finite",
        "[grid]\nspacing_m = 1e9\n": "spacing_m at most 10000",
        "[chain]\ndifficulty_bits = 300\n": "difficulty_bits must be 1 to 32",
        "[chain]\ndispute_window_blocks = -1\n": "dispute_window_blocks must be 1 to 1000",
        "[network]\nlatency_ms = -5\n": "latency_ms and jitter_ms must be 0 to 60000",
        "[network]\ntick_s = 0.001\n": "tick_s must be 0.5 to 60",
        "[network]\nhashes_per_tick = 100000000000\n": "hashes_per_tick must be at most 1,000,000",
        "[simulation]\nstart = '9999-01-01T00:00:00Z'\n": "start must be in the years 1971 to 2199",
        "[simulation]\nstart = '1960-01-01T00:00:00Z'\n": "start: '1960-01-01T00:00:00Z' is before 1970",
        "[simulation]\nstart = '1970-06-01T00:00:00Z'\n": "start must be in the years 1971 to 2199",
        "[simulation]\nstart = 2026-06-21T00:00:00Z\n": 'put the date in quotes: "2026-06-21T00:00:00+00:00"',
        "[simulation]\nseed = -1\n": "seed must be 0 to 2**63 - 1",
        "[simulation]\nname = ''\n": "name must be 1 to 64 printable characters",
        "[currency]\nper_gnc = inf\n": "[currency] per_gnc must be a number (finite",
        "[weather]\ntemp_air_c = 100\n": "temp_air_c must be -60 to 60",
        "[site]\naltitude_m = 1e9\n": "altitude_m must be -500 to 9000",
        "[security]\nflagged_meters = 15\n": "flagged_meters must be at most the number of PV homes",
        # (taken before, each up to 2^52: a command held for 2^52 intervals, a limit of 2^52 W)
        "[dso]\nbalancing_every = 5000\n": "balancing_every and command_hold must be at most 2976",
        "[dso]\ncommand_hold = 5000\n": "balancing_every and command_hold must be at most 2976",
        "[dso]\nimport_limit_w = 100000000\n": "import_limit_w must be at most 10,000,000 (W)",
        "[relay]\nenabled = false\nhill_homes = -1\n": "[relay] hill_homes must be 0 to 1,000",
        "[grid]\nmax_loading_percent = 1e9\n": "max_loading_percent must be at most 1000",
        "[grid]\nv_max_pu = 5\n": "v_max_pu at most 2",
        "[[line_owner]]\nname = 'A'\nfee = 0.01\n[[line_owner]]\nname = 'A'\nfee = 0.02\n": "its own",
        "[line_owner]\nname = 'A'\nfee = 0.01\n": "write each as [[line_owner]] (two brackets)",
    }
    for text, fragment in cases.items():
        bad.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_scenario(bad)
        assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("tick_s", ["0", "0.0", "-5.0"])
def test_each_check_runs_only_once_the_checks_before_it_passed(tmp_path: Path, tick_s: str) -> None:
    """The checks are evaluated in order, each once those before it passed: tick_s = 0 was a
    ZeroDivisionError ('tick_s must divide 60' was computed before 'must be positive' was read)."""
    bad = tmp_path / "bad.toml"
    bad.write_text(f"[network]\ntick_s = {tick_s}\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(bad)
    assert str(info.value) == f"{bad}: [network] tick_s and hashes_per_tick must be positive"


@pytest.mark.parametrize("zone", ["America", "a" * 5000])
def test_a_time_zone_that_is_no_file_of_tzdata_is_unknown(tmp_path: Path, zone: str) -> None:
    """'America' is a directory of tzdata and 5,000 characters too long a file name: both were
    an OSError ('error: Is a directory: .../tzdata/zoneinfo/America')."""
    bad = tmp_path / "bad.toml"
    bad.write_text(f"[site]\ntimezone = '{zone}'\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(bad)
    assert str(info.value) == (
        f'{bad}: [site] timezone is not a known time zone: it must be an IANA name such as "Europe/Berlin"'
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[weather]\nsky = "file"\nweather_file = "a\\u0000b"\n', "[weather] weather_file"),
        ('[weather]\nsky = "clear"\nweather_file = "a\\u0000b"\n', "[weather] weather_file"),
        ('[policies]\nhome-1 = "a\\u0000b"\n', "[policies] home-1"),
    ],
)
def test_a_file_name_with_a_nul_character_is_refused_by_its_key(tmp_path: Path, text: str, key: str) -> None:
    """No file's name holds a NUL: the weather file's was a ValueError ('embedded null byte')
    as the file loaded, a policy file's one as the run built its homes."""
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_scenario(bad)
    assert str(info.value) == f"{bad}: {key}: 'a\\x00b' is not a file's path: it holds a NUL character"


def test_money_is_checked_in_the_base_units_a_run_uses() -> None:
    """A run turns GNC into whole base units (digits beyond the 8th decimal are dropped): the
    prices' checks compare those, not the decimals written (1e-9 and 2e-9 are both 0 units,
    and the DSO's bid and offer at 0 crossed: it traded with itself)."""
    units = "in base units of 0.00000001 GNC (further decimals are dropped)"
    cases = {
        (1e-9, 2e-9, 0.4): f"t.toml: [dso] buy_price must be positive and below sell_price {units}",
        (0.1, 0.100000009, 0.4): f"t.toml: [dso] buy_price must be positive and below sell_price {units}",
        (0.08, 0.3, 1e-9): f"t.toml: [dso] imbalance_price must be positive {units}",
    }
    for (buy, sell, imbalance), message in cases.items():
        dso = {"buy_price": buy, "sell_price": sell, "imbalance_price": imbalance}
        with pytest.raises(ConfigError) as info:
            scenario_from_dict({"dso": dso}, "t.toml")
        assert str(info.value) == message
    # 4 intervals: pools of 192 hashes; 0.00000192 GNC is 192 units (as a float, 1.92e-06 * 1e8
    # is 191.99999999999997: the check on the float refused it).
    short = {"simulation": {"intervals": 4}, "relay": {"pool_gnc": 0.00000192}}
    assert scenario_from_dict(short, "t.toml").relay.pool_gnc == 0.00000192
    with pytest.raises(ConfigError) as info:
        scenario_from_dict({**short, "relay": {"pool_gnc": 0.000001919}}, "t.toml")
    assert str(info.value) == (
        "t.toml: [relay] pool_gnc is too small: each of the pool's hashes must be worth a base unit"
    )


def test_a_home_starts_with_what_it_needs_to_take_part() -> None:
    """Its token pool, its balancing contract's deposit and its first transactions' fees: with
    0 GNC the homes' identities, pools and meters were refused (InsufficientBalance,
    UnknownMeter) and nothing said why."""
    with pytest.raises(ConfigError) as info:
        scenario_from_dict({"homes": {"start_gnc": 0}}, "t.toml")
    assert str(info.value) == (
        "t.toml: [homes] start_gnc must be at least 8.35004000 GNC, what a home locks and pays to take "
        "part: its token pool ([relay] pool_gnc), its balancing contract's deposit ([dso] balancing_kwh "
        "at imbalance_price plus the line fee) and its transactions' fees"
    )  # 0.05 pool + 20 kWh at 0.40 + 0.015 (feeder B's fee) + 4,000 bytes at 1 unit a byte
    # Without relays no pool; 5 kWh at 0.40 + 0.015, and the fees: 2.07504 GNC.
    lean = {"relay": {"enabled": False}, "dso": {"balancing_kwh": 5.0}}
    assert scenario_from_dict({**lean, "homes": {"start_gnc": 2.07504}}, "t.toml").homes.start_gnc == 2.07504
    with pytest.raises(
        ConfigError, match=r"^t\.toml: \[homes\] start_gnc must be at least 2\.07504000 GNC, "
    ):
        scenario_from_dict({**lean, "homes": {"start_gnc": 2.07503999}}, "t.toml")


def test_the_dso_and_the_government_start_with_what_they_need_to_set_up(tmp_path: Path) -> None:
    """With 0 GNC the DSO's identity, pools and authority were refused and the run did not
    converge; the summary said 'InsufficientBalance 11' and not whose."""
    for table, expected in (
        ("dso", "0.20004000 GNC, what it locks and pays to set up: its token pool for each home "),
        ("government", "0.00004000 GNC, what it locks and pays to set up: its first transactions' fees"),
    ):
        with pytest.raises(ConfigError) as info:
            scenario_from_dict({"homes": {"count": 4}, table: {"start_gnc": 0}}, "t.toml")
        assert str(info.value).startswith(f"t.toml: [{table}] start_gnc must be at least {expected}")
    # Funds for the setup but not for trading: the run names who was refused.
    poor = {**SMALL, "relay": {"enabled": False}, "dso": {"start_gnc": 0.00004}}
    report = simulate(scenario_from_dict(poor, "poor"), tmp_path / "out")
    assert "dso" in report["transactions"]["refused_by"]["InsufficientBalance"]


def test_the_weather_file_and_the_grid_equipment_are_checked_when_the_file_loads(tmp_path: Path) -> None:
    """They were refused while the run built, without the scenario file and key (``error: line
    type 'NOPE' is unknown: ...``); now with them, before anything else happens."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[grid]\nline_type = "NOPE"\n')
    with pytest.raises(ConfigError) as info:
        load_scenario(bad)
    assert str(info.value) == (
        f"{bad}: [grid] line_type 'NOPE' is not a pandapower standard line type; name one, "
        "e.g. 'NAYY 4x150 SE'"
    )
    file_sky = '[simulation]\nstart = "2026-06-21T10:00:00Z"\nintervals = 4\n[weather]\nsky = "file"\n'
    bad.write_text(file_sky + 'weather_file = "none.epw"\n')
    with pytest.raises(ConfigError) as info:
        load_scenario(bad)
    assert str(info.value) == (
        f"{bad}: [weather] weather_file: cannot read the weather file {tmp_path / 'none.epw'}: No such file "
        "or directory; give a TMY3 (.csv) or EPW (.epw) file"
    )
    # January's records of a TMY3 file (UTC-5): none for 21 June.
    tmy3 = (Path(pvlib.__file__).parent / "data" / "723170TYA.CSV").read_text().splitlines()
    (tmp_path / "january.csv").write_text("\n".join(tmy3[: 2 + 31 * 24]) + "\n")
    bad.write_text(file_sky + 'weather_file = "january.csv"\n')
    with pytest.raises(ConfigError) as info:
        load_scenario(bad)
    assert str(info.value) == (
        f"{bad}: [weather] weather_file: the weather file {tmp_path / 'january.csv'} has no record for "
        "06-21 05h; give one with a record for every hour of the run (a typical year's)"
    )


def test_the_default_scenario_file_loads() -> None:
    scenario = load_scenario(Path(__file__).parents[2] / "scenarios" / "neighbourhood.toml")
    assert isinstance(scenario, Scenario)
    assert scenario.homes.count == 20 and scenario.network.nodes == 3 and len(scenario.line_owners) == 2


def test_readings_travel_over_mqtt_and_give_the_same_chain(runs: tuple[Any, ...], tmp_path: Path) -> None:
    """meter -> in-process broker (127.0.0.1) -> collector -> block: none lost, same chain."""
    memory_report = runs[0]
    report = simulate(
        scenario_from_dict({**SMALL, "telemetry": {"kind": "mqtt"}}, "small-mqtt"), tmp_path / "m"
    )
    assert report["verify"]["ok"]
    assert report["chain"]["transactions_by_type"]["SubmitReadings"] == SMALL["simulation"]["intervals"]
    assert report["chain"]["head"] == memory_report["chain"]["head"]


def test_buyers_who_trust_the_flagger_never_buy_from_the_flagged_meter(runs: tuple[Any, ...]) -> None:
    report, _, out = runs
    assert report["security"]["flags_on_chain"] == 1
    sim = same_world(out / "unused-2")
    sim.close()
    flagged = flagged_meters(sim.world)[0]
    trusting = {h.address for h in sim.world.of(Home) if h.policy.trusted.get("meters")}
    chain = Chain.open(out / "chain")
    try:
        terms = [
            decode_lenient(v, ContractRecord).terms
            for k, v in chain.values.items()
            if k[:1] == CONTRACTS.prefix
        ]
    finally:
        chain.close()
    from_flagged = [t for t in terms if t.seller_meter == flagged]
    assert from_flagged, "the flagged meter still sells (to those who do not trust the flag)"
    assert all(t.buyer not in trusting for t in from_flagged)


def test_orders_and_states_travel_as_paid_datagrams(runs: tuple[Any, ...]) -> None:
    report, _, _ = runs
    relay = report["relay"]
    assert relay["enabled"] and relay["dropped"] == {} and relay["late_orders"] == 0
    assert relay["datagrams_delivered"] == relay["datagrams_sent"] > 0
    assert relay["carrier_forwarded"] > 0  # the hill homes' datagrams went by the carrier
    assert relay["claims_on_chain"] == report["chain"]["transactions_by_type"]["ClaimTransit"] > 0
    assert sum(relay["reward_per_relay_gnc"].values()) > 0 and relay["reward_per_relay_gnc"]["carrier"] > 0
    assert relay["bytes_saving_factor"] == relay["datagrams_per_claim"] > 1


def test_without_relays_the_market_still_clears(tmp_path: Path) -> None:
    report = simulate(scenario_from_dict({**SMALL, "relay": {"enabled": False}}, "no-relay"), tmp_path / "x")
    assert report["verify"]["ok"] and report["relay"] == {"enabled": False}
    by_type = report["chain"]["transactions_by_type"]
    assert by_type["OpenContract"] > 0 and by_type["SettleContract"] > 0 and "ClaimTransit" not in by_type
    c = report["contracts"]
    assert c["settled_in_full"] + c["delivered_short"] == c["opened"] > 0
    assert c["delivered_short"] == c["closed_with_remainder"]


# --- what a run writes for people to read ----------------------------------------------------


def test_every_run_writes_its_time_series(runs: tuple[Any, ...], tmp_path: Path) -> None:
    """OUT/series/: a Parquet table per kind with the documented columns, whose sums are the
    report's figures; CSV copies on request."""
    report, _, out = runs
    n, homes = SMALL["simulation"]["intervals"], SMALL["homes"]["count"]
    tables = {name: pq.read_table(out / "series" / f"{name}.parquet") for name in series.SCHEMAS}
    for name, table in tables.items():
        assert table.schema.remove_metadata() == series.SCHEMAS[name], name
        assert table.schema.metadata == {b"gridnet_series_version": str(series.SERIES_VERSION).encode()}
        assert report["series"]["tables"][name]["rows"] == table.num_rows
    rows = tables["homes"].to_pylist()
    assert len(rows) == homes * n
    energy, contracts = report["energy"], report["contracts"]
    assert sum(r["export_wh"] for r in rows) == energy["exported_wh"]
    assert (
        sum(r["pv_wh"] for r in rows) == energy["pv_wh"]
        and sum(r["load_wh"] for r in rows) == energy["load_wh"]
    )
    assert sum(r["sold_p2p_wh"] for r in rows) == sum(r["bought_p2p_wh"] for r in rows) == energy["p2p_wh"]
    assert sum(r["bought_dso_wh"] for r in rows) == energy["bought_from_dso_wh"]
    assert (
        sum(r["imbalance_wh"] for r in rows) == contracts["imbalance"]["bought_wh"]
    )  # (0: the area exports)
    by_home = {h["name"]: h for h in report["homes"]}
    for r in rows:
        if r["interval"] == report["scenario"]["first_interval"] + n - 1:  # the bill at the end
            assert r["bill_gnc"] == pytest.approx(by_home[r["home"]]["bill_gnc"], abs=1e-6)
    with_battery = [r for r in rows if r["battery_soc_percent"] is not None]
    assert with_battery and all(0 <= r["battery_soc_percent"] <= 100 for r in with_battery)
    lines = tables["lines"].to_pylist()
    assert len(lines) == len(report["grid"]["line_owners"]) * n
    for owner in report["grid"]["line_owners"]:
        mine = [r for r in lines if r["line_owner"] == owner["name"]]
        assert sum(r["losses_wh"] for r in mine) == pytest.approx(owner["losses_wh"], abs=0.1)
        assert max(r["v_max_pu"] for r in mine) == pytest.approx(owner["v_max_pu"], abs=1e-4)
        assert min(r["v_min_pu"] for r in mine) == pytest.approx(owner["v_min_pu"], abs=1e-4)
    market = tables["market"].to_pylist()
    assert [r["price_gnc_per_kwh"] for r in market] == [
        c["price_gnc_per_kwh"] for c in report["clearing_price"]["per_interval"]
    ]
    assert sum(r["contracts"] for r in market) == energy["contracts"]
    priced = [r for r in market if r["price_gnc_per_kwh"] is not None]
    weighted = sum(r["price_gnc_per_kwh"] * r["traded_wh"] for r in priced) / sum(
        r["traded_wh"] for r in priced
    )
    assert report["clearing_price"]["traded_weighted_gnc_per_kwh"] == pytest.approx(weighted, abs=1e-6)
    orders = tables["orders"].to_pylist()
    for m in market:  # each interval's book: every order the hub cleared, and what it traded
        book = [o for o in orders if o["interval"] == m["interval"]]
        assert (
            sum(o["side"] == "bid" for o in book) == m["bids"]
            and sum(o["side"] == "offer" for o in book) == m["offers"]
        )
        assert sum(o["traded_wh"] for o in book if o["side"] == "bid") == m["traded_wh"]
        assert sum(o["traded_wh"] for o in book if o["side"] == "offer") == m["traded_wh"]
        assert all(0 <= o["traded_wh"] <= o["wh"] for o in book)
    relays = {r["relay"]: r["pay_gnc"] for r in tables["relays"].to_pylist()}
    assert {k: v for k, v in relays.items() if v} == report["relay"]["reward_per_relay_gnc"]
    written = series.write_series(tmp_path, tables, csv=True)
    for name, table in tables.items():
        text = (tmp_path / written["tables"][name]["csv"]).read_text().splitlines()
        assert len(text) == table.num_rows + 1 and text[0].split(",")[0] == f'"{table.column_names[0]}"'


def test_the_report_is_one_a_person_can_read(runs: tuple[Any, ...]) -> None:
    """A schema version, ISO times beside interval numbers, prices in GNC/kWh, every scenario
    value the run used, a summary per home and the block subsidy apart from the energy."""
    report = runs[0]
    assert report["schema_version"] == 2
    sc = report["scenario"]
    assert (sc["start_utc"], sc["end_utc"]) == ("2026-06-21T10:30:00Z", "2026-06-21T13:00:00Z")
    assert sc["weather_filled_hours"] == 0
    resolved = sc["resolved"]
    assert resolved["homes"]["count"] == 8 and resolved["homes"]["ack_own_meter_share"] == 0.5  # the file's
    assert resolved["dso"]["imbalance_price"] == 0.40 and resolved["site"]["latitude"] == 52.52  # defaults
    assert [o["name"] for o in resolved["line_owner"]] == ["Feeder A Lines", "Feeder B Lines"]
    first = report["clearing_price"]["per_interval"][0]
    assert first["time_utc"] == "2026-06-21T10:30:00Z" and first["interval"] == sc["first_interval"]
    assert "price" not in first and 0.04 <= first["price_gnc_per_kwh"] <= 0.40
    homes = report["homes"]
    assert len(homes) == 8 and sum(h["business"] for h in homes) == 1
    for h in homes:
        assert h["savings_gnc"] == pytest.approx(h["all_from_dso_gnc"] - h["bill_gnc"], abs=1e-5)
        assert (h["self_consumption_percent"] is None) == (h["pv_kw"] == 0)
    assert any(h["savings_gnc"] > 0 for h in homes if h["pv_kw"])
    economy = report["economy"]
    assert economy["block_subsidy_gnc"] == pytest.approx(
        economy["block_subsidy_per_block_gnc"] * report["chain"]["height"]
    )
    assert economy["block_subsidy_gnc"] > 100 * economy["homes_paid_gnc"] > 0
    assert "block subsidy" in economy["note"] and "new coin" in economy["note"]


def test_the_economys_totals_are_the_sums_of_the_homes_figures(runs: tuple[Any, ...]) -> None:
    """``economy.homes_paid_gnc`` is the sum of ``homes[].paid_gnc`` (and earned, and each
    home's bill its paid less its earned) to the last decimal: every figure is whole base
    units, summed as integers (each rounded apart to 6 decimals, a total read 0.867983 beside
    the homes' 0.867984)."""
    report = runs[0]
    homes, economy = report["homes"], report["economy"]

    def units(x: float) -> Decimal:
        return Decimal(str(x)) * UNITS_PER_GNC

    for key in ("paid", "earned"):
        assert all(units(h[f"{key}_gnc"]) == int(units(h[f"{key}_gnc"])) for h in homes)
        assert sum(units(h[f"{key}_gnc"]) for h in homes) == units(economy[f"homes_{key}_gnc"])
    assert all(units(h["bill_gnc"]) == units(h["paid_gnc"]) - units(h["earned_gnc"]) for h in homes)
    # Two homes' 140 base units each: 0.0000028 in all (rounded apart: 0.000001 each, 0.000003 in all).
    rows = [{"home": f"home-{i}", "paid_gnc": 140 / UNITS_PER_GNC, "earned_gnc": 0.0} for i in (0, 1)]
    assert economy_report(rows, 0, 0, 0)["homes_paid_gnc"] == 0.0000028


def test_the_summary_shows_a_small_energy_in_wh(
    runs: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below 0.1 kWh the summary says Wh: a shortfall of 26 Wh read "0.0 kWh for 0.0104 GNC"."""
    assert [_kwh(wh) for wh in (0, 26, 99, 100, 4_700, -26, 12.5)] == [
        "0.0 kWh", "26 Wh", "99 Wh", "0.1 kWh", "4.7 kWh", "-26 Wh", "12.5 Wh"
    ]  # fmt: skip
    report, _, out = runs
    imbalance = {
        **report["contracts"]["imbalance"],
        "bought_wh": 26,
        "paid_gnc": 0.0104,
        "price_gnc_per_kwh": 0.4,
    }
    shown = {**report, "contracts": {**report["contracts"], "imbalance": imbalance}}
    printed = io.StringIO()
    monkeypatch.setattr(console, "file", printed)
    monkeypatch.setattr(console, "width", 1000)
    print_simulation_summary(shown, out, out / "chain")
    assert "shortfall bought from the DSO at 0.4 GNC/kWh: 26 Wh for 0.0104 GNC" in printed.getvalue()


def test_every_run_draws_its_plots(runs: tuple[Any, ...]) -> None:
    """OUT/plots/: a PNG per view of the run, drawn without a display."""
    report, _, out = runs
    assert report["plots"] == [
        "plots/prices.png",
        "plots/energy.png",
        "plots/feeders.png",
        "plots/batteries.png",
        "plots/money.png",
        "plots/relays.png",
    ]
    for name in report["plots"]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 900 and height >= 400, name


def test_a_scenario_refused_while_it_builds_leaves_the_earlier_results(tmp_path: Path) -> None:
    """The role tables, policies and chain parameters are checked while the run builds: the
    results already in ``--out`` are replaced only once it has built."""
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).write_text("written by gridnet simulate\n")
    (out / "report.json").write_text("{}")
    bad = scenario_from_dict({**SMALL, "helios": {"enabled": True, "threshold": 4}}, "bad-helios")
    with pytest.raises(ConfigError, match="threshold 1 to members"):
        simulate(bad, out)
    assert (out / "report.json").read_text() == "{}"
    fresh = tmp_path / "fresh"  # (a directory made for the run is not left behind, empty)
    with pytest.raises(ConfigError, match="threshold 1 to members"):
        simulate(bad, fresh)
    assert not fresh.exists()
    # A devnet's run of a scenario is the same kind of results: simulate replaces it.
    (out / MARKER).write_text("written by gridnet devnet; safe to delete\n")
    assert check_out_dir(out, "simulate")
    # A devnet without a scenario writes no results: it does not replace a run's.
    for written in ("simulate", "devnet"):
        (out / MARKER).write_text(f"written by gridnet {written}; safe to delete\n")
        with pytest.raises(ConfigError, match=f"holds the results of 'gridnet {written}'"):
            prepare_out_dir(out, "devnet", results=False)
        assert (out / "report.json").read_text() == "{}"
    # Another command's results are not replaced.
    (out / MARKER).write_text("written by gridnet ledger-demo; safe to delete\n")
    with pytest.raises(ConfigError, match="holds the results of 'gridnet ledger-demo'"):
        simulate(scenario_from_dict(SMALL, "small"), out)
    assert (out / "report.json").read_text() == "{}"


TINY: dict[str, Any] = {
    "simulation": {"intervals": 2, "start": "2026-06-21T11:00:00Z"},
    "homes": {"count": 4},
    "relay": {"enabled": False},
    "network": {"nodes": 1},
}
"""Two intervals, four homes, one node: a run of a second or two."""


def _files(out: Path) -> dict[str, bytes]:
    """Every file in ``out`` but what a run writes before it is complete."""
    found = (p for p in sorted(out.rglob("*")) if p.is_file() and STAGING not in p.relative_to(out).parts)
    return {str(p.relative_to(out)): p.read_bytes() for p in found}


def test_a_run_that_fails_after_the_simulation_leaves_the_earlier_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's plots are drawn after the whole simulation: one that failed there (matplotlib's
    mathtext on a line owner named "Feeder $\\frac$ lines", before the plots drew names as text)
    had deleted the earlier run's results as it began, and left a run without its report. A
    run now writes in OUT/.gridnet-new, whose files take the earlier ones' place only once it
    is complete: a failure, however late, is one line and leaves OUT as it was (what the run
    wrote stays in OUT/.gridnet-new until the next run)."""
    out = tmp_path / "run"
    simulate(scenario_from_dict(TINY, "tiny"), out)
    before, names = _files(out), sorted(p.name for p in out.iterdir())
    assert names == sorted([MARKER, LOCK_NAME, "report.json", "chain", "series", "plots"])
    owner = {"name": "Feeder $\\frac$ lines", "fee": 0.01}
    named = scenario_from_dict({**TINY, "line_owner": [owner]}, "named")
    monkeypatch.setitem(plots.matplotlib.rcParams, "text.parse_math", True)  # (as the plots drew before)
    with pytest.raises(PlotFailed) as info:
        simulate(named, out)
    assert _files(out) == before and sorted(p.name for p in out.iterdir()) == sorted([*names, STAGING])
    assert verify_chain(out / STAGING / "chain").ok and not (out / STAGING / "report.json").exists()
    message = str(info.value)
    assert message.startswith("the run's plot plots/feeders.png could not be drawn (ValueError: ")
    assert message.endswith(
        "; the run is incomplete and replaces no earlier results (GRIDNET_TRACEBACK=1 shows where it failed)"
    )
    assert "\n" not in message
    # A complete run replaces them, whole (and what the failed one wrote).
    monkeypatch.undo()
    report = simulate(named, out)
    assert sorted(p.name for p in out.iterdir()) == names
    assert json.loads((out / "report.json").read_text())["chain"]["head"] == report["chain"]["head"]
    assert [o["name"] for o in report["grid"]["line_owners"]] == [owner["name"]]
    assert verify_chain(out / "chain").ok
    # A directory made for a run that failed is the next run's to replace (its marker is written
    # as the run begins, beside what it wrote).
    fresh = tmp_path / "fresh"
    monkeypatch.setitem(plots.matplotlib.rcParams, "text.parse_math", True)
    with pytest.raises(PlotFailed):
        simulate(named, fresh)
    monkeypatch.undo()
    simulate(named, fresh)
    assert sorted(p.name for p in fresh.iterdir()) == names


def test_a_file_the_run_reads_inside_its_output_directory_is_refused_and_kept(tmp_path: Path) -> None:
    """``gridnet simulate o5/my.toml --out o5`` deleted the scenario file it ran (and all else in
    o5) as it replaced the earlier run there: a scenario file, or a file it names (a policy, the
    weather file), inside ``--out`` is refused in one line before anything is deleted."""
    out = tmp_path / "o5"
    out.mkdir()
    (out / MARKER).write_text("written by gridnet simulate; safe to delete\n")
    (out / "report.json").write_text("{}")
    mine = out / "my.toml"
    mine.write_text("[simulation]\nintervals = 2\n[homes]\ncount = 4\n[relay]\nenabled = false\n")
    done = subprocess.run(
        [sys.executable, "-m", "gridnet", "simulate", "o5/my.toml", "--out", "o5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: the scenario file o5/my.toml is inside --out o5, where 'gridnet simulate' deletes what an "
        "earlier run wrote; choose another --out (or move the file out of it)"
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "my.toml", "report.json"])
    # A policy it names, here beside the scenario through a path into --out.
    (out / "quiet.toml").write_text("# neither buys nor sells\n")
    scenario = tmp_path / "s.toml"
    scenario.write_text(mine.read_text() + '[policies]\nhome-0 = "o5/quiet.toml"\n')
    with pytest.raises(ConfigError) as info:
        simulate(load_scenario(scenario), out)
    assert str(info.value) == (
        f"[policies] home-0's file {out / 'quiet.toml'} is inside --out {out}, where 'gridnet simulate' "
        "deletes what an earlier run wrote; choose another --out (or move the file out of it)"
    )
    assert (out / "quiet.toml").exists() and (out / "report.json").read_text() == "{}"
    simulate(load_scenario(scenario), tmp_path / "elsewhere")  # (outside --out it runs)


def test_an_output_directory_another_run_writes_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A second run into the same ``--out`` is refused while the first writes it (it would
    delete the first's results under it), naming the process; the directory is free again
    once that process ends."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from gridnet.sim.output import prepare_out_dir\n"
            "lock = prepare_out_dir(Path(sys.argv[1]), 'simulate')\n"
            "(Path(sys.argv[1]) / 'report.json').write_text('{}')\n"
            "print('held', flush=True); sys.stdin.read()",
            str(out),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        for attempt in (
            lambda: simulate(scenario_from_dict(SMALL, "small"), out),
            lambda: prepare_out_dir(out, "devnet"),
        ):
            with pytest.raises(DataDirLocked) as info:
                attempt()
            assert str(info.value).startswith(f"output directory {out} is in use by process {holder.pid} (")
            assert str(info.value).endswith("); wait for it to finish")
            assert (out / "report.json").read_text() == "{}"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    prepare_out_dir(out, "simulate").release()
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, LOCK_NAME])


def test_a_manufacturer_table_naming_no_meter_leaves_the_earlier_results(tmp_path: Path) -> None:
    """The meters ``[manufacturer]`` names are checked once every role is built, before the
    nodes start: not when the manufacturer bootstraps, after ``--out`` was replaced."""
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).write_text("written by gridnet simulate\n")
    (out / "report.json").write_text("{}")
    for key, name in (("outdated", "home-99"), ("not_updatable", "carrier")):
        bad = scenario_from_dict({**SMALL, "manufacturer": {key: [name]}}, "bad.toml")
        with pytest.raises(ConfigError) as info:
            simulate(bad, out)
        assert str(info.value) == (
            f"bad.toml: [manufacturer] {key} names {name!r}, which has no meter "
            "(name homes as home-0, home-1, ...)"
        )
        assert sorted(p.name for p in out.iterdir()) == [MARKER, "report.json"]
        assert (out / "report.json").read_text() == "{}"


def test_every_count_of_homes_runs_on_the_defaults() -> None:
    """The default hill homes (2) and businesses (1) fit what a small street has room for; a
    value the file sets is checked as written."""
    for count in range(2, 12):
        s = scenario_from_dict({"homes": {"count": count}}, f"{count}-homes")
        without_pv = count - round(count * s.homes.pv_share)
        assert s.relay.hill_homes == min(2, without_pv)
        assert s.homes.businesses == min(1, without_pv - s.relay.hill_homes)
    with pytest.raises(ConfigError, match="hill_homes must be 0 to the number of homes without PV"):
        scenario_from_dict({"homes": {"count": 3}, "relay": {"hill_homes": 2}}, "set")


def test_a_battery_moves_at_most_its_power_in_an_interval(tmp_path: Path) -> None:
    """Evening sell-down: homes that cover their load from the battery and sell it down in the
    same interval share one limit (a 1 kW battery delivered 286 Wh in 15 minutes)."""
    doc = {
        "simulation": {"intervals": 8, "start": "2026-06-21T17:00:00Z"},
        "homes": {
            **{"count": 4, "battery_share": 1.0, "battery_kw": 1.0, "battery_kwh": [8.0, 8.0]},
            **{"battery_sell_above": 30.0, "battery_buy_below": 10.0},
        },
    }
    simulate(scenario_from_dict(doc, "sell-down"), tmp_path / "s")
    rows = pq.read_table(tmp_path / "s" / "series" / "homes.parquet").to_pylist()
    moved = [r["pv_wh"] + r["import_wh"] - r["load_wh"] - r["export_wh"] - r["curtailed_wh"] for r in rows]
    assert max(abs(m) for m in moved) <= 250
    assert min(moved) == -250  # (the homes do sell down at full power)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("n" * 256, "a name in it is 256 bytes long (at most 255)"),
        ("d/" * 2100, "bytes long (at most 4,095)"),
    ],
)
@pytest.mark.parametrize(
    ("table", "key"), [("[weather]\nsky = 'file'\n", "weather_file"), ("[policies]\n", "home-1")]
)
def test_a_file_name_too_long_for_a_file_system_is_refused_by_its_key(
    tmp_path: Path, name: str, problem: str, table: str, key: str
) -> None:
    """A name no file system takes (a name over 255 bytes, a path over 4,095) passed the
    loader: the run failed late ('File name too long', the policy's as the homes were built).
    The sweep file's paths were checked so; a scenario's are by the same rule (path_problem)."""
    bad = tmp_path / "bad.toml"
    bad.write_text(f"{table}{key} = '{name}'\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(bad)
    assert "is not a file's path: " in str(info.value) and str(info.value).endswith(problem)
    assert str(info.value).startswith(f"{bad}: [{table.split(']')[0][1:]}] {key}: ")
