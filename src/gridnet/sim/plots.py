# ruff: noqa: E402  (matplotlib is configured before its modules load)
"""A run's plots: PNG files in ``OUT/plots/`` drawn from its time series and report
(matplotlib's Agg backend: no display needed).

``prices.png``    clearing price and traded volume of every interval
``energy.png``    the area's energy mix: how the homes' load was met, and what they exported
``feeders.png``   each feeder's most loaded cable and voltage band, with the limits
``batteries.png`` every battery's state of charge
``money.png``     what each role gained or paid, and the block subsidy apart
``relays.png``    datagrams each relay forwarded and what it was paid
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridnet.errors import PlotFailed, describe
from gridnet.mpl import prepare_matplotlib

prepare_matplotlib()

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
# Every text is drawn as it is written: "$...$" in a name (a line owner, a swept value) is no
# mathtext, which failed the plots after the whole run ("Feeder $\frac$ lines").
matplotlib.rcParams["text.parse_math"] = False

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from gridnet.sim.mix import MIX_PARTS, energy_mix
from gridnet.sim.relaynet import CARRIER
from gridnet.units import INTERVAL_MS

_dates: Any = mdates  # (its date helpers carry no type annotations)

DPI = 110
INTERVAL = INTERVAL_MS / 86_400_000
"""An interval [days, matplotlib's date unit]."""
SIZE = (9.0, 4.2)
MAX_NAMED = 40
"""Most homes or relays a plot names one by one (a larger area's are counted instead)."""


def _times(rows: list[dict[str, Any]]) -> Any:
    """The rows' times as matplotlib dates."""
    return _dates.date2num([r["time"] for r in rows])


POWER_LIMITS = (-3, 4)
"""A number axis writes 10^4 and more, and less than 10^-3, as a multiple of a power of ten
(shown once beside it): its labels stay short enough for the fixed margins."""
MARGINS_IN = {"left": 0.85, "right": 0.3, "top": 0.4, "bottom": 0.65}
"""Room around the axes for their labels [inches]: a y label on the left, the time axis
below, the title above (``right`` grows to ``left``'s for a second y axis). Set, not
measured: ``tight_layout`` draws every figure twice, a third of a plot's cost."""


def _finish(
    fig: Figure, ax: Any, path: Path, title: str, *, right_axis: bool = False, fit: bool = False
) -> None:
    """Title, lay out and write the figure. ``fit``: measure the labels (they are names of
    any length) instead of the fixed margins."""
    ax.set_title(title, loc="left", fontsize=11)
    for axis in (a for axes in fig.axes for a in (axes.xaxis, axes.yaxis)):
        numbers = axis.get_major_formatter()
        if isinstance(numbers, ScalarFormatter):
            numbers.set_powerlimits(POWER_LIMITS)
    if fit:
        fig.tight_layout()
    else:
        width, height = fig.get_size_inches()
        m = {**MARGINS_IN, "right": MARGINS_IN["left"]} if right_axis else MARGINS_IN
        fig.subplots_adjust(
            left=m["left"] / width,
            right=1 - m["right"] / width,
            top=1 - m["top"] / height,
            bottom=m["bottom"] / height,
        )
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def legend(ax: Any, named: list[tuple[Any, str]], **options: Any) -> None:
    """A legend of ``named`` (each artist with its name), every name as given: a legend
    matplotlib gathers itself leaves out each label that starts with "_" (its mark of an
    artist without one), a line owner named "_east" too."""
    ax.legend([artist for artist, _ in named], [name for _, name in named], **options)


def _time_axis(ax: Any) -> None:
    locator = _dates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(_dates.ConciseDateFormatter(locator))
    ax.set_xlabel("UTC")


def _per_interval(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> tuple[list[float], list[list[float]]]:
    """Each key's (a column in Wh) sum over the rows of each interval [kWh], every interval
    from the first row's to the last row's (0 where none has a row), and the intervals'
    edges: an interval's volume drawn as one step over its 15 minutes, one filled outline per
    key (a bar per interval is a patch each, and costs more to draw than the rest of the
    plot)."""
    if not rows:
        return [], [[] for _ in keys]
    sums: dict[int, list[float]] = defaultdict(lambda: [0.0] * len(keys))
    for r in rows:
        row = sums[r["interval"]]
        for k, key in enumerate(keys):
            row[k] += r[key] / 1000
    first, last = min(sums), max(sums)
    start = float(_dates.date2num(min(rows, key=lambda r: r["interval"])["time"]))
    span = range(first, last + 1)
    edges = [start + (i - first) * INTERVAL for i in range(first, last + 2)]
    zero = [0.0] * len(keys)
    return edges, [[sums.get(i, zero)[k] for i in span] for k in range(len(keys))]


def _price_per_interval(rows: list[dict[str, Any]]) -> list[float]:
    """The clearing price of every interval from the first row's to the last row's (the last
    row's of an interval), NaN (no line) where none cleared."""
    price = {r["interval"]: r["price_gnc_per_kwh"] for r in rows}
    span = range(min(price), max(price) + 1)
    return [math.nan if price.get(i) is None else float(price[i]) for i in span]


def prices(path: Path, market: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=SIZE)
    edges, volumes = _per_interval(market, ("traded_wh", "p2p_wh"))
    if edges:
        ax.stairs(volumes[0], edges, fill=True, color="#9ecae1", label="traded in the auction [kWh]")
        ax.stairs(volumes[1], edges, fill=True, color="#3182bd", label="of it between homes [kWh]")
    ax.set_ylabel("energy per interval [kWh]")
    _time_axis(ax)
    right = ax.twinx()
    if edges:  # over each interval's 15 minutes, as the volumes (a step from each row's start
        # left the last interval without its price, and a one-interval run without any)
        right.stairs(_price_per_interval(market), edges, color="#e6550d", label="clearing price")
    right.set_ylabel("clearing price [GNC/kWh]")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    _finish(fig, ax, path, "The market: clearing price and volume of every interval", right_axis=True)


def energy(path: Path, homes: list[dict[str, Any]]) -> None:
    by_time = energy_mix(homes)
    times = sorted(by_time)
    t = _dates.date2num(times)
    fig, ax = plt.subplots(figsize=SIZE)
    series = MIX_PARTS
    stacks = [[by_time[x][k] for x in times] for k, _, _ in series]
    ax.stackplot(t, *stacks, labels=[s[1] for s in series], colors=[s[2] for s in series], alpha=0.9)
    ax.plot(t, [by_time[x]["load"] for x in times], color="black", linewidth=1, label="load")
    ax.plot(t, [-by_time[x]["export"] for x in times], color="#31a354", linewidth=1, label="export (below 0)")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("energy per interval [kWh]")
    _time_axis(ax)
    ax.legend(loc="upper left", fontsize=8)
    _finish(fig, ax, path, "The area's energy mix: how the homes' load was met")


def feeders(path: Path, lines: list[dict[str, Any]], limits: dict[str, float]) -> None:
    fig, (load_ax, volt_ax) = plt.subplots(2, 1, figsize=(SIZE[0], SIZE[1] * 1.5), sharex=True)
    by_owner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in lines:
        by_owner[r["line_owner"]].append(r)
    loads: list[tuple[Any, str]] = []
    far_ends: list[tuple[Any, str]] = []
    for owner, rows in by_owner.items():
        t = _times(rows)
        (load,) = load_ax.plot(t, [r["max_loading_percent"] for r in rows])
        loads.append((load, owner))
        volt_ax.fill_between(t, [r["v_min_pu"] for r in rows], [r["v_max_pu"] for r in rows], alpha=0.3)
        (far_end,) = volt_ax.plot(t, [r["v_end_pu"] for r in rows], linewidth=1)
        far_ends.append((far_end, f"{owner}: far end"))
    limit = load_ax.axhline(limits["max_loading_percent"], color="#de2d26", linestyle="--", linewidth=1)
    load_ax.set_ylabel("most loaded cable [%]")
    columns = 1 if len(by_owner) <= 4 else 3
    legend(load_ax, [*loads, (limit, "limit")], loc="upper left", fontsize=8, ncol=columns)
    for v in (limits["v_min_pu"], limits["v_max_pu"]):
        volt_ax.axhline(v, color="#de2d26", linestyle="--", linewidth=1)
    volt_ax.set_ylabel("home voltages [pu]")
    legend(volt_ax, far_ends, loc="upper left", fontsize=8, ncol=columns)
    _time_axis(volt_ax)
    _finish(fig, load_ax, path, "The feeders: cable loading and voltage band (dashed: limits)")


def batteries(path: Path, homes: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=SIZE)
    by_home: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in homes:
        if r["battery_soc_percent"] is not None:
            by_home[r["home"]].append(r)
    named: list[tuple[Any, str]] = []
    for name, rows in sorted(by_home.items()):
        (line,) = ax.plot(_times(rows), [r["battery_soc_percent"] for r in rows], linewidth=1)
        named.append((line, name))
    ax.set_ylim(0, 100)
    ax.set_ylabel("state of charge [%]")
    _time_axis(ax)
    if 0 < len(by_home) <= MAX_NAMED:
        legend(ax, named, loc="upper left", fontsize=7, ncol=2)
    elif by_home:
        ax.text(0.01, 0.97, f"{len(by_home)} homes' batteries", transform=ax.transAxes, va="top", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no home has a battery", transform=ax.transAxes, ha="center")
    _finish(fig, ax, path, "Batteries: state of charge at the end of each interval")


def money(path: Path, report: dict[str, Any]) -> None:
    revenue = {k: v for k, v in report["revenue_gnc"].items() if k != "miners"}
    # The homes' relay pay is in their roles' figures already; the carrier is in no role.
    carrier = report["relay"].get("reward_per_relay_gnc", {}).get(CARRIER)
    if carrier is not None:
        revenue["relay carrier"] = carrier
    fig, ax = plt.subplots(figsize=SIZE)
    names = list(revenue)
    values = [revenue[n] for n in names]
    ax.barh(names, values, color=["#31a354" if v >= 0 else "#de2d26" for v in values])
    ax.axvline(0, color="black", linewidth=0.5)
    economy = report["economy"]
    ax.set_xlabel(
        "gained (+) or paid (-) over the run [GNC]\n"
        f"not shown: the miners' {economy['block_subsidy_gnc']:,.0f} GNC of block subsidy (new coin) "
        f"and {economy['transaction_fees_gnc']:.4f} GNC of fees"
    )
    _finish(fig, ax, path, "Money by role (the energy economy; the block subsidy apart)", fit=True)


def relays(path: Path, rows: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=SIZE)
    if rows:
        names = [r["relay"] for r in rows]
        ax.bar(names, [r["datagrams_forwarded"] for r in rows], color="#9ecae1")
        ax.set_ylabel("datagrams forwarded")
        if len(rows) <= MAX_NAMED:
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        else:  # too many to name: their order is the relays table's (series/relays.parquet)
            ax.set_xticks([])
            ax.set_xlabel(f"{len(rows)} relays, in the order of series/relays.parquet")
        right = ax.twinx()
        right.plot(
            names, [r["pay_gnc"] for r in rows], "o", color="#e6550d", markersize=min(6.0, 300 / len(rows))
        )
        right.set_ylabel("paid [GNC] (dots)")
    else:
        ax.text(0.5, 0.5, "no relays in this run", transform=ax.transAxes, ha="center")
    named = 0 < len(rows) <= MAX_NAMED  # the relays' names, slanted, below the axis
    _finish(fig, ax, path, "Relays: datagrams carried and pay", right_axis=bool(rows), fit=named)


def write_plots(
    out: Path, tables: dict[str, pa.Table], report: dict[str, Any], limits: dict[str, float]
) -> list[str]:
    """Every plot of the run in ``out/plots/``; their paths relative to ``out``. ``PlotFailed``
    (one line) for one that cannot be drawn."""
    folder = out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    rows = {name: t.to_pylist() for name, t in tables.items()}
    drawn: dict[str, Callable[[Path], None]] = {
        "prices.png": lambda p: prices(p, rows["market"]),
        "energy.png": lambda p: energy(p, rows["homes"]),
        "feeders.png": lambda p: feeders(p, rows["lines"], limits),
        "batteries.png": lambda p: batteries(p, rows["homes"]),
        "money.png": lambda p: money(p, report),
        "relays.png": lambda p: relays(p, rows["relays"]),
    }
    for name, draw in drawn.items():
        try:
            draw(folder / name)
        except Exception as exc:  # one line, whatever failed: the run is not complete
            raise PlotFailed(
                f"the run's plot plots/{name} could not be drawn ({describe(exc)}); the run is "
                "incomplete and replaces no earlier results (GRIDNET_TRACEBACK=1 shows where it failed)"
            ) from exc
    return [f"plots/{name}" for name in drawn]
