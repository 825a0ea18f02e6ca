"""The time series of a run: what every home, feeder, auction and relay did, interval by
interval, as Parquet tables (``OUT/series/*.parquet``; CSV beside them on request).

The columns are listed in :data:`SCHEMAS` (docs/scenarios.md, "Time series"); energy is in
whole Wh, money in GNC (decimal numbers: figures for reading, not for settling), prices in
GNC per kWh, times as UTC timestamps beside the interval numbers.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gridnet.agents.aggregator import trade_records
from gridnet.agents.contracts import contracts_on_chain, deliveries, paid_wh
from gridnet.agents.dso import Dso
from gridnet.agents.home import Home
from gridnet.agents.line_owner import LineOwner
from gridnet.contracts.channel import contract_id
from gridnet.market.orders import Side
from gridnet.units import INTERVAL_MS, UNITS_PER_GNC, Interval, energy_cost

if TYPE_CHECKING:
    from gridnet.agents.world import World

SERIES_VERSION = 1
"""Bumped when a column changes meaning or goes away (new columns keep it)."""

_TIME = pa.timestamp("ms", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "homes": pa.schema(
        [
            ("home", pa.string()),
            ("interval", pa.int64()),
            ("time", _TIME),
            ("load_wh", pa.int64()),
            ("pv_wh", pa.int64()),
            ("forecast_load_wh", pa.int64()),
            ("forecast_pv_wh", pa.int64()),
            ("import_wh", pa.int64()),
            ("export_wh", pa.int64()),
            ("curtailed_wh", pa.int64()),
            ("battery_soc_percent", pa.float64()),
            ("bought_p2p_wh", pa.int64()),
            ("sold_p2p_wh", pa.int64()),
            ("bought_dso_wh", pa.int64()),
            ("sold_dso_wh", pa.int64()),
            ("imbalance_wh", pa.int64()),
            ("bought_agg_wh", pa.int64()),
            ("sold_agg_wh", pa.int64()),
            ("paid_gnc", pa.float64()),
            ("earned_gnc", pa.float64()),
            ("price_paid_gnc_per_kwh", pa.float64()),
            ("bill_gnc", pa.float64()),
        ]
    ),
    "lines": pa.schema(
        [
            ("line_owner", pa.string()),
            ("feeder", pa.int64()),
            ("interval", pa.int64()),
            ("time", _TIME),
            ("max_loading_percent", pa.float64()),
            ("losses_wh", pa.float64()),
            ("transformer_losses_wh", pa.float64()),
            ("v_min_pu", pa.float64()),
            ("v_max_pu", pa.float64()),
            ("v_end_pu", pa.float64()),
            ("export_wh", pa.int64()),
            ("import_wh", pa.int64()),
            ("congested", pa.bool_()),
        ]
    ),
    "market": pa.schema(
        [
            ("interval", pa.int64()),
            ("time", _TIME),
            ("stage", pa.string()),
            ("price_gnc_per_kwh", pa.float64()),
            ("traded_wh", pa.int64()),
            ("bids", pa.int64()),
            ("offers", pa.int64()),
            ("bid_wh", pa.int64()),
            ("offer_wh", pa.int64()),
            ("contracts", pa.int64()),
            ("p2p_wh", pa.int64()),
        ]
    ),
    "orders": pa.schema(
        [
            ("interval", pa.int64()),
            ("time", _TIME),
            ("side", pa.string()),
            ("owner", pa.string()),
            ("wh", pa.int64()),
            ("price_gnc_per_kwh", pa.float64()),
            ("traded_wh", pa.int64()),
        ]
    ),
    "relays": pa.schema(
        [
            ("relay", pa.string()),
            ("datagrams_forwarded", pa.int64()),
            ("pay_gnc", pa.float64()),
        ]
    ),
}
"""Every table's columns (and their order)."""


def _gnc(units: int) -> float:
    return units / UNITS_PER_GNC


def _time(interval: Interval) -> int:
    return interval * INTERVAL_MS


