"""A run's plots: every label inside its figure, the market's volumes per interval."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from gridnet.dashboard.app import _mix_chart
from gridnet.sim import mix, plots

START = datetime(2026, 6, 21, tzinfo=UTC)


def _time(i: int) -> datetime:
    return START + timedelta(minutes=15 * i)


def _market(intervals: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "interval": i,
            "time": _time(i),
            "traded_wh": 1000 * (i + 1),
            "p2p_wh": 500,
            "price_gnc_per_kwh": 0.1 + i / 1000,
        }
        for i in intervals
    ]


def test_a_markets_volume_is_summed_per_interval_and_an_interval_without_rows_is_zero() -> None:
    rows = _market([2, 2, 5])
    edges, (traded, p2p) = plots._per_interval(rows, ("traded_wh", "p2p_wh"))
    assert traded == [6.0, 0.0, 0.0, 6.0]  # two rows of interval 2 (3 kWh each); 3 and 4 had none
    assert p2p == [1.0, 0.0, 0.0, 0.5]
    assert len(edges) == len(traded) + 1
    start = float(mdates.date2num(_time(2)))
    assert edges == pytest.approx([start + k * 15 / 1440 for k in range(5)])
    assert plots._per_interval([], ("traded_wh",)) == ([], [[]])


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """The figures the plots draw, kept open after they are written."""
    figures: list[Figure] = []
    close = plt.close
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    for fig in figures:
        close(fig)


def _homes(n: int) -> list[dict[str, Any]]:
    return [
        {
            "home": f"home-{h:03d}",
            "time": _time(i),
            "load_wh": 900 + 40 * h,
            "import_wh": 400,
            "bought_p2p_wh": 250,
            "bought_dso_wh": 150,
            "imbalance_wh": 0,
            "export_wh": 120_000 * (i % 7),
            "battery_soc_percent": float(i % 100),
        }
        for h in range(n)
        for i in range(96)
    ]


def _lines(owners: int) -> list[dict[str, Any]]:
    return [
        {
            "line_owner": f"Feeder {o} Lines",
            "time": _time(i),
            "max_loading_percent": 30.0 + i % 50,
            "v_min_pu": 0.97,
            "v_max_pu": 1.02,
            "v_end_pu": 0.98,
        }
        for o in range(owners)
        for i in range(96)
    ]


REPORT = {
    "revenue_gnc": {"prosumers": 12.5, "consumers": -30.25, "line_owners": 2.0, "dso": 18.0, "miners": 9.0},
    "relay": {"reward_per_relay_gnc": {"r1": 0.5}},
    "economy": {"block_subsidy_gnc": 15250, "transaction_fees_gnc": 0.0162},
}


@pytest.mark.parametrize("homes,owners,relays", [(3, 2, 6), (120, 10, 300)])
def test_every_plots_labels_lie_inside_its_figure(
    tmp_path: Path, drawn: list[Figure], homes: int, owners: int, relays: int
) -> None:
    """The fixed margins leave room for every plot's labels, title and legend (nothing is cut
    off at an edge of the PNG), for a small area and a large one."""
    relay_rows = [
        {"relay": f"relay-{r:03d}", "datagrams_forwarded": 10 * r, "pay_gnc": r / 100} for r in range(relays)
    ]
    limits = {"max_loading_percent": 100.0, "v_min_pu": 0.95, "v_max_pu": 1.05}
    plots.prices(tmp_path / "prices.png", _market(list(range(96))))
    plots.energy(tmp_path / "energy.png", _homes(homes))
    plots.feeders(tmp_path / "feeders.png", _lines(owners), limits)
    plots.batteries(tmp_path / "batteries.png", _homes(homes))
    plots.money(tmp_path / "money.png", REPORT)
    plots.relays(tmp_path / "relays.png", relay_rows)
    plots.relays(tmp_path / "no-relays.png", [])
    assert len(drawn) == 7
    for fig in drawn:
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        inside = fig.get_tightbbox(renderer)  # [inches]
        width, height = fig.get_size_inches()
        title = fig.axes[0].get_title(loc="left")
        assert inside.x0 >= 0 and inside.y0 >= 0, title
        assert inside.x1 <= width and inside.y1 <= height, title


def test_a_run_without_auctions_still_draws_its_market_plot(tmp_path: Path, drawn: list[Figure]) -> None:
    plots.prices(tmp_path / "prices.png", [])
    assert (tmp_path / "prices.png").stat().st_size > 0


def test_the_energy_mix_adds_up_to_the_load_whatever_was_bought() -> None:
    """More bought than imported (a buyer acknowledges its sellers' meters), less (imported
    without a contract), or an import that charged a battery: the stack is the load."""
    base = {**_homes(1)[0], "bought_p2p_wh": 0, "bought_dso_wh": 0, "imbalance_wh": 0}
    rows = [
        {**base, "load_wh": 900, "import_wh": 400, "bought_p2p_wh": 500, "bought_dso_wh": 100},
        {**base, "home": "b", "load_wh": 900, "import_wh": 400, "bought_p2p_wh": 100},
        {**base, "home": "c", "load_wh": 300, "import_wh": 2_000, "imbalance_wh": 50},
    ]
    (row,) = mix.energy_mix(rows).values()
    assert sum(row[k] for k in mix.MIX) == pytest.approx(row["load"]) == pytest.approx(2.1)
    assert row["unbought"] == pytest.approx(0.3 + 0.25)  # b: 0.4 - 0.1 kWh; c: 0.3 - 0.05
    assert row["p2p"] == pytest.approx(0.4 * 5 / 6 + 0.1) and row["own"] == pytest.approx(0.5 + 0.5)


def test_the_dashboard_draws_the_run_plots_energy_mix() -> None:
    """The dashboard's mix stacked everything bought on top of the load not imported: 193.9
    kWh against a load of 186.7 in the default day. It now draws the plot's mix, which adds up
    to the load, and says its times are UTC."""
    base = {**_homes(1)[0], "bought_p2p_wh": 0, "bought_dso_wh": 0, "imbalance_wh": 0}
    rows = [
        {**base, "load_wh": 900, "import_wh": 400, "bought_p2p_wh": 500, "bought_dso_wh": 100},
        {**base, "home": "b", "load_wh": 900, "import_wh": 400, "bought_p2p_wh": 100},
    ]
    drawn = json.loads(_mix_chart(rows))
    stacked = sum(d["data"][0] for d in drawn["data"]["datasets"])
    assert stacked == pytest.approx(1.8)  # the two homes' load [kWh]
    assert [d["label"] for d in drawn["data"]["datasets"]] == [label for _, label, _ in mix.MIX_PARTS]
    assert "UTC" in drawn["options"]["scales"]["x"]["title"]["text"]


def test_the_money_plot_counts_relay_pay_once(tmp_path: Path, drawn: list[Figure]) -> None:
    """The homes' relay pay is in the prosumers' and consumers' revenue already: only the
    carrier's, in no role, gets a bar of its own."""
    report = {**REPORT, "relay": {"reward_per_relay_gnc": {"carrier": 0.75, "home-1": 0.5}}}
    plots.money(tmp_path / "money.png", report)
    plots.money(tmp_path / "no-carrier.png", REPORT)
    bars = [
        {
            label.get_text(): patch.get_width()
            for label, patch in zip(ax.get_yticklabels(), ax.patches, strict=True)
        }
        for fig in drawn
        for ax in fig.axes[:1]
    ]
    assert bars[0] == {
        "prosumers": 12.5,
        "consumers": -30.25,
        "line_owners": 2.0,
        "dso": 18.0,
        "relay carrier": 0.75,
    }
    assert "relay carrier" not in bars[1] and "relays" not in bars[1]


