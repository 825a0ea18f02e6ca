"""The neighbourhood simulation: reproducible, audited, and its books balance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gridnet.encoding import decode_lenient
from gridnet.errors import ConfigError
from gridnet.ledger.chain import Chain
from gridnet.ledger.txs.contract import CONTRACTS, ContractRecord
from gridnet.ledger.txs.meter import READINGS, reading_key
from gridnet.ledger.verify import verify_chain
from gridnet.sim.neighbourhood import Neighbourhood, memory_network, simulate
from gridnet.sim.scenario import Scenario, load_scenario, scenario_from_dict
from gridnet.units import energy_cost

# Ten intervals around midday, so that PV homes export, the DSO curtails one interval,
# and consumers buy from both the homes and the DSO.
SMALL: dict[str, Any] = {
    "simulation": {"intervals": 10, "start": "2026-06-21T10:30:00Z"},
    "homes": {"count": 8},
    "dso": {"curtail_at": "11:30"},
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


def test_the_chain_is_audited_and_every_contract_settled(runs: tuple[Any, ...]) -> None:
    report, _, out = runs
    assert report["converged"] and report["verify"]["ok"]
    assert verify_chain(out / "chain").ok
    by_type = report["chain"]["transactions_by_type"]
    assert by_type["OpenContract"] == by_type["SettleContract"] == report["energy"]["contracts"] > 0
    assert by_type["SubmitReadings"] == SMALL["simulation"]["intervals"]
    assert report["transactions"]["refused"] == {}
    assert json.loads((out / "report.json").read_text())["chain"]["head"] == report["chain"]["head"]


def same_people(out: Path) -> Neighbourhood:
    """The SMALL scenario's participants (same keys, same meters), on a fresh network."""
    scenario = scenario_from_dict(SMALL, "small")
    return Neighbourhood(scenario, memory_network(scenario, out))


def test_energy_sold_equals_what_meters_exported(runs: tuple[Any, ...]) -> None:
    report, _, out = runs
    chain = Chain.open(out / "chain")
    try:
        sim = same_people(out / "unused")
        sim.close()
        view = chain.view()
        exported = sold = 0
        for home in sim.homes:
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
        assert energy["unsold_export_wh"] == exported - sold == 0  # floors at most the feed-in price
    finally:
        chain.close()


def test_midday_curtailment_and_overrides(runs: tuple[Any, ...]) -> None:
    report, _, _ = runs
    assert report["dso"]["curtailment_utc"] == "11:30"
    assert report["dso"]["overrides_recorded"] >= 1
    assert report["energy"]["curtailed_wh"] > 0


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
    winter = simulate(scenario_from_dict(winter_doc, "winter"), tmp_path / "w")["energy"]
    assert summer["pv_wh"] > 0 and winter["pv_wh"] < 0.3 * summer["pv_wh"]
    assert winter["load_wh"] > 1.2 * summer["load_wh"]
    for e in (summer, winter):
        assert e["exported_wh"] <= e["pv_wh"] and e["p2p_wh"] + e["sold_to_dso_wh"] <= e["exported_wh"]


def test_every_interval_runs_a_power_flow_of_the_feeders(runs: tuple[Any, ...], tmp_path: Path) -> None:
    """Each line owner's feeder carries losses and stays in its band on the small default; a
    long feeder of thin cable (eight homes 150 m apart on 4x50 mm², each with 9-10 kWp and no
    battery) exporting at noon leaves it (over 1.1 pu), and the intervals are counted."""
    grid = runs[0]["grid"]
    assert [o["homes"] for o in grid["line_owners"]] == [4, 4]
    for owner in grid["line_owners"]:
        assert owner["losses_wh"] > 0 and owner["transformer_losses_wh"] > 0
        assert 0.9 < owner["v_min_pu"] <= owner["v_max_pu"] < 1.1
    assert grid["congested_intervals"] == 0 and runs[0]["timing"]["power_flow_s"] > 0
    long_doc = {
        **SMALL,
        "homes": {"count": 16, "pv_share": 1.0, "battery_share": 0.0, "pv_kw": [9.0, 10.0], "businesses": 0},
        "relay": {"hill_homes": 0},
        "weather": {"sky": "clear"},
        "grid": {"line_type": "NAYY 4x50 SE", "spacing_m": 150.0},
    }
    congested = simulate(scenario_from_dict(long_doc, "long feeder"), tmp_path / "long")["grid"]
    assert congested["congested_intervals"] > 0
    assert max(o["v_max_pu"] for o in congested["line_owners"]) > 1.1


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
        "[site]\ntimezone = 'Mars/Olympus'\n": "[site] timezone must be an IANA name",
        "[dso]\nbuy_price = 0.5\nsell_price = 0.3\n": "buy_price must be positive and below sell_price",
        "[simulation]\nstart = 'noon'\n": "[simulation] start",
        "[[line_owner]]\nname = 'x'\n": "needs exactly 'name' and 'fee'",
    }
    for text, fragment in cases.items():
        bad.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_scenario(bad)
        assert fragment in str(info.value) and "\n" not in str(info.value)


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
    sim = same_people(out / "unused-2")
    sim.close()
    flagged = sim.flagged_homes()[0].meter
    assert flagged is not None
    trusting = {h.address for h in sim.homes if h.policy is not None and h.policy.trusted}
    chain = Chain.open(out / "chain")
    try:
        terms = [
            decode_lenient(v, ContractRecord).terms
            for k, v in chain.values.items()
            if k[:1] == CONTRACTS.prefix
        ]
    finally:
        chain.close()
    from_flagged = [t for t in terms if t.seller_meter == flagged.meter_id]
    assert from_flagged, "the flagged meter still sells (to those who do not trust the flag)"
    assert all(t.buyer not in trusting for t in from_flagged)


@pytest.mark.parametrize("at", ["11:20", "25:00", "noon"])
def test_a_bad_curtailment_time_is_refused_when_the_scenario_loads(at: str) -> None:
    with pytest.raises(ConfigError, match="curtail_at"):
        scenario_from_dict({"dso": {"curtail_at": at}}, "s.toml")


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
    assert by_type["OpenContract"] == by_type["SettleContract"] > 0 and "ClaimTransit" not in by_type