def home_rows(world: World) -> list[dict[str, Any]]:
    """One row per home and interval, from what its meter read, what the chain paid for under
    its contracts (``agents.contracts.paid_wh``) and the aggregators' trade records of it."""
    homes = world.of(Home)
    dso = world.one(Dso)
    flows: dict[tuple[str, Interval], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    records = contracts_on_chain(world)
    paid = paid_wh(records)
    for i, deal, _, wh in deliveries(world, records):
        price = deal.terms.price
        fees = sum(energy_cost(wh, f.fee) for f in deal.terms.line_fees)
        buyer, seller = flows[(deal.buyer.name, i)], flows[(deal.seller.name, i)]
        buyer["bought_dso_wh" if deal.seller is dso else "bought_p2p_wh"] += wh
        buyer["paid"] += energy_cost(wh, price) + fees
        seller["sold_dso_wh" if deal.buyer is dso else "sold_p2p_wh"] += wh
        seller["earned"] += energy_cost(wh, price)
    for home in homes:
        for balancing in home.balancing.values():
            terms = balancing.terms
            cid = contract_id(terms)
            for i in balancing.delivered:
                wh = paid.get((cid, i), 0)
                row = flows[(home.name, i)]
                row["imbalance_wh"] += wh
                row["paid"] += energy_cost(wh, terms.price) + sum(
                    energy_cost(wh, f.fee) for f in terms.line_fees
                )
    name_of = {home.address: home.name for home in homes}
    for record in trade_records(world):  # ET leaves the buyer; the seller gets ET less the fee
        if (buyer_name := name_of.get(record.buyer)) is not None:
            row = flows[(buyer_name, record.interval)]
            row["bought_agg_wh"] += record.aeg_wh
            row["paid"] += record.et
        if (seller_name := name_of.get(record.seller)) is not None:
            row = flows[(seller_name, record.interval)]
            row["sold_agg_wh"] += record.aeg_wh
            row["earned"] += record.et - record.fee
    rows = []
    for home in homes:
        bill = 0
        for k, i in enumerate(range(world.first, world.last + 1)):
            real = home.real.get(i)
            f = flows[(home.name, i)]
            bought = f["bought_p2p_wh"] + f["bought_dso_wh"] + f["imbalance_wh"] + f["bought_agg_wh"]
            bill += f["paid"] - f["earned"]
            soc = home.soc.get(i)
            rows.append(
                {
                    "home": home.name,
                    "interval": i,
                    "time": _time(i),
                    "load_wh": home.load_wh[k],
                    "pv_wh": home.pv_wh[k],
                    "forecast_load_wh": home.load_forecast[k],
                    "forecast_pv_wh": home.pv_forecast[k],
                    "import_wh": real.import_wh if real else 0,
                    "export_wh": real.export_wh if real else 0,
                    "curtailed_wh": real.curtailed_wh if real else 0,
                    "battery_soc_percent": soc,
                    "bought_p2p_wh": f["bought_p2p_wh"],
                    "sold_p2p_wh": f["sold_p2p_wh"],
                    "bought_dso_wh": f["bought_dso_wh"],
                    "sold_dso_wh": f["sold_dso_wh"],
                    "imbalance_wh": f["imbalance_wh"],
                    "bought_agg_wh": f["bought_agg_wh"],
                    "sold_agg_wh": f["sold_agg_wh"],
                    "paid_gnc": _gnc(f["paid"]),
                    "earned_gnc": _gnc(f["earned"]),
                    "price_paid_gnc_per_kwh": _gnc(f["paid"]) * 1000 / bought if bought else None,
                    "bill_gnc": _gnc(bill),
                }
            )
    return rows


def line_rows(world: World) -> list[dict[str, Any]]:
    """One row per feeder (line owner) and interval, from its power flow."""
    grid = world.grid
    if grid is None:
        return []
    owners = world.of(LineOwner)
    rows = []
    for i in range(world.first, world.last + 1):
        flow = world.flows.get(i)
        if flow is None:
            continue
        for f, homes in enumerate(grid.feeders):
            metered = [world.metered(world.by_name[h], i) for h in homes]
            rows.append(
                {
                    "line_owner": owners[f].name if f < len(owners) else f"feeder {f}",
                    "feeder": f,
                    "interval": i,
                    "time": _time(i),
                    "max_loading_percent": flow.max_loading_percent[f],
                    "losses_wh": flow.losses_wh[f],
                    "transformer_losses_wh": flow.transformer_losses_wh[f],
                    "v_min_pu": flow.v_min_pu[f],
                    "v_max_pu": flow.v_max_pu[f],
                    "v_end_pu": flow.home_v_pu[homes[-1]] if homes else 1.0,
                    "export_wh": sum(e for e, _ in metered),
                    "import_wh": sum(m for _, m in metered),
                    "congested": bool(grid.downstream(flow, f)),
                }
            )
    return rows


def market_rows(world: World) -> list[dict[str, Any]]:
    """One row per interval and auction stage (the hub's uniform-price double auction)."""
    dso = world.one(Dso)
    rows = []
    for c in dso.clearing:
        i = int(c["interval"] or 0)
        deals = world.deals.get(i, [])
        price = c["price"]
        rows.append(
            {
                "interval": i,
                "time": _time(i),
                "stage": "double_auction",
                "price_gnc_per_kwh": None if price is None else _gnc(price),
                "traded_wh": c["traded_wh"],
                "bids": c["bids"],
                "offers": c["offers"],
                "bid_wh": c["bid_wh"],
                "offer_wh": c["offer_wh"],
                "contracts": len(deals),
                "p2p_wh": sum(d.trade.wh for d in deals if d.buyer is not dso and d.seller is not dso),
            }
        )
    return rows


def order_rows(world: World) -> list[dict[str, Any]]:
    """One row per order the hub cleared (the DSO's own included): each interval's book,
    bids by price from the highest, then offers from the lowest."""
    dso = world.one(Dso)
    rows = []
    for interval, book in sorted(dso.books.items()):
        ordered = sorted(
            book, key=lambda e: (e[0].side != Side.BID, -e[0].price if e[0].side == Side.BID else e[0].price)
        )
        for order, traded in ordered:
            owner = world.by_address.get(order.owner)
            rows.append(
                {
                    "interval": interval,
                    "time": _time(interval),
                    "side": "bid" if order.side == Side.BID else "offer",
                    "owner": owner.name if owner is not None else order.owner.hex(),
                    "wh": order.wh,
                    "price_gnc_per_kwh": _gnc(order.price),
                    "traded_wh": traded,
                }
            )
    return rows


def relay_rows(world: World, pay_gnc: dict[str, float]) -> list[dict[str, Any]]:
    """One row per relay: datagrams it forwarded and what its hop claims paid it."""
    rn = world.relaynet
    if rn is None:
        return []
    return [
        {"relay": name, "datagrams_forwarded": peer.stats.forwarded, "pay_gnc": pay_gnc.get(name, 0.0)}
        for name, peer in sorted(rn.peers.items())
        if name != rn.hub_name
    ]


def tables(world: World, relay_pay_gnc: dict[str, float]) -> dict[str, pa.Table]:
    rows = {
        "homes": home_rows(world),
        "lines": line_rows(world),
        "market": market_rows(world),
        "orders": order_rows(world),
        "relays": relay_rows(world, relay_pay_gnc),
    }
    return {name: pa.Table.from_pylist(r, schema=SCHEMAS[name]) for name, r in rows.items()}


def write_series(out: Path, built: dict[str, pa.Table], csv: bool = False) -> dict[str, Any]:
    """Write each table as ``out/series/NAME.parquet`` (and ``.csv`` with ``csv``); returns
    what the report says of them."""
    folder = out / "series"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, table in built.items():
        path = folder / f"{name}.parquet"
        pq.write_table(table.replace_schema_metadata({"gridnet_series_version": str(SERIES_VERSION)}), path)
        files[name] = {"file": f"series/{name}.parquet", "rows": table.num_rows}
        if csv:
            pa_csv.write_csv(table, folder / f"{name}.csv")
            files[name]["csv"] = f"series/{name}.csv"
    return {"version": SERIES_VERSION, "tables": files}