def test_the_price_line_covers_every_interval_the_volumes_do(tmp_path: Path, drawn: list[Figure]) -> None:
    """A step from each interval's start drew nothing for the last interval (and no price at
    all in a one-interval run): the price is a step over each interval's 15 minutes, a gap
    where none cleared."""
    for intervals in ([7], [3, 4, 5]):
        plots.prices(tmp_path / "prices.png", _market(intervals))
        right = drawn[-1].axes[1]
        (line,) = [a for a in right.patches if a.get_label() == "clearing price"]
        values, edges = line.get_data().values, line.get_data().edges
        assert list(values) == pytest.approx([0.1 + i / 1000 for i in intervals])
        volume_edges = drawn[-1].axes[0].patches[0].get_data().edges
        assert list(edges) == pytest.approx(list(volume_edges))
    market = _market([1, 2, 3])
    market[1]["price_gnc_per_kwh"] = None  # nothing cleared in interval 2
    plots.prices(tmp_path / "prices.png", market)
    (line,) = [a for a in drawn[-1].axes[1].patches if a.get_label() == "clearing price"]
    values = list(line.get_data().values)
    assert values[0] == pytest.approx(0.101) and math.isnan(values[1]) and values[2] == pytest.approx(0.103)


NAMES = ["Feeder $\\frac$ lines", "_east", "$x$ and $y$"]
"""Names a scenario may give: mathtext that does not parse, mathtext that does, a leading "_"."""


def test_a_name_is_drawn_as_it_is_written(tmp_path: Path, drawn: list[Figure]) -> None:
    """A line owner named "Feeder $\\frac$ lines" passed the loader, then matplotlib's
    mathtext failed the plots after the whole run; one named "_east" was left out of the
    legend (matplotlib's mark of an unlabelled artist). Every name is text, in every legend."""
    lines = [{**r, "line_owner": NAMES[i % len(NAMES)]} for i, r in enumerate(_lines(1))]
    limits = {"max_loading_percent": 100.0, "v_min_pu": 0.95, "v_max_pu": 1.05}
    plots.feeders(tmp_path / "feeders.png", lines, limits)
    homes = [{**r, "home": NAMES[i % len(NAMES)]} for i, r in enumerate(_homes(1))]
    plots.batteries(tmp_path / "batteries.png", homes)
    for name in ("feeders.png", "batteries.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    feeders, batteries = drawn
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in (*feeders.axes, *batteries.axes)]
    assert legends == [[*NAMES, "limit"], [f"{n}: far end" for n in NAMES], sorted(NAMES)]
    texts = [t for fig in drawn for t in fig.findobj(lambda a: hasattr(a, "get_parse_math"))]
    assert texts and not any(t.get_parse_math() for t in texts)
